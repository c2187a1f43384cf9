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
    """RDM (n, n) of Z (n, d) and the cache ``rdm_vjp`` needs."""
    if kind == "euclidean":
        D = get_array_module(Z).sqrt(sqdist(Z))
        return D, D
    Zr = Z - Z.mean(axis=1, keepdims=True) if kind == "correlation" else Z
    U, norms = _unit_rows(Zr, what, kind)
    return 1.0 - U @ U.T, (U, norms)


def rdm_vjp(Z, kind: str, cache, G):
    """Gradient (n, d) w.r.t. Z of sum_ij G_ij RDM_ij, for G (n, n)."""
    xp = get_array_module(Z)
    if kind == "euclidean":
        D = cache  # d sqrt(S) = dS / (2 sqrt(S)); 0 (a subgradient) for coinciding stimuli
        return sqdist_vjp(Z, xp.where(D > 0, G / (2.0 * xp.where(D > 0, D, 1.0)), 0.0))
    U, norms = cache
    GU = -(G + G.T) @ U
    GZ = (GU - U * (GU * U).sum(axis=1, keepdims=True)) / norms
    return GZ - GZ.mean(axis=1, keepdims=True) if kind == "correlation" else GZ


def _cos(a, b, *, grad: bool):
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    if na == 0 or nb == 0:
        raise ValueError("an RDM has no variation across stimulus pairs (all dissimilarities "
                         "equal), so its correlation with another RDM is undefined.")
    value = float(a @ b) / (na * nb)
    return value, ((a / na - value * b / nb) / nb if grad else None)


def _kendall_tau_a(a, b) -> float:
    """(concordant - discordant) / (m(m-1)/2) over m pairs, from scipy's tau-b and tie counts."""
    from scipy.stats import kendalltau

    m = a.size
    total = m * (m - 1) / 2.0

    def tied(v):
        counts = np.unique(v, return_counts=True)[1]
        return float((counts * (counts - 1) / 2.0).sum())

    ta, tb = tied(a), tied(b)
    if ta == total or tb == total:
        return 0.0
    tau_b = kendalltau(a, b, variant="b").statistic
    return float(tau_b) * math.sqrt((total - ta) * (total - tb)) / total


def compare(a, b, kind: str, *, grad: bool):
    """Similarity of RDM vectors a, b (m,), and its gradient w.r.t. b (or None)."""
    if kind == "cosine":
        return _cos(a, b, grad=grad)
    if kind == "pearson":
        return _cos(a - a.mean(), b - b.mean(), grad=grad)  # the gradient is already centred
    from scipy.stats import rankdata

    a, b = to_numpy(a), to_numpy(b)
    if kind == "spearman":
        return _cos(*(r - r.mean() for r in (rankdata(a), rankdata(b))), grad=False)[0], None
    return _kendall_tau_a(a, b), None


def rsa(X, Y, *, rdm_kind: str, compare_kind: str, grad: bool):
    """RSA score: ``compare_kind`` of the upper triangles of the ``rdm_kind`` RDMs of X and Y."""
    xp = get_array_module(X, Y)
    n = X.shape[0]
    iu = xp.triu_indices(n, 1)
    Dy, cache = rdm(Y, rdm_kind, "Y")
    value, g = compare(rdm(X, rdm_kind, "X")[0][iu], Dy[iu], compare_kind, grad=grad)
    if not grad:
        return value, None
    G = xp.zeros((n, n))
    G[iu] = g
    return value, rdm_vjp(Y, rdm_kind, cache, G)
