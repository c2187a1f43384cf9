"""Shape measures: NBS / Procrustes, Williams et al.'s partially whitened shape metrics, CCA, SVCCA.

Every function takes column-centred X (n, p), Y (n, q) (numpy or cupy) and ``grad``; it returns
(value: float, gradient w.r.t. the centred Y (n, q), or None).  Values come from (p, q) and
(p, p) / (q, q) matrices only: never an (n, n) matrix or decomposition.
"""
from __future__ import annotations

import math

from .._backend import get_array_module
from ._linalg import nuclear, whitener, whitener_vjp
from ._validate import sq


def shape_nbs(X, Y, *, alpha: float = 1.0, grad: bool):
    """NBS of partially whitened data: ||X_aᵀ Y_a||_* / (||X_a||_F ||Y_a||_F), in [0, 1].

    X_a = X W_x with W = alpha I + (1 - alpha) Cn^(-1/2) (see ``whitener``).  alpha = 1 is the
    normalised Bures similarity of X and Y (cosine of the angular Procrustes distance);
    alpha = 0 gives sum(canonical correlations) / sqrt(p q).  Units need not match (p != q is
    the same as zero-padding the smaller one).  Gradient: with A = X_aᵀY_a = U S Vᵀ,
    d||A||_* / dY_a = X_a U Vᵀ, then through W_y(Y) by ``whitener_vjp``.
    """
    if alpha == 1.0:
        Xa, Ya = X, Y
    else:
        Xa = X @ whitener(X, alpha)[0]
        Wy, cache = whitener(Y, alpha)
        Ya = Y @ Wy
    nuc, UVt = nuclear(Xa.T @ Ya)
    nx, ny = math.sqrt(sq(Xa)), math.sqrt(sq(Ya))
    value = nuc / (nx * ny)
    if not grad:
        return value, None
    G_a = (Xa @ UVt) / (nx * ny) - (value / ny ** 2) * Ya
    if alpha == 1.0:
        return value, G_a
    return value, G_a @ Wy + whitener_vjp(Y, cache, Y.T @ G_a)


def cca(X, Y, *, grad: bool):
    """Mean canonical correlation, sum_i rho_i / min(p, q), in [0, 1]; needs n > p and n > q.

    From the fully whitened NBS: sum_i rho_i = ||Q_xᵀ Q_y||_* for orthonormal bases Q of the
    column spaces, and shape_nbs(alpha=0) = sum_i rho_i / sqrt(p q).
    """
    p, q = X.shape[1], Y.shape[1]
    value, G = shape_nbs(X, Y, alpha=0.0, grad=grad)
    factor = math.sqrt(p * q) / min(p, q)
    return value * factor, (None if G is None else G * factor)


def top_components(Z, var: float):
    """Z (n, d) projected on its leading principal axes that explain >= ``var`` of its variance.

    At most n - 2 axes are kept, so that CCA on the result is defined.
    """
    xp = get_array_module(Z)
    lam, V = xp.linalg.eigh(Z.T @ Z)
    lam, V = lam[::-1], V[:, ::-1]
    frac = xp.cumsum(xp.maximum(lam, 0.0)) / float(xp.maximum(lam, 0.0).sum())
    k = int((frac < var - 1e-12).sum()) + 1
    return Z @ V[:, :min(k, Z.shape[0] - 2, Z.shape[1])]


def svcca(X, Y, *, var: float = 0.99, grad: bool):
    """SVCCA (Raghu et al. 2017): mean canonical correlation after keeping the principal axes
    of each representation that explain ``var`` of its variance.  Not differentiable here."""
    return cca(top_components(X, var), top_components(Y, var), grad=False)[0], None
