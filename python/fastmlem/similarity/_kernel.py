"""Kernel-alignment measures: linear CKA, debiased linear CKA, RBF CKA and ENSD.

Every function takes column-centred X (n, p), Y (n, q) (numpy or cupy, float32 or float64) and
``grad``; it returns (value: float, gradient w.r.t. the centred Y (n, q), or None when grad is
False).  Linear CKA and ENSD use the feature Grams XᵀX (p, p), YᵀY (q, q), XᵀY (p, q) when
n >= p + q and the (n, n) Grams XXᵀ, YYᵀ otherwise (:class:`LinearGrams`); scalars are
accumulated in float64.
"""
from __future__ import annotations

import math

from .._backend import get_array_module
from ._linalg import center_kernel, centred_gram, sqdist, sqdist_vjp
from ._validate import center_given, dot, sq


class LinearGrams:
    """What linear CKA and ENSD need from centred X (n, p), Y (n, q), in the cheaper form.

    Feature form (n >= p + q): XᵀX, YᵀY, XᵀY, O(n (p + q)²).  Kernel form (n < p + q): the
    (n, n) Grams K = XXᵀ, L = YYᵀ, O(n² (p + q)).  Both give the same scalars
    ||XᵀX||² = ||K||², ||YᵀY||² = ||L||², ||XᵀY||² = <K, L>, tr XᵀX = tr K, tr YᵀY = tr L, and
    :meth:`grad_y` combines X XᵀY = K Y, Y YᵀY = L Y and Y with one or two products.
    """

    def __init__(self, X, Y, mx=None, my=None):
        n, p = X.shape
        self.kernel = n < p + Y.shape[1]
        if self.kernel and mx is not None:  # uncentred data: centre them (n is small here)
            X, Y, mx = center_given(X, mx, "X"), center_given(Y, my, "Y"), None
        self.X, self.Y = X, Y
        if self.kernel:
            A, B = X @ X.T, Y @ Y.T  # K, L
            self.xy = dot(A, B)
        else:
            A, B, self.C = X.T @ X, Y.T @ Y, X.T @ Y
            if mx is not None:  # centre the Grams, not the data (float64 from here)
                A = centred_gram(A, mx, mx, n, check=True)
                B = centred_gram(B, my, my, n, check=True)
                self.C = centred_gram(self.C, mx, my, n)
            self.xy = sq(self.C)
        self.A, self.B = A, B
        self.xx, self.yy = sq(A), sq(B)
        self.tx, self.ty = trace(A), trace(B)

    def grad_y(self, a: float, b: float, c: float = 0.0):
        """a X XᵀY + b Y YᵀY + c Y, (n, q) (for uncentred X, Y: up to a constant row, which the
        caller's final centring removes)."""
        xp = get_array_module(self.Y)
        dt = self.Y.dtype
        if self.kernel:
            M = a * self.A + b * self.B
            M[xp.diag_indices_from(M)] += c
            return M @ self.Y
        M = b * self.B
        M[xp.diag_indices_from(M)] += c
        G = self.X @ (a * self.C).astype(dt, copy=False)
        G += self.Y @ M.astype(dt, copy=False)
        return G


def trace(A) -> float:
    return float(A.trace(dtype=A.dtype if A.dtype == "float64" else "float64"))


def linear_cka(X, Y, *, grad: bool, mx=None, my=None):
    """CKA = ||XᵀY||²_F / (||XᵀX||_F ||YᵀY||_F) (Kornblith et al. 2019), in [0, 1].

    mx, my : column means when X, Y are given uncentred (their Grams are centred instead)."""
    g = LinearGrams(X, Y, mx, my)
    nx, ny = math.sqrt(g.xx), math.sqrt(g.yy)
    value = g.xy / (nx * ny)
    if not grad:
        return value, None
    return value, g.grad_y(2.0 / (nx * ny), -2.0 * value / g.yy)


def _hsic_u(A, B, n: int):
    """Unbiased linear HSIC (Song et al. 2012) of centred A (n, a), B (n, b) and its B-gradient.

    With K = AAᵀ, L = BBᵀ and zero-diagonal copies K~, L~, the estimator
    [tr(K~L~) + 1ᵀK~1 1ᵀL~1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK~L~1] / (n(n-3)) reduces for centred
    columns (K1 = 0, so K~1 = -diag K) to feature-space terms with row norms r_a, r_b:
    [||AᵀB||² + Σr_a Σr_b / ((n-1)(n-2)) - n/(n-2) r_a·r_b] / (n(n-3)).
    """
    c = 1.0 / (n * (n - 3))
    ra, rb = (A * A).sum(axis=1), (B * B).sum(axis=1)
    AtB = A.T @ B
    sa, sb = float(ra.sum()), float(rb.sum())
    value = c * (sq(AtB) + sa * sb / ((n - 1) * (n - 2)) - n / (n - 2) * float(ra @ rb))
    grad_b = 2.0 * c * (A @ AtB + (sa / ((n - 1) * (n - 2))) * B - (n / (n - 2)) * ra[:, None] * B)
    return value, grad_b


def debiased_cka(X, Y, *, grad: bool):
    """CKA with unbiased HSIC estimates (Song et al. 2012; Nguyen et al. 2021); needs n >= 4.

    Not bounded to [0, 1] (it can be slightly negative for unrelated data).
    """
    n = X.shape[0]
    hxy, gxy = _hsic_u(X, Y, n)
    hxx, _ = _hsic_u(X, X, n)
    hyy, gyy = _hsic_u(Y, Y, n)
    if hxx <= 0 or hyy <= 0:
        raise ValueError("debiased CKA is undefined here: the unbiased HSIC of "
                         f"{'X' if hxx <= 0 else 'Y'} with itself is not positive (too few "
                         "stimuli, or nearly constant data); use 'cka' instead.")
    norm = math.sqrt(hxx * hyy)
    value = hxy / norm
    if not grad:
        return value, None
    # d hsic_u(Y, Y) / dY is twice the gradient in the second argument
    return value, gxy / norm - value * gyy / hyy


def _rbf(Z, sigma: float):
    """RBF kernel exp(-D / tau) of Z's rows, tau = 2 sigma² median(D) over pairs i < j."""
    xp = get_array_module(Z)
    n = Z.shape[0]
    D = sqdist(Z)
    iu = xp.triu_indices(n, 1)
    vals = D[iu]
    order = xp.argsort(vals)
    mid = order[[(vals.size - 1) // 2, vals.size // 2]]  # the same pair twice when the count is odd
    median = float(vals[mid].mean())
    if median <= 0.0:
        raise ValueError("the RBF kernel's median heuristic failed: at least half of the stimulus "
                         "pairs have identical representations. Use 'cka' (linear) instead.")
    tau = 2.0 * sigma ** 2 * median
    pairs = [(int(iu[0][i]), int(iu[1][i])) for i in mid]
    return xp.exp(-D / tau), D, tau, pairs


def rbf_cka(X, Y, *, sigma: float = 1.0, grad: bool):
    """CKA between RBF kernels (Kornblith et al. 2019); (n, n) kernels, O(n²(p + q)) time.

    Bandwidth: the kernel of Z is exp(-|z_i - z_j|² / (2 sigma² m)), m the median squared
    distance over stimulus pairs (median heuristic; sigma = 1 uses the median distance itself).
    The gradient includes the bandwidth's dependence on Y through the median pair.
    """
    Kx = center_kernel(_rbf(X, sigma)[0])
    L, D, tau, pairs = _rbf(Y, sigma)
    Ly = center_kernel(L)
    nx, ny = math.sqrt(sq(Kx)), math.sqrt(sq(Ly))
    value = float((Kx * Ly).sum()) / (nx * ny)
    if not grad:
        return value, None
    G_L = Kx / (nx * ny) - (value / ny ** 2) * Ly  # centring is self-adjoint: no H needed
    G_D = -G_L * L / tau
    dtau = float((G_L * L * D).sum()) / tau ** 2
    for i, j in pairs:  # tau = 2 sigma² (D_a + D_b) / 2 for the median pair(s) a, b
        G_D[i, j] += dtau * sigma ** 2
    return value, sqdist_vjp(Y, G_D)


def ensd(X, Y, *, grad: bool, mx=None, my=None):
    """Effective number of shared dimensions (Giaffar et al. 2023).

    ENSD = tr(K) tr(L) tr(KL) / (tr(K²) tr(L²)) for centred linear kernels K = XXᵀ, L = YYᵀ:
    CKA times the geometric mean of the two participation ratios; ENSD(X, X) is X's
    participation ratio tr(K)² / tr(K²).  mx, my: as in :func:`linear_cka`.
    """
    g = LinearGrams(X, Y, mx, my)
    scale = g.tx * g.ty / (g.xx * g.yy)
    value = scale * g.xy
    if not grad:
        return value, None
    return value, g.grad_y(2.0 * scale, -4.0 * value / g.yy, 2.0 * value / g.ty)
