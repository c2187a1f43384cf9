"""Representational similarity analysis: compare the RDMs of X (n, p) and Y (n, q).

RDMs (over stimulus pairs i < j, n(n-1)/2 entries; (n, n) matrices, so O(n²) memory):
- ``euclidean``: |x_i - x_j| (plain, not squared, distance);
- ``cosine``: 1 - cos(x_i, x_j);
- ``correlation``: 1 - Pearson r(x_i, x_j) across units (cosine of the row-centred rows).
Comparisons of the two RDM vectors: ``pearson``, ``cosine`` (differentiable), ``spearman``,
``kendall-tau-a`` (rank based: computed on the host, not differentiable).
Data are not column-centred first (cosine and correlation RDMs depend on the origin).
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import get_array_module, to_numpy
from ._linalg import sqdist, sqdist_vjp
from ._validate import dot, sq

RDMS = ("euclidean", "correlation", "cosine")
COMPARES = ("pearson", "spearman", "kendall-tau-a", "cosine")
DIFFERENTIABLE_COMPARES = ("pearson", "cosine")


def _unit_rows(Z, what: str, kind: str):
    xp = get_array_module(Z)
    norms = xp.sqrt((Z * Z).sum(axis=1, keepdims=True))
    if bool((norms <= 1e-12 * float(norms.max())).any()):
        cause = ("a constant row (same value in every unit)" if kind == "correlation"
                 else "an all-zero row")
        raise ValueError(f"the {kind} RDM of {what} is undefined: some stimulus has {cause}. "
                         "Use the 'euclidean' RDM, or drop those stimuli.")
    return Z / norms, norms


def rdm(Z, kind: str, what: str = "the data"):
    """RDM (n, n) of Z (n, d) and the cache ``rdm_vjp`` needs.

    The euclidean RDM is translation invariant; it is computed from Z minus its mean row
    rounded to a multiple of 2^-8 times the rows' spread (:func:`_shift`), so that a large
    common offset costs the Gram-based squared distances no digits while integer-valued data
    keep exact ties.
    """
    if kind == "euclidean":
        Zc = _shift(Z)
        D = sqdist(Zc)
        get_array_module(Z).sqrt(D, out=D)
        return D, (Zc, D)
    Zr = Z - Z.mean(axis=1, keepdims=True) if kind == "correlation" else Z
    U, norms = _unit_rows(Zr, what, kind)
    D = U @ U.T
    D *= -1
    D += 1
    get_array_module(Z).fill_diagonal(D, 0)
    return D, (U, norms)


def _shift(Z):
    """Z minus its column means rounded to a multiple of a power of two near spread / 256."""
    xp = get_array_module(Z)
    mu = Z.mean(axis=0, dtype=xp.float64)
    spread2 = max(sq(Z) / Z.shape[0] - float(mu @ mu), 0.0)
    if spread2 == 0.0:
        return Z - mu.astype(Z.dtype)
    step = math.ldexp(1.0, math.frexp(math.sqrt(spread2))[1] - 8)
    c = xp.round(mu / step) * step
    return Z - c.astype(Z.dtype) if bool(c.any()) else Z


def rdm_vjp(Z, kind: str, cache, G):
    """Gradient (n, d) w.r.t. Z of sum_ij G_ij RDM_ij, for G (n, n)."""
    xp = get_array_module(Z)
    if kind == "euclidean":
        Zc, D = cache  # d sqrt(S) = dS / (2 sqrt(S)); 0 (a subgradient) for coinciding stimuli
        with np.errstate(divide="ignore", invalid="ignore"):
            G /= D  # G is ours; its diagonal (0 / 0) and coinciding stimuli are set to 0 next
        G *= 0.5
        G[~xp.isfinite(G)] = 0
        return sqdist_vjp(Zc, G)
    U, norms = cache
    GU = -(G + G.T) @ U
    GZ = (GU - U * (GU * U).sum(axis=1, keepdims=True)) / norms
    return GZ - GZ.mean(axis=1, keepdims=True) if kind == "correlation" else GZ


def _offdiagonal(D, center: bool):
    """D (n, n) symmetric, zero diagonal -> (D - mean of the off-diagonal entries) with a zero
    diagonal when ``center`` (in place), and sum_ij D_ij² accumulated in float64."""
    xp = get_array_module(D)
    n = D.shape[0]
    if center:
        D -= D.dtype.type(float(D.sum(dtype=xp.float64)) / (n * (n - 1)))
        xp.fill_diagonal(D, 0)
    norm2 = dot(D, D)
    if norm2 == 0:
        raise ValueError("an RDM has no variation across stimulus pairs (all dissimilarities "
                         "equal), so its correlation with another RDM is undefined.")
    return D, norm2


def _correlate(Dx, Dy, center: bool, *, grad: bool):
    """Pearson (``center``) or cosine similarity of the upper triangles of two RDMs, from the
    full symmetric matrices (the factor 2 cancels), and its gradient w.r.t. the full Dy
    (symmetric, zero diagonal; sum_ij G_ij dDy_ij is the change of the value).  Dx is
    overwritten, and Dy too unless ``grad`` (the gradient needs it)."""
    A, na2 = _offdiagonal(Dx, center)
    B, nb2 = _offdiagonal(Dy.copy() if grad else Dy, center)
    value = dot(A, B) / math.sqrt(na2 * nb2)
    if not grad:
        return value, None
    t = A.dtype.type
    A *= t(1.0 / math.sqrt(na2 * nb2))
    B *= t(value / nb2)
    A -= B  # the diagonals stay zero
    return value, A


def _gram_operand(Z, kind: str, what: str):
    """The rows whose Gram gives the RDM: Z shifted as in :func:`rdm` (euclidean), or its unit
    rows (cosine; row-centred first for correlation)."""
    if kind == "euclidean":
        return _shift(Z)
    return _unit_rows(Z - Z.mean(axis=1, keepdims=True) if kind == "correlation" else Z, what, kind)[0]


def _gram_blocks(A, rows: int):
    """Row blocks of the upper triangle of A Aᵀ for A (n, d), last first: (r0, G, sq) with
    G = A[r0:r1] A[r0:]ᵀ (BLAS, A's dtype) and sq (n,) the squared row norms, taken from the
    Grams' diagonals (so coinciding rows are exactly 0 apart) and filled for rows >= r0."""
    n = A.shape[0]
    sq = np.empty(n)
    for r0 in reversed(range(0, n, rows)):
        G = A[r0:r0 + rows] @ A[r0:].T
        sq[r0:r0 + rows] = np.diagonal(G[:, :min(rows, n - r0)])
        yield r0, G, sq


def pair_moments(X, Y, kind: str, block_bytes: int = 2**24):
    """Moments of the ``kind`` RDMs of host X (n, p) and Y (n, q) over the n(n-1)/2 pairs, without
    the (n, n) RDMs: Gram blocks (:func:`_gram_blocks`, each of at most ``block_bytes``) feed the
    compiled ``rdm_moments``, which forms each row's dissimilarities and accumulates (count,
    mean_a, mean_b, centred sum of squares of a and of b, centred sum of products) (6,)."""
    from .._backend import require_core

    A, B = _gram_operand(X, kind, "X"), _gram_operand(Y, kind, "Y")
    rows = max(1, block_bytes // (max(A.itemsize, B.itemsize) * A.shape[0]))
    stats = np.zeros(6)
    for (r0, Ga, sqa), (_, Gb, sqb) in zip(_gram_blocks(A, rows), _gram_blocks(B, rows)):
        if Ga.dtype != Gb.dtype:
            Ga, Gb = Ga.astype(np.float64), Gb.astype(np.float64)
        require_core().rdm_moments(Ga, sqa, Gb, sqb, r0, kind != "euclidean", stats)
    return stats


def condensed_rdm(Z, kind: str, what: str = "the data", block_bytes: int = 2**24):
    """The ``kind`` RDM of host Z (n, d) as its upper triangle (n(n-1)/2,) float64, row by row
    (the order of :func:`upper`), from Gram blocks as in :func:`pair_moments` by the compiled
    ``condensed_from_gram``: no (n, n) matrix.  Cosine and correlation dissimilarities are
    |u_i - u_j|² / 2 of the unit rows u, so that coinciding stimuli are exactly 0 apart (tied)."""
    from .._backend import require_core

    A = _gram_operand(Z, kind, what)
    n = A.shape[0]
    out = np.empty(n * (n - 1) // 2)
    for r0, G, sq in _gram_blocks(A, max(1, block_bytes // (A.itemsize * n))):
        require_core().condensed_from_gram(G, sq, r0, False, out)
    if kind != "euclidean":
        out *= out
        out *= 0.5
    return out


def _correlation_from_moments(stats, center: bool) -> float:
    """Pearson (``center``) or cosine similarity of the two RDM vectors from :func:`pair_moments`."""
    m, ma, mb, saa, sbb, sab = (float(v) for v in stats)
    if not center:
        saa, sbb, sab = saa + m * ma * ma, sbb + m * mb * mb, sab + m * ma * mb
    for s2, mean in ((saa, ma), (sbb, mb)):
        noise = m * (abs(mean) * 2.0**-40) ** 2 if center else 0.0  # a spread of rounding size
        if s2 <= noise:
            raise ValueError("an RDM has no variation across stimulus pairs (all dissimilarities "
                             "equal), so its correlation with another RDM is undefined.")
    return sab / math.sqrt(saa * sbb)


def upper(D):
    """Upper triangle (i < j, row by row) of a host (n, n) array: (n(n-1)/2,) vector."""
    n = D.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=D.dtype)
    pos = 0
    for i in range(n - 1):
        out[pos:pos + n - 1 - i] = D[i, i + 1:]
        pos += n - 1 - i
    return out


def rsa(X, Y, *, rdm_kind: str, compare_kind: str, grad: bool):
    """RSA score: ``compare_kind`` of the upper triangles of the ``rdm_kind`` RDMs of X and Y.

    Host arrays never form an (n, n) RDM: Pearson and cosine values come from
    :func:`pair_moments`, Spearman and Kendall's tau-a compare the :func:`condensed_rdm` vectors
    with the compiled average-rank kernel (``fastmlem.ops.spearman``) and O(m log m) pair count
    (``fastmlem.ops.kendall_tau_a``).  Gradients (Pearson, cosine), and cupy arrays, work on
    the full (n, n) RDMs (rank comparisons then on the host).
    """
    host = get_array_module(X, Y) is np
    if compare_kind not in DIFFERENTIABLE_COMPARES:
        from .. import ops

        compare = ops.spearman if compare_kind == "spearman" else ops.kendall_tau_a
        if host:
            a, b = condensed_rdm(X, rdm_kind, "X"), condensed_rdm(Y, rdm_kind, "Y")
        else:
            a, b = (upper(to_numpy(rdm(Z, rdm_kind, what)[0])) for Z, what in ((X, "X"), (Y, "Y")))
        return float(compare(a, b)), None
    if host and not grad:
        return _correlation_from_moments(pair_moments(X, Y, rdm_kind), compare_kind == "pearson"), None
    Dx = rdm(X, rdm_kind, "X")[0]
    Dy, cache = rdm(Y, rdm_kind, "Y")
    value, G = _correlate(Dx, Dy, compare_kind == "pearson", grad=grad)
    return value, (rdm_vjp(Y, rdm_kind, cache, G) if grad else None)
