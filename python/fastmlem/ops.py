"""Array-level kernels: numpy in -> numpy out (compiled CPU core), cupy in -> cupy out (CUDA).

Same names and signatures as :mod:`fastmlem.numpy_backend`, their plain-numpy twins. A function
given any cupy array runs its twin of the same name in :mod:`fastmlem.cuda_ops` (the one dispatch
point), which raises a clear error when cupy or ``fastmlem._cuda`` is missing.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _validate
from ._backend import METRICS, is_cupy, require_core
from ._shared import condensed_index, n_columns, pearson_grad, soft_rank_strengths


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


def _paired_ranks(x, y, at_least: int):
    """x, y as the rank kernels read them: same shape, >= ``at_least`` values along the last axis,
    no NaN."""
    if np.ndim(x) == 0 or np.ndim(y) == 0:
        raise ValueError("x and y must have at least one axis; got a 0-d array.")
    x, y = _rank_keys(x, "x"), _rank_keys(y, "y")
    if x.shape != y.shape or x.shape[-1] < at_least:
        raise ValueError(f"x and y must have the same shape, with at least {at_least} value(s) along the last "
                         f"axis; got {x.shape} and {y.shape}.")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("cannot rank NaN values.")
    return x, y


@_gpu_twin
def spearman(x, y):
    """Exact Spearman correlation along the last axis (average ranks); shape x.shape[:-1]."""
    x, y = _paired_ranks(x, y, 1)
    return require_core().spearman(x, y).reshape(x.shape[:-1])


def kendall_tau_a(x, y):
    """Kendall's tau-a along the last axis: (concordant - discordant) / (B(B-1)/2) over the
    B(B-1)/2 pairs of each row of x and y (..., B), B >= 2; shape x.shape[:-1].

    Pairs tied in x or in y count as neither. Exact 64-bit pair counts, O(B log B) per row
    (Knight's algorithm). CPU only, numpy in and out (no CUDA twin: ``cuda_ops`` never copies to
    the host, and RSA, its caller, compares on the host anyway). Twin:
    :func:`fastmlem.numpy_backend.kendall_tau_a`.
    """
    if is_cupy(x) or is_cupy(y):
        raise TypeError("kendall_tau_a runs on the CPU: pass numpy arrays (cupy.asnumpy(x)).")
    x, y = _paired_ranks(x, y, 2)
    return require_core().kendall_tau_a(x, y).reshape(x.shape[:-1])


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


def _representations(Y, name="Y"):
    """Y (n, p) as the kernels read it in place: float16, float32 or float64 (other dtypes become
    float64), unit column stride."""
    Y = np.asarray(Y)
    if Y.dtype not in (np.float16, np.float32, np.float64):
        Y = _as_f64(Y, name)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be (n, p); got shape {Y.shape}.")
    if Y.shape[1] > 1 and Y.strides[1] != Y.itemsize or Y.strides[0] % Y.itemsize or Y.strides[0] < 0:
        Y = np.ascontiguousarray(Y)  # the kernels take any row stride, but unit column stride
    return Y


def _targets(targets, n, metric):
    """MLEM's neural targets: a condensed RDM (n(n-1)/2,) as float64, or representations Y (n, p)
    read in place (pairs gathered per batch with ``metric``)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}.")
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if targets.shape != (n * (n - 1) // 2,):
            raise ValueError(f"a condensed RDM must be (n(n-1)/2,) = ({n * (n - 1) // 2},); got {targets.shape}.")
        return _as_f64(targets, "D")
    Y = _representations(targets)
    if Y.shape[0] != n:
        raise ValueError(f"Y must have one row per stimulus ({n}); got shape {Y.shape}.")
    return Y


@_gpu_twin
def mlem_step(X, targets, interactions: bool, nan_to_num: float, batch_size: int, seed: int, strength=1.0,
              regularization: str = "l2", metric: str = "euclidean"):
    """MLEM's training step fused in C++ (the objective of :func:`rank_loss_grad`, on a fresh batch).

    X: (n, m) encoded features or (n, n, m) per-feature distances; targets: the condensed neural
    RDM (n(n-1)/2,) in the order of ``numpy_backend.all_pairs``, or the representations Y (n, p)
    (float16, float32 or float64, read in place; each pair's rows gathered with ``metric``).
    Returns step(stream, w (q,), lo, hi) -> (score, grad_w (q,), lo, hi): pairs from
    ``sample_pairs(n, batch_size, seed, stream)``, neural distances min-max scaled with the running
    (lo, hi) and squared, score = pearson(soft_rank(F w), soft_rank(y)). One call per step, GIL
    released. Twin: :func:`fastmlem.numpy_backend.mlem_step`.
    """
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    soft_rank_strengths(np.zeros((1, 2)), strength)  # validates strength
    X = _features(X)
    targets = _targets(targets, X.shape[0], metric)
    batch_size = _validate.positive_int(batch_size, "batch_size")
    q = n_columns(X.shape[-1], interactions)
    _validate.check_memory(batch_bytes(batch_size, q), f"a training batch of {batch_size:,} pairs x {q} columns")
    core = require_core().MlemStep(X, targets, metric, bool(interactions), float(nan_to_num), int(batch_size),
                                   int(seed), -1.0 if strength == "auto" else float(strength), regularization == "kl")

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
    'norm_diff' (| ||y_i|| - ||y_j|| |). float16, float32 and float64 Y are read as they are (no
    copy when the columns are contiguous); euclidean and manhattan distances of float16/float32
    rows are summed in float in blocks of 1,024 columns (relative error below 1.2e-6, as the data's
    own rounding; sums beyond float's range are taken again in double), all else in double; other
    dtypes are cast to float64. Twin: :func:`fastmlem.numpy_backend.neural_distances`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}.")
    Y = _representations(Y)
    return require_core().neural_distances(Y, Y.shape[0], *_pairs(i, j, Y.shape[0]), metric)


@_gpu_twin
def rdm_lookup(D, n: int, i, j):
    """Entries (i[k], j[k]) (B,) of a condensed RDM D (n(n-1)/2,) of n stimuli; 0 on the diagonal."""
    D = _targets(D, int(n), "euclidean")
    return require_core().neural_distances(D, int(n), *_pairs(i, j, int(n)), "euclidean")


def condensed_rdm(Y, metric: str = "euclidean", block_bytes: int = 2**26):
    """Condensed neural RDM (n(n-1)/2,) float64 of Y (n, p), in the order of ``all_pairs``.

    Built in row blocks straight into condensed form (no n x n matrix): euclidean and cosine from
    Gram blocks Y[r0:r1] Y[r0:]^T (BLAS; float32 for float16/float32 euclidean input, float64
    otherwise; Y centred first for euclidean, so an offset costs no accuracy), the other metrics by
    the pairwise kernel. Extra memory: one float32/64 copy of Y and one block of ``block_bytes``.
    Twin: :func:`fastmlem.numpy_backend.condensed_rdm`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}.")
    Y = _representations(Y)
    n = Y.shape[0]
    out = np.empty(n * (n - 1) // 2)
    core = require_core()
    if metric not in ("euclidean", "cosine"):
        for r0, r1 in _row_blocks(n, block_bytes // 16):
            i, j = _block_pairs(n, r0, r1)
            out[condensed_index(r0, n):condensed_index(r1, n)] = core.neural_distances(Y, n, i, j, metric)
        return out
    # float32 Gram blocks for float16/32 euclidean (error ~1e-7 of the largest distance, tested);
    # cosine distances near 0 cancel in 1 - g / den, so cosine always takes float64 blocks
    work = np.float32 if Y.dtype != np.float64 and metric == "euclidean" else np.float64
    Z, scale = _gram_operand(Y, metric, work, block_bytes)
    sq = np.empty(n)  # squared norms from the diagonal of the same products: duplicates get exactly 0
    for r0, r1 in reversed(list(_row_blocks(n, block_bytes // Z.itemsize))):
        G = Z[r0:r1] @ Z[r0:].T  # (r1 - r0, n - r0); blocks last first, so sq[r1:] is already known
        sq[r0:r1] = np.diagonal(G[:, :r1 - r0])
        core.condensed_from_gram(G, sq, r0, metric == "cosine", out)
    if scale != 1.0:
        out *= scale
    return out


def _gram_operand(Y, metric, work, block_bytes):
    """(Z, scale): the operand Z (n, p) of ``work`` dtype whose Gram blocks give the RDM, built in
    row chunks, and the factor its euclidean distances take: Y centred and divided by a power of
    two (exact; no Gram entry can overflow) for 'euclidean', rows scaled to unit norm for 'cosine'
    (zero rows stay zero; scale 1)."""
    n, p = Y.shape
    rows = max(1, block_bytes // (8 * p))  # float64 temporaries of at most block_bytes
    chunks = [(r0, min(n, r0 + rows)) for r0 in range(0, n, rows)]
    Z = np.empty((n, p), dtype=work)
    if metric == "euclidean":
        mean = _column_mean(Y)
        from .encoding import _largest_magnitude
        largest = max(_largest_magnitude(Y[r0:r1]) for r0, r1 in chunks) + float(np.abs(mean).max())
        exponent = int(np.round(np.log2(largest))) if largest > 0 else 0
        for r0, r1 in chunks:
            np.multiply(Y[r0:r1] - mean, 2.0 ** -exponent, out=Z[r0:r1], casting="unsafe")
        return Z, 2.0 ** exponent
    for r0, r1 in chunks:
        block = Y[r0:r1].astype(np.float64)
        block /= np.abs(block).max(axis=1, keepdims=True).clip(min=np.finfo(np.float64).tiny)  # no overflow
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
        np.divide(block, np.where(norms > 0, norms, 1.0), out=Z[r0:r1], casting="unsafe")
    return Z, 1.0


def all_pairs(n: int):
    """All pairs i < j in condensed (row-major upper-triangle) order: two int64 arrays (n(n-1)/2,)."""
    return _block_pairs(int(n), 0, int(n))


def _column_mean(Y, rows=65536):
    """Mean of the rows of Y (float64, (p,)), summed in row chunks (no float64 copy of Y)."""
    total = np.zeros(Y.shape[1])
    for r0 in range(0, Y.shape[0], rows):
        total += Y[r0:r0 + rows].sum(axis=0, dtype=np.float64)
    return total / Y.shape[0]


def _row_blocks(n, pairs_per_block):
    """Consecutive row ranges [r0, r1) of the upper triangle, each with at most ~pairs_per_block pairs."""
    r0 = 0
    while r0 < n:
        r1 = min(n, r0 + max(1, int(pairs_per_block // max(n - r0, 1))))
        yield r0, r1
        r0 = r1


def _block_pairs(n, r0, r1):
    """All pairs (r, c), r0 <= r < r1, c > r, in condensed order: two int64 arrays."""
    counts = n - 1 - np.arange(r0, r1)
    i = np.repeat(np.arange(r0, r1, dtype=np.int64), counts)
    j = np.arange(i.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts) + i + 1
    return i, j


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


def permutation_importance(X, targets, w, interactions: bool, nan_to_num: float, batch_size: int, seed: int,
                           stream0: int, perm_seed: int, n_permutations: int, metric: str = "euclidean"):
    """MLEM's permutation importance fused in C++, OpenMP over the q * n_permutations tasks.

    X: (n, m) encoded features or (n, n, m) per-feature distances; targets: the condensed neural
    RDM (n(n-1)/2,) or the representations Y (n, p) (rows gathered with ``metric``); w: (q,)
    column weights. Task t (column t // n_permutations) draws ``sample_pairs(n, batch_size, seed,
    stream0 + t)``, permutes its column by ``random_permutations(batch_size, 1, perm_seed, t)`` and
    returns the exact Spearman (average ranks) of the baseline and permuted predictions:
    (base (T,), permuted (T,)), T = q * n_permutations.
    Twin: :func:`fastmlem.numpy_backend.permutation_importance`.
    """
    X, w = _features(X), _as_f64(w, "w")
    n, q = X.shape[0], n_columns(X.shape[-1], interactions)
    targets = _targets(targets, n, metric)
    if w.shape != (q,):
        raise ValueError(f"need w ({q},); got {w.shape}.")
    if not np.isfinite(w).all():
        raise ValueError(f"the weights w must be finite; got {w}.")
    batch_size = _validate.positive_int(batch_size, "batch_size")
    n_permutations = _validate.positive_int(n_permutations, "n_permutations")
    threads = min(_validate.worker_threads(), q * n_permutations)
    _validate.check_memory(threads * batch_bytes(batch_size, q),
                           f"permutation importance on {threads} threads, batches of {batch_size:,} pairs x {q} columns")
    mask = 2**64 - 1
    return require_core().permutation_importance(X, targets, metric, w, bool(interactions), float(nan_to_num),
                                                 int(batch_size), int(seed) & mask, int(stream0) & mask,
                                                 int(perm_seed) & mask, q * int(n_permutations), int(n_permutations))


def batch_bytes(batch_size: int, q: int) -> int:
    """Bytes of the buffers one batch of ``batch_size`` pairs with q predictor columns takes in the
    fused kernels (the rows, about a dozen per-pair vectors, sort buffers), per thread."""
    return int(batch_size) * (int(q) + 16) * 8
