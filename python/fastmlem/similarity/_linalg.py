"""Small linear-algebra pieces with their vector-Jacobian products (numpy or cupy, ``xp``).

Each ``*_vjp`` function maps the gradient of a scalar with respect to an output back to the
gradient with respect to the input, so measures chain them by hand (no autodiff library).
"""
from __future__ import annotations

from .._backend import get_array_module

#: eigenvalues below this fraction of the largest are treated as zero (pseudo-inverses, whitening)
RANK_TOL = 1e-10

#: a Gram of uncentred data is centred afterwards (AᵀB - n m_a m_bᵀ) only when every unit's raw
#: sum of squares is at most this multiple of its centred one (offset <= sqrt(KAPPA - 1) x the
#: unit's spread): the Gram's rounding error, relative to the centred entries, then grows by at
#: most this factor.  Measured: linear CKA of float32 data at offset 3 x spread, 1e-8 from exact.
KAPPA = {"float32": 4.0, "float64": 1e4}


class NeedsCentring(ArithmeticError):
    """Raised when an offset is too large, against its unit's spread, to centre a Gram
    afterwards: the caller centres the data instead."""


def centred_gram(G, ma, mb, n: int, check: bool = False):
    """Gram of centred data, AᵀB - n ma mbᵀ (float64), from the Gram G = AᵀB (a, b) of
    uncentred data and their float64 column means ma (a,), mb (b,).

    check : G is AᵀA (ma is mb): first :func:`check_offsets` on its diagonal.
    """
    xp = get_array_module(G)
    if check:
        check_offsets(xp.diagonal(G).astype(xp.float64), ma, n, G.dtype)
    return G.astype(xp.float64) - n * (ma[:, None] * mb[None, :])


def check_offsets(raw, m, n: int, dtype) -> None:
    """NeedsCentring unless every unit's raw sum of squares raw (d,) is at most KAPPA times its
    centred one, raw - n m² (also when a unit is constant)."""
    if not bool((raw <= KAPPA[str(dtype)] * (raw - n * m * m)).all()):
        raise NeedsCentring


def nuclear(A, grad: bool = True):
    """Nuclear norm of A (p, q) and its gradient U Vᵀ (p, q) (None unless ``grad``), from the thin
    SVD A = U S Vᵀ (singular values only when not ``grad``).

    Where A is rank-deficient U Vᵀ is one valid subgradient.
    """
    xp = get_array_module(A)
    if not grad:
        return float(xp.linalg.svd(A, compute_uv=False).sum(dtype=xp.float64)), None
    U, s, Vt = xp.linalg.svd(A, full_matrices=False)
    return float(s.sum(dtype=xp.float64)), U @ Vt


def row_space_factor(Z):
    """F (n, r) with F Fᵀ = Z Zᵀ for Z (n, d), d > n: r = n columns from the eigendecomposition of
    the (n, n) Gram, so every orthogonally invariant function of Z can use F instead."""
    xp = get_array_module(Z)
    lam, V = xp.linalg.eigh(Z @ Z.T)
    return V * xp.sqrt(xp.maximum(lam, 0))


def psd_inverse(C, ridge: float = 0.0):
    """(C + ridge I)^-1 of a symmetric PSD matrix C (d, d), a pseudo-inverse when ridge is 0."""
    xp = get_array_module(C)
    lam, V = xp.linalg.eigh(C)
    shifted = lam + ridge
    keep = shifted > RANK_TOL * max(float(shifted[-1]), 0.0)
    inv = xp.where(keep, 1.0 / xp.where(keep, shifted, 1.0), 0.0)
    return (V * inv) @ V.T


def add_scaled(G, a: float, Y, rows: int = 2048):
    """G += a Y in place for G, Y (n, q), in row blocks: no (n, q) temporary (a fresh 200 MB
    array costs as much in page faults as the arithmetic)."""
    a = G.dtype.type(a)
    for r0 in range(0, G.shape[0], rows):
        G[r0:r0 + rows] += a * Y[r0:r0 + rows]
    return G


def sqdist(Y):
    """Squared euclidean distances between the rows of Y (n, q): (n, n), exact 0 diagonal."""
    xp = get_array_module(Y)
    s = (Y * Y).sum(axis=1)
    D = Y @ Y.T  # then in place: no (n, n) temporaries
    D *= -2
    D += s[:, None]
    D += s[None, :]
    xp.maximum(D, 0, out=D)
    xp.fill_diagonal(D, 0)
    return D


def sqdist_vjp(Y, G):
    """Gradient (n, q) with respect to Y of sum_ij G_ij D_ij, D = sqdist(Y), for any G (n, n)."""
    Gs = G + G.T
    return 2 * (Gs.sum(axis=1)[:, None] * Y - Gs @ Y)


def center_kernel(K):
    """H K H for a symmetric K (n, n), H = I - 11ᵀ/n."""
    row = K.mean(axis=0, keepdims=True)
    return K - row - row.T + K.mean()


def whitener(C, alpha: float, n: int):
    """Partial whitening matrix W (d, d) of centred Z (n, d) from its Gram C = ZᵀZ, and what its
    VJP needs.

    W = alpha I + (1 - alpha) Cn^(-1/2), with Cn = d ZᵀZ / tr(ZᵀZ) the feature Gram normalised
    to mean eigenvalue 1, so that Z W is Z itself for alpha = 1, an exactly whitened (all
    canonical directions of equal variance) copy of Z for alpha = 0, and a rescaling of Z leaves
    the shape of Z W unchanged for every alpha.  Eigenvalues below RANK_TOL times the largest
    are floored there (for alpha = 0 they raise instead: whitening is then undefined).
    """
    xp = get_array_module(C)
    d = C.shape[0]
    Cn = C * (d / float(xp.trace(C)))
    lam, V = xp.linalg.eigh(Cn)
    top = float(lam[-1])
    if alpha == 0.0 and float(lam[0]) <= RANK_TOL * top:
        raise ValueError(f"full whitening (CCA, alpha=0) needs linearly independent units, but "
                         f"a representation with {d} units has rank < {d} (centred rows "
                         f"n - 1 = {n - 1} must exceed the units too). Reduce its "
                         "dimension first (e.g. 'svcca') or use partial whitening, alpha > 0.")
    lam_f = xp.maximum(lam, RANK_TOL * top)
    f = alpha + (1.0 - alpha) * lam_f ** -0.5
    return (V * f) @ V.T, (Cn, float(xp.trace(C)), lam, lam_f, V, f, alpha)


def whitener_vjp(cache, GW):
    """Gradient (d, d) with respect to C = ZᵀZ of a scalar whose gradient w.r.t. W = whitener(C)
    is GW (the gradient w.r.t. Z is then 2 Z times it).

    W = V f(Λ) Vᵀ is a spectral function of Cn: its derivative in the eigenbasis is GW's
    projection times the divided differences (f(λ_i) - f(λ_j)) / (λ_i - λ_j) (f'(λ_i) on
    the diagonal and between equal eigenvalues); then Cn = d C / tr C.
    """
    xp = get_array_module(GW)
    Cn, trace_c, lam, lam_f, V, f, alpha = cache
    d = Cn.shape[0]
    top = float(lam[-1])
    G = V.T @ (0.5 * (GW + GW.T)) @ V
    fprime = xp.where(lam > RANK_TOL * top, -0.5 * (1.0 - alpha) * lam_f ** -1.5, 0.0)
    dl = lam[:, None] - lam[None, :]
    close = xp.abs(dl) <= 1e-8 * top
    F = xp.where(close, 0.5 * (fprime[:, None] + fprime[None, :]),
                 (f[:, None] - f[None, :]) / xp.where(close, 1.0, dl))
    G_Cn = V @ (G * F) @ V.T
    return (d / trace_c) * (G_Cn - (float((G_Cn * Cn).sum()) / d) * xp.eye(d))
