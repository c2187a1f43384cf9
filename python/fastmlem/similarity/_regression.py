"""Regression measures: how well a linear map of Y predicts the target X.

Direction (Cloos et al.'s convention): X (n, p) is the reference / target, Y (n, q) the
representation being compared or optimised; ridge regression predicts X from Y (with an
intercept), X_hat = (Y - mean_train(Y)) B + mean_train(X),
B = (Y_cᵀ Y_c + lambda I)^-1 Y_cᵀ X_c.  ``lambda = 0`` is ordinary least squares (through a
pseudo-inverse when Y_cᵀY_c is singular).  In-sample forms fit and predict all n stimuli;
``cv`` forms predict each stimulus from a fit on the other folds.

Scores of X_hat:
- ``r2``: pooled R² = 1 - sum_ij (X - X_hat)²_ij / sum_ij (X - mean X)²_ij (sklearn's
  multioutput="variance_weighted"); cross-validated, the held-out predictions of all folds are
  pooled and the mean is that of all n stimuli.
- ``pearson``: mean over target units of the Pearson correlation between X[:, j] and
  X_hat[:, j]; units constant across stimuli are left out.
"""
from __future__ import annotations


import numpy as np

from .._backend import get_array_module
from ._linalg import psd_inverse
from ._validate import sq

#: seed of the fixed permutation behind the cross-validation folds
FOLD_SEED = 0


def cv_folds(n: int, k: int | None):
    """Deterministic K-fold split of n stimuli: list of (train, test) numpy index arrays.

    Folds are contiguous blocks of one fixed random permutation (seed FOLD_SEED), sizes differing
    by at most one.  ``k=None`` gives the in-sample "split" [(all, all)] as slices.
    """
    if k is None:
        return [(slice(None), slice(None))]
    if n < 2 * k:
        raise ValueError(f"{k}-fold cross-validation needs at least {2 * k} stimuli; got {n}. "
                         "Use fewer folds (e.g. '-cv=3') or the in-sample measure.")
    perm = np.random.default_rng(FOLD_SEED).permutation(n)
    tests = np.array_split(perm, k)
    return [(np.sort(np.concatenate(tests[:i] + tests[i + 1:])), np.sort(t))
            for i, t in enumerate(tests)]


def ridge_predict(X, Y, lam: float, folds):
    """Predictions X_hat (n, p) of X (n, p) from Y (n, q) and what ``ridge_vjp`` needs.

    folds : output of ``cv_folds`` (one (train, test) pair per fit).  Each fit uses the cheaper
    exact form: the feature form B = (Y_cᵀY_c + lambda I)^-1 Y_cᵀ X_c with a (q, q) inverse when
    q < m (m training stimuli), else the kernel form B = Y_cᵀ (Y_c Y_cᵀ + lambda I)^+ X_c with an
    (m, m) one, which for lambda = 0 is the minimum-norm least-squares solution (the feature
    Gram is then singular).
    """
    xp = get_array_module(X, Y)
    X_hat = xp.empty_like(X)
    fits = []
    for train, test in folds:
        train_i, test_i = _index(xp, train), _index(xp, test)
        Ytr, Xtr = Y[train_i], X[train_i]
        mu_y, mu_x = Ytr.mean(axis=0), Xtr.mean(axis=0)
        Yc, Xc = Ytr - mu_y, Xtr - mu_x
        if Y.shape[1] < Yc.shape[0]:
            fit = _Fit(train_i, test_i, Yc, mu_y, kernel=False,
                       inverse=psd_inverse(Yc.T @ Yc, lam), dual=None, B=None)
            fit.B = fit.inverse @ (Yc.T @ Xc)
            fit.dual = Xc - Yc @ fit.B  # the training residual
        else:
            W = psd_inverse(Yc @ Yc.T, lam)
            alpha = W @ Xc
            fit = _Fit(train_i, test_i, Yc, mu_y, kernel=True, inverse=W, dual=alpha,
                       B=Yc.T @ alpha)
        X_hat[test_i] = (Y[test_i] - mu_y) @ fit.B + mu_x
        fits.append(fit)
    return X_hat, fits


class _Fit:
    """One ridge fit: rows, centred training Y_c (m, q), mean mu_y, the form, the inverse
    ((q, q) or (m, m)), B (q, p) and ``dual``: the training residual X_c - Y_c B (feature form)
    or the dual coefficients alpha = (Y_c Y_cᵀ + lambda I)^+ X_c (kernel form), (m, p)."""

    def __init__(self, train, test, Yc, mu_y, *, kernel, inverse, dual, B):
        self.train, self.test, self.Yc, self.mu_y = train, test, Yc, mu_y
        self.kernel, self.inverse, self.dual, self.B = kernel, inverse, dual, B


def _index(xp, idx):
    return idx if isinstance(idx, slice) else xp.asarray(idx)


def ridge_vjp(Y, fits, G):
    """Gradient (n, q) w.r.t. Y of a scalar whose gradient w.r.t. X_hat = ridge_predict is G.

    Per fit, X_hat_test = Z B with Z = Y_test - mu: the direct term G Bᵀ on the test rows and
    -colsum(G Bᵀ) / m on the training rows (through mu).  Through B, with Γ = Y_c B_G where
    B_G = (Y_cᵀY_c + lambda I)^+ Zᵀ G is B's response to G:

    - feature form: R B_Gᵀ - Γ Bᵀ (R the training residual);
    - kernel form: alpha (Gᵀ Z - Γᵀ Y_c) - Γ Bᵀ, with Γ = W Y_c Zᵀ G.  For lambda = 0 this
      keeps the term of the null space of Y_c (q >= m) that differentiating the
      pseudo-inverse of Y_cᵀY_c as if it were an inverse drops;

    both then centred over the training rows (Y_c = Y_train - mu).
    """
    xp = get_array_module(Y, G)
    GY = xp.zeros_like(Y)
    for f in fits:
        Gt = G[f.test]
        Z = Y[f.test] - f.mu_y
        direct = Gt @ f.B.T
        if f.kernel:
            Gamma = f.inverse @ (f.Yc @ (Z.T @ Gt))
            through_b = f.dual @ (Gt.T @ Z - Gamma.T @ f.Yc) - Gamma @ f.B.T
        else:
            BG = f.inverse @ (Z.T @ Gt)
            through_b = f.dual @ BG.T - f.Yc @ (BG @ f.B.T)
        GY[f.test] += direct
        GY[f.train] += through_b - through_b.mean(axis=0) - direct.sum(axis=0) / f.Yc.shape[0]
    return GY


def r2(X, X_hat, *, grad: bool):
    """Pooled R² of X_hat (n, p) for X (n, p), and its gradient w.r.t. X_hat."""
    total = sq(X - X.mean(axis=0))
    resid = X - X_hat
    value = 1.0 - sq(resid) / total
    return value, (2.0 / total) * resid if grad else None


def pearson(X, X_hat, *, grad: bool):
    """Mean per-unit Pearson r between X[:, j] and X_hat[:, j] (constant units of X skipped)."""
    xp = get_array_module(X, X_hat)
    Xc, Hc = X - X.mean(axis=0), X_hat - X_hat.mean(axis=0)
    nx, nh = xp.sqrt((Xc * Xc).sum(axis=0)), xp.sqrt((Hc * Hc).sum(axis=0))
    used = nx > 1e-12 * float(nx.max())
    ok = used & (nh > 0)
    nx_s, nh_s = xp.where(ok, nx, 1.0), xp.where(ok, nh, 1.0)
    r = xp.where(ok, (Xc * Hc).sum(axis=0) / (nx_s * nh_s), 0.0)
    m = int(used.sum())
    value = float(r.sum()) / m
    if not grad:
        return value, None
    return value, xp.where(ok, (Xc / nx_s - r * Hc / nh_s) / nh_s, 0.0) / m


SCORES = {"r2": r2, "pearson": pearson}


def regression(X, Y, *, score: str, lam: float, cv: int | None, grad: bool):
    """Score of the (cross-validated) ridge prediction of X (n, p) from Y (n, q); see module doc."""
    X_hat, fits = ridge_predict(X, Y, lam, cv_folds(X.shape[0], cv))
    value, G = SCORES[score](X, X_hat, grad=grad)
    return value, (ridge_vjp(Y, fits, G) if grad else None)


