"""Shape measures: NBS / Procrustes, Williams et al.'s partially whitened shape metrics, CCA, SVCCA.

Every function takes column-centred X (n, p), Y (n, q) (numpy or cupy, float32 or float64) and
``grad``; it returns
(value: float, gradient w.r.t. the centred Y (n, q), or None).  Values come from (p, q) and
(p, p) / (q, q) matrices only: never an (n, n) matrix or decomposition.
"""
from __future__ import annotations

import math

from .._backend import get_array_module
from ._linalg import (add_scaled, centred_gram, check_offsets, nuclear, row_space_factor, whitener,
                      whitener_vjp)
from ._validate import center_given, column_sumsq, sq

#: float32 input is whitened from float32 Grams only when both are better conditioned than this
#: (measured error of the mean canonical correlation ~1e-8 at condition 3e3); otherwise the
#: measure is recomputed in float64
F32_MAX_CONDITION = 1e4


class NeedsFloat64(ArithmeticError):
    """Raised by a float32 computation whose accuracy bound does not hold: redo in float64."""


def shape_nbs(X, Y, *, alpha: float = 1.0, grad: bool, mx=None, my=None):
    """NBS of partially whitened data: ||X_aᵀ Y_a||_* / (||X_a||_F ||Y_a||_F), in [0, 1].

    X_a = X W_x with W = alpha I + (1 - alpha) Cn^(-1/2) (see ``whitener``).  alpha = 1 is the
    normalised Bures similarity of X and Y (cosine of the angular Procrustes distance);
    alpha = 0 gives sum(canonical correlations) / sqrt(p q).  Units need not match (p != q is
    the same as zero-padding the smaller one).  Gradient: with A = X_aᵀY_a = U S Vᵀ,
    d||A||_* / dY_a = X_a U Vᵀ, then through W_y(Y) by ``whitener_vjp``.
    mx, my : column means when X, Y are given uncentred (the Grams are centred instead).
    """
    if alpha == 1.0:
        # a float32 gradient is a difference of near-equal (n, q) products: from centred data
        if mx is not None and X.shape[1] <= X.shape[0] and not (grad and X.dtype != "float64"):
            return _nbs_lazy(X, Y, mx, my, grad)
        if mx is not None:
            X, Y = center_given(X, mx, "X"), center_given(Y, my, "Y")
        return _nbs(X, Y, grad)
    n = X.shape[0]
    # the three Grams in the data's dtype (the O(n (p + q)²) work), everything after in float64
    Cxx, Cyy, Cxy = X.T @ X, Y.T @ Y, X.T @ Y
    if mx is None:
        Cxx, Cyy, Cxy = (A.astype("float64", copy=False) for A in (Cxx, Cyy, Cxy))
    else:
        Cxx, Cyy = centred_gram(Cxx, mx, mx, n, check=True), centred_gram(Cyy, my, my, n, check=True)
        Cxy = centred_gram(Cxy, mx, my, n)
    (Wx, cache_x), (Wy, cache) = whitener(Cxx, alpha, n), whitener(Cyy, alpha, n)
    if X.dtype != "float64":
        for lam in (cache_x[2], cache[2]):
            if not float(lam[0]) * F32_MAX_CONDITION > float(lam[-1]):
                raise NeedsFloat64("float32 Grams are too ill-conditioned for whitening")
    # ||Z W||_F² = tr(W C W) = (tr C / d) sum_i f_i² lam_i in the eigenbasis of Cn = d C / tr C
    nx, ny = (math.sqrt(float(c[1] / c[0].shape[0] * (c[5] ** 2 * c[2]).sum())) for c in (cache_x, cache))
    # X_aᵀ Y_a = Wx Cxy Wy: the (n, p) and (n, q) whitened data are never formed
    nuc, UVt = nuclear(Wx @ Cxy @ Wy, grad)
    value = nuc / (nx * ny)
    if not grad:
        return value, None
    # gradient w.r.t. Y_a: G_a = X Wx UVᵀ / (nx ny) - value / ny² Y Wy, and Y_aᵀ G_a is (q, q)
    c = 1.0 / (nx * ny)
    WxUVt = Wx @ UVt
    GW = c * (Cxy.T @ WxUVt) - (value / ny ** 2) * (Cyy @ Wy)
    M2 = 2.0 * whitener_vjp(cache, GW) - (value / ny ** 2) * (Wy @ Wy)
    G = X @ (c * (WxUVt @ Wy)).astype(X.dtype)
    G += Y @ M2.astype(Y.dtype)
    return value, G


def _nbs(X, Y, grad: bool):
    """NBS ||XᵀY||_* / (||X|| ||Y||) and its gradient; X is first replaced by an (n, n) factor
    with the same row Gram when it has more units than stimuli (NBS depends on X only through
    XXᵀ), which keeps the SVD at most (n, q)."""
    if X.shape[1] > X.shape[0]:
        X = row_space_factor(X)
    nuc, UVt = nuclear(X.T @ Y, grad)
    nx, ny = math.sqrt(sq(X)), math.sqrt(sq(Y))
    value = nuc / (nx * ny)
    if not grad:
        return value, None
    G = X @ (UVt * Y.dtype.type(1.0 / (nx * ny)))
    return value, add_scaled(G, -value / ny ** 2, Y)


def _nbs_lazy(X, Y, mx, my, grad: bool):
    """NBS of uncentred X, Y with column means mx, my, and its gradient w.r.t. the centred Y:
    XᵀY and the norms centred afterwards (see ``centred_gram``), and the gradient
    X_c A - s Y_c = X A - s Y - 1 (mxᵀ A - s myᵀ) formed from the uncentred data in place: no
    (n, d) array but the gradient.  The offset bound of ``check_offsets`` (NeedsCentring
    otherwise) also bounds the digits the uncentred product costs: ~10x its rounding, fine in
    float64 (float32 gradients come from centred data)."""
    n = X.shape[0]
    rx, ry = column_sumsq(X), column_sumsq(Y)
    check_offsets(rx, mx, n, X.dtype)
    check_offsets(ry, my, n, Y.dtype)
    C = centred_gram(X.T @ Y, mx, my, n)
    nx2 = float(rx.sum()) - n * float(mx @ mx)
    ny2 = float(ry.sum()) - n * float(my @ my)
    nuc, UVt = nuclear(C.astype(X.dtype), grad)
    value = nuc / math.sqrt(nx2 * ny2)
    if not grad:
        return value, None
    A = UVt.astype("float64") / math.sqrt(nx2 * ny2)
    s = value / ny2
    G = X @ A.astype(X.dtype)
    add_scaled(G, -s, Y)
    G -= (mx @ A - s * my).astype(G.dtype)
    return value, G


def cca(X, Y, *, grad: bool, mx=None, my=None):
    """Mean canonical correlation, sum_i rho_i / min(p, q), in [0, 1]; needs n > p and n > q.

    From the fully whitened NBS: sum_i rho_i = ||Q_xᵀ Q_y||_* for orthonormal bases Q of the
    column spaces, and shape_nbs(alpha=0) = sum_i rho_i / sqrt(p q).
    """
    p, q = X.shape[1], Y.shape[1]
    value, G = shape_nbs(X, Y, alpha=0.0, grad=grad, mx=mx, my=my)
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
