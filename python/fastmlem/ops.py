"""Array-level kernels: numpy in -> numpy out (compiled CPU core), cupy in -> cupy out (CUDA).

Same names and signatures as :mod:`fastmlem.numpy_backend`, their plain-numpy twins. A function
given any cupy array runs its twin of the same name in :mod:`fastmlem.cuda_ops` (the one dispatch
point), which raises a clear error when cupy or ``fastmlem._cuda`` is missing.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _validate
from ._backend import is_cupy, require_core
from ._shared import pearson_grad, soft_rank_strengths


def _gpu_twin(fn):
    """Route calls with any cupy argument to ``fastmlem.cuda_ops.<same name>``."""
    @functools.wraps(fn)
    def dispatch(*args, **kwargs):
        if any(is_cupy(a) or is_cupy(getattr(a, "x", None)) for a in (*args, *kwargs.values())):
            from . import cuda_ops
            return getattr(cuda_ops, fn.__name__)(*args, **kwargs)
        return fn(*args, **kwargs)
    return dispatch


def _as_f64(a, name):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric; got dtype {a.dtype}.")
    return np.ascontiguousarray(a, dtype=np.float64)


def _rank_keys(a, name):
    """float64 keys with the order and ties of ``a``: integers beyond 2**53 (which float64 cannot
    tell apart) are replaced by their dense rank among all values, exact and order-preserving."""
    a = np.asarray(a)
    if a.dtype.kind in "iu" and a.size and max(abs(int(a.min())), abs(int(a.max()))) > 2**53:
        return np.ascontiguousarray(np.unique(a, return_inverse=True)[1].reshape(a.shape), dtype=np.float64)
    return _as_f64(a, name)


def sample_pairs(n: int, size: int, seed: int, stream: int = 0):
    """Pairs (i, j), two int64 arrays (size,), uniform with replacement in [0, n)^2; reproducible
    from (seed, stream) and identical to :func:`fastmlem.numpy_backend.sample_pairs`."""
    n, size = _validate.positive_int(n, "n"), _validate.positive_int(size, "size", 0)
    return require_core().sample_pairs(int(n), int(size), int(seed) & (2**64 - 1), int(stream) & (2**64 - 1))


def _features(X, name="X"):
    """X as float64: (n, m) encoded features, or (n, n, m) per-feature distances (precomputed)."""
    X = _as_f64(X, name)
    if X.ndim not in (2, 3) or (X.ndim == 3 and X.shape[0] != X.shape[1]):
        raise ValueError(f"{name} must be (n, m) encoded features or (n, n, m) per-feature distances; "
                         f"got shape {X.shape}.")
    return X


def _pairs(i, j, n):
    i, j = np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError("i and j must be 1-D index arrays of the same length.")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise IndexError(f"pair indices must lie in [0, {n}).")
    return i, j


def _feature_rows(X, i, j, interactions, nan_to_num, precomputed):
    X = _features(X)
    if (X.ndim == 3) != precomputed:
        raise ValueError(f"X must be (n, n, m); got shape {X.shape}." if precomputed else
                         f"X must be (n, m); got shape {X.shape} (use feature_distances_precomputed).")
    return require_core().feature_distances(X, *_pairs(i, j, X.shape[0]), bool(interactions), float(nan_to_num))


@_gpu_twin
def feature_distances(X, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """Predictor rows (B, m) or (B, m(m+1)/2) of pairs (i, j) of encoded features X (n, m)."""
    return _feature_rows(X, i, j, interactions, nan_to_num, precomputed=False)


@_gpu_twin
def feature_distances_precomputed(X, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """As :func:`feature_distances` for per-feature distance matrices X (n, n, m): d = clip(X[i, j], 0, 1)."""
    return _feature_rows(X, i, j, interactions, nan_to_num, precomputed=True)


@_gpu_twin
def rank_average(x):
    """Ranks 1..B along the last axis with ties averaged (scipy's rankdata 'average'); exact for
    integers of any size."""
    if np.ndim(x) == 0:
        raise ValueError("x must have at least one axis; got a 0-d array.")
    x = _rank_keys(x, "x")
    if np.isnan(x).any():
        raise ValueError("cannot rank NaN values.")
    return require_core().rank_average(x)


@_gpu_twin
def spearman(x, y):
    """Exact Spearman correlation along the last axis (average ranks); shape x.shape[:-1]."""
    if np.ndim(x) == 0 or np.ndim(y) == 0:
        raise ValueError("x and y must have at least one axis; got a 0-d array.")
    x, y = _rank_keys(x, "x"), _rank_keys(y, "y")
    if x.shape != y.shape or x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x and y must have the same shape (non-empty); got {x.shape} and {y.shape}.")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("cannot rank NaN values.")
    return require_core().spearman(x, y).reshape(x.shape[:-1])


class SoftRankState:
    """What :func:`soft_rank_vjp` needs from the forward pass (sort order, pooled blocks)."""

    def __init__(self, x, ranks, perm, block_start, eps, kl):
        self.x, self.ranks, self.perm, self.block_start, self.eps, self.kl = x, ranks, perm, block_start, eps, kl


@_gpu_twin
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


@_gpu_twin
def soft_rank_vjp(state: SoftRankState, g):
    """Gradient w.r.t. x of <g, soft_rank(x)>, same shape as g."""
    shape, g = np.shape(g), _as_f64(g, "g")
    g2 = g[None] if len(shape) == 1 else g
    if g2.shape != state.x.shape:
        raise ValueError(f"g must have the shape of the soft ranks, {state.x.shape} (or ({state.x.shape[1]},) "
                         f"for one row); got {shape}.")
    out = require_core().soft_rank_vjp(g2, state.x, state.ranks, state.perm, state.block_start, state.eps, state.kl)
    return out[0] if len(shape) == 1 else out


@_gpu_twin
def rank_loss_grad(F, w, y, strength=1.0, regularization: str = "l2"):
    """MLEM's objective on one batch and its gradient w.r.t. the column weights.

    F: (B, q) predictor rows, w: (q,), y: (B,) neural targets. Returns (score, grad_w (q,)) with
    score = pearson(soft_rank(F w), soft_rank(y)); the twin is numpy_backend.rank_loss_grad.
    """
    F, w, y = _as_f64(F, "F"), _as_f64(w, "w"), _as_f64(y, "y")
    if F.ndim != 2 or w.shape != F.shape[1:] or y.shape != F.shape[:1]:
        raise ValueError(f"need F (B, q), w (q,) and y (B,); got {F.shape}, {w.shape} and {y.shape}.")
    pred = F @ w
    rx, state = soft_rank(pred, strength, regularization)
    ry, _ = soft_rank(y, strength, regularization)
    score, g_rank = pearson_grad(rx, ry)
    return score, F.T @ soft_rank_vjp(state, g_rank)


@_gpu_twin
def mlem_step(X, D, interactions: bool, nan_to_num: float, batch_size: int, seed: int, strength=1.0,
              regularization: str = "l2"):
    """MLEM's training step fused in C++ (the objective of :func:`rank_loss_grad`, on a fresh batch).

    X: (n, m) encoded features or (n, n, m) per-feature distances; D: condensed neural RDM
    (n(n-1)/2,) in the order of ``numpy_backend.all_pairs``. Returns
    step(stream, w (q,), lo, hi) -> (score, grad_w (q,), lo, hi): pairs from ``sample_pairs(n, batch_size, seed, stream)``, neural distances min-max scaled with the
    running (lo, hi) and squared, score = pearson(soft_rank(F w), soft_rank(y)).
    """
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    soft_rank_strengths(np.zeros((1, 2)), strength)  # validates strength
    X, D = _features(X), _as_f64(D, "D")
    n = X.shape[0]
    if D.shape != (n * (n - 1) // 2,):
        raise ValueError(f"D must be the condensed RDM (n(n-1)/2,) = ({n * (n - 1) // 2},); got {D.shape}.")
    batch_size = _validate.positive_int(batch_size, "batch_size")
    q = X.shape[-1] * (X.shape[-1] + 1) // 2 if interactions else X.shape[-1]
    _validate.check_memory(batch_bytes(batch_size, q), f"a training batch of {batch_size:,} pairs x {q} columns")
    core = require_core().MlemStep(X, D, bool(interactions), float(nan_to_num), int(batch_size), int(seed),
                                   -1.0 if strength == "auto" else float(strength), regularization == "kl")

    def step(stream, w, lo, hi):
        w = _as_f64(w, "w")
        if w.shape != (q,):
            raise ValueError(f"w must have shape ({q},); got {w.shape}.")
        if not np.isfinite(w).all():
            raise ValueError(f"the weights w must be finite; got {w}.")
        return core.step(int(stream) & (2**64 - 1), w, float(lo), float(hi))
    return step


@_gpu_twin
def neural_distances(Y, i, j, metric: str = "euclidean"):
    """Distances (B,) float64 between rows Y[i] and Y[j] of Y (n, p), for int64 index arrays i, j (B,).

    metric: 'euclidean', 'manhattan', 'cosine' (1 - cos; a zero row counts as distance 1) or
    'norm_diff' (| ||y_i|| - ||y_j|| |). float32 and float64 Y are read as they are (no copy when
    the columns are contiguous), sums are taken in double; other dtypes are cast to float64.
    Twin: :func:`fastmlem.numpy_backend.neural_distances`.
    """
    from .numpy_backend import METRICS
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}.")
    Y = np.asarray(Y)
    if Y.dtype != np.float32 and Y.dtype != np.float64:
        Y = _as_f64(Y, "Y")
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n, p); got shape {Y.shape}.")
    if Y.shape[1] > 1 and Y.strides[1] != Y.itemsize or Y.strides[0] % Y.itemsize:
        Y = np.ascontiguousarray(Y)  # the kernel takes any row stride, but unit column stride
    i, j = np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError("i and j must be 1-D index arrays of the same length.")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= Y.shape[0]):
        raise IndexError(f"pair indices must lie in [0, {Y.shape[0]}).")
    return require_core().neural_distances(Y, i, j, metric)


@_gpu_twin
def permutation_spearman(pred, permuted, y):
    """Exact Spearman (average ranks) of baseline and permuted predictions against the same targets.

    pred (T, B), permuted (K, T, B) or (T, B), y (T, B): each row is one batch; y and pred are
    ranked once per row, then only the permuted predictions are re-ranked. Returns
    (base (T,), permuted (K, T) or (T,)). Twin: ``numpy_backend.spearman`` of (pred, y) and of
    (permuted, y).
    """
    pred, permuted, y = _rank_keys(pred, "pred"), _rank_keys(permuted, "permuted"), _rank_keys(y, "y")
    if pred.shape != y.shape or pred.ndim != 2 or permuted.shape[-2:] != pred.shape or permuted.ndim > 3:
        raise ValueError(f"need pred and y (T, B), permuted (K, T, B) or (T, B); got {pred.shape}, "
                         f"{permuted.shape}, {y.shape}.")
    if np.isnan(pred).any() or np.isnan(permuted).any() or np.isnan(y).any():
        raise ValueError("cannot rank NaN values.")
    base, perm = require_core().permutation_spearman(pred, permuted.reshape(-1, *y.shape), y)
    return base, perm.reshape(permuted.shape[:-1])


def permutation_importance(X, D, w, interactions: bool, nan_to_num: float, batch_size: int, seed: int,
                           stream0: int, perm_seed: int, n_permutations: int):
    """MLEM's permutation importance fused in C++, OpenMP over the q * n_permutations tasks.

    X: (n, m) encoded features or (n, n, m) per-feature distances; D: condensed neural RDM
    (n(n-1)/2,); w: (q,) column weights.
    Task t (column t // n_permutations) draws ``sample_pairs(n, batch_size, seed, stream0 + t)``,
    permutes its column by ``numpy_backend.random_permutations(batch_size, 1, perm_seed, t)`` and
    returns the exact Spearman (average ranks) of the baseline and permuted predictions:
    (base (T,), permuted (T,)), T = q * n_permutations. Twin: the composition in
    ``PairwiseModel.score`` (rows -> numpy_backend.predict / permuted_rows -> permutation_spearman).
    """
    X, D, w = _features(X), _as_f64(D, "D"), _as_f64(w, "w")
    n, m = X.shape[0], X.shape[-1]
    q = m * (m + 1) // 2 if interactions else m
    if D.shape != (n * (n - 1) // 2,) or w.shape != (q,):
        raise ValueError(f"need D (n(n-1)/2,) and w ({q},); got {D.shape} and {w.shape}.")
    if not np.isfinite(w).all():
        raise ValueError(f"the weights w must be finite; got {w}.")
    batch_size = _validate.positive_int(batch_size, "batch_size")
    n_permutations = _validate.positive_int(n_permutations, "n_permutations")
    threads = min(_validate.worker_threads(), q * n_permutations)
    _validate.check_memory(threads * batch_bytes(batch_size, q),
                           f"permutation importance on {threads} threads, batches of {batch_size:,} pairs x {q} columns")
    mask = 2**64 - 1
    return require_core().permutation_importance(X, D, w, bool(interactions), float(nan_to_num), int(batch_size),
                                                 int(seed) & mask, int(stream0) & mask, int(perm_seed) & mask,
                                                 q * int(n_permutations), int(n_permutations))


def batch_bytes(batch_size: int, q: int) -> int:
    """Bytes of the buffers one batch of ``batch_size`` pairs with q predictor columns takes in the
    fused kernels (the rows, about a dozen per-pair vectors, sort buffers), per thread."""
    return int(batch_size) * (int(q) + 16) * 8
