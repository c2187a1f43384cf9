"""Array-level kernels backed by the compiled core (numpy in -> numpy out).

Same names and signatures as :mod:`fastmlem.numpy_backend`, their plain-numpy twins.
"""
from __future__ import annotations

import numpy as np

from ._backend import require_core
from .numpy_backend import pearson_grad, soft_rank_strengths


def _as_f64(a, name):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric; got dtype {a.dtype}.")
    return np.ascontiguousarray(a, dtype=np.float64)


def sample_pairs(n: int, size: int, seed: int, stream: int = 0):
    """Pairs (i, j), two int64 arrays (size,), uniform with replacement in [0, n)^2; reproducible
    from (seed, stream) and identical to :func:`fastmlem.numpy_backend.sample_pairs`."""
    if n < 1 or size < 0:
        raise ValueError(f"need n >= 1 and size >= 0; got n={n}, size={size}.")
    return require_core().sample_pairs(int(n), int(size), int(seed) & (2**64 - 1), int(stream) & (2**64 - 1))


def feature_distances(X, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """Predictor rows (B, m) or (B, m(m+1)/2) of pairs (i, j) of encoded features X (n, m)."""
    X = _as_f64(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be (n, m); got shape {X.shape}.")
    i, j = np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError("i and j must be 1-D index arrays of the same length.")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= X.shape[0]):
        raise IndexError(f"pair indices must lie in [0, {X.shape[0]}).")
    return require_core().feature_distances(X, i, j, bool(interactions), float(nan_to_num))


def rank_average(x):
    """Ranks 1..B along the last axis with ties averaged (scipy's rankdata 'average')."""
    x = _as_f64(x, "x")
    if np.isnan(x).any():
        raise ValueError("cannot rank NaN values.")
    return require_core().rank_average(x)


def spearman(x, y):
    """Exact Spearman correlation along the last axis (average ranks); shape x.shape[:-1]."""
    x, y = _as_f64(x, "x"), _as_f64(y, "y")
    if x.shape != y.shape or x.ndim == 0:
        raise ValueError(f"x and y must have the same shape; got {x.shape} and {y.shape}.")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("cannot rank NaN values.")
    return require_core().spearman(x, y).reshape(x.shape[:-1])


class SoftRankState:
    """What :func:`soft_rank_vjp` needs from the forward pass (sort order, pooled blocks)."""

    def __init__(self, x, ranks, perm, block_start, eps, kl):
        self.x, self.ranks, self.perm, self.block_start, self.eps, self.kl = x, ranks, perm, block_start, eps, kl


def soft_rank(x, strength=1.0, regularization: str = "l2"):
    """Soft ranks (ascending, 1..B) along the last axis of x (B,) or (T, B).

    Projection onto the permutahedron (Blondel et al. 2020) by sort + Pool-Adjacent-Violators,
    with 'l2' or 'kl' regularisation. Returns (ranks, state) for :func:`soft_rank_vjp`.
    """
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    x = _as_f64(x, "x")
    one = x.ndim == 1
    x2 = x[None] if one else x
    if x2.ndim != 2 or x2.shape[1] == 0 or not np.isfinite(x2).all():
        raise ValueError("x must be a finite (B,) or (T, B) array with B >= 1.")
    eps = soft_rank_strengths(x2, strength)
    ranks, perm, block = require_core().soft_rank(x2, eps, regularization == "kl")
    state = SoftRankState(x2, ranks, perm, block, eps, regularization == "kl")
    return (ranks[0] if one else ranks), state


def soft_rank_vjp(state: SoftRankState, g):
    """Gradient w.r.t. x of <g, soft_rank(x)>, same shape as g."""
    g = _as_f64(g, "g")
    g2 = g[None] if g.ndim == 1 else g
    out = require_core().soft_rank_vjp(g2, state.x, state.ranks, state.perm, state.block_start, state.eps, state.kl)
    return out[0] if g.ndim == 1 else out


def rank_loss_grad(F, w, y, strength=1.0, regularization: str = "l2"):
    """MLEM's objective on one batch and its gradient w.r.t. the column weights.

    F: (B, q) predictor rows, w: (q,), y: (B,) neural targets. Returns (score, grad_w (q,)) with
    score = pearson(soft_rank(F w), soft_rank(y)); the twin is numpy_backend.rank_loss_grad.
    """
    F = _as_f64(F, "F")
    pred = F @ np.asarray(w, dtype=np.float64)
    rx, state = soft_rank(pred, strength, regularization)
    ry, _ = soft_rank(y, strength, regularization)
    score, g_rank = pearson_grad(rx, ry)
    return score, F.T @ soft_rank_vjp(state, g_rank)


def mlem_step(X, D, interactions: bool, nan_to_num: float, batch_size: int, seed: int, strength=1.0,
              regularization: str = "l2"):
    """MLEM's training step fused in C++ (the objective of :func:`rank_loss_grad`, on a fresh batch).

    X: (n, m) encoded features; D: condensed neural RDM (n(n-1)/2,) in the order of
    ``numpy_backend.all_pairs``. Returns step(stream, w (q,), lo, hi) -> (score, grad_w (q,), lo, hi):
    pairs from ``sample_pairs(n, batch_size, seed, stream)``, neural distances min-max scaled with the
    running (lo, hi) and squared, score = pearson(soft_rank(F w), soft_rank(y)).
    """
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    soft_rank_strengths(np.zeros((1, 2)), strength)  # validates strength
    X, D = _as_f64(X, "X"), _as_f64(D, "D")
    n = X.shape[0]
    if X.ndim != 2 or D.shape != (n * (n - 1) // 2,):
        raise ValueError(f"X must be (n, m) and D the condensed RDM (n(n-1)/2,); got {X.shape} and {D.shape}.")
    core = require_core().MlemStep(X, D, bool(interactions), float(nan_to_num), int(batch_size), int(seed),
                                   -1.0 if strength == "auto" else float(strength), regularization == "kl")
    return core.step
