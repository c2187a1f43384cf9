"""Array-level kernels on the GPU: cupy in -> cupy out, backed by ``fastmlem._cuda``.

Same names and signatures as :mod:`fastmlem.ops` (and its numpy twins in
:mod:`fastmlem.numpy_backend`): ``sample_pairs``, ``feature_distances``, ``rank_average``,
``spearman``, ``soft_rank``, ``soft_rank_vjp``, ``rank_loss_grad``, ``SoftRankState``. GPU-only
helpers: ``neural_distances``, ``condensed_rdm`` (cuBLAS GEMM),
``rdm_lookup``, ``feature_distances_precomputed``, the fused ``sample_predict`` / ``predict`` /
``features_vjp`` / ``mlem_step`` (never store the (B, q) predictor
matrix), ``pearson``
and ``permutation_spearman`` (neural distances ranked once for all permuted predictions).

Every kernel runs on cupy's current stream and allocates from cupy's memory pool; nothing is
copied to the host except the one boolean of an input check (NaN, index bounds), which therefore
synchronises. Results that are scalars on the CPU (the score of ``rank_loss_grad``) are 0-d cupy
arrays here: call ``float()`` on them when the host needs the value.
"""
from __future__ import annotations

from ._backend import require_cuda
from . import _shared
from ._shared import n_columns as _q, soft_rank_strengths  # numpy or cupy in, same out

_MASK64 = 2**64 - 1


# ------------------------------------------------------------------------------- plumbing ---
def _mods():
    return require_cuda()  # (cupy, fastmlem._cuda) or a clear ImportError


def _stream(cp):
    return cp.cuda.get_current_stream().ptr


def _work(cp, nbytes):
    """Scratch memory from cupy's pool; freeing it right after the launch is safe because the
    pool reuses memory in stream order."""
    return cp.empty(max(int(nbytes), 1), dtype=cp.uint8)


def _f64(cp, a, name):
    a = cp.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric; got dtype {a.dtype}.")
    return cp.ascontiguousarray(a, dtype=cp.float64)


def _index(cp, a):
    return cp.ascontiguousarray(cp.asarray(a), dtype=cp.int64)


def _pairs(cp, i, j, n):
    i, j = _index(cp, i), _index(cp, j)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError("i and j must be 1-D index arrays of the same length.")
    if i.size and bool(((i < 0) | (i >= n) | (j < 0) | (j >= n)).any()):
        raise IndexError(f"pair indices must lie in [0, {n}).")
    return i, j


def _rows(x):
    """(T, B) view of x along its last axis."""
    B = x.shape[-1]
    return x.reshape(-1, B), (x.size // B if B else 0), B


# ---------------------------------------------------------------------- pairs and features ---
def sample_pairs(n: int, size: int, seed: int, stream: int = 0):
    """Pairs (i, j), two cupy int64 arrays (size,), uniform with replacement in [0, n)^2;
    bit-identical to :func:`fastmlem.ops.sample_pairs` for the same (seed, stream)."""
    cp, cu = _mods()
    if n < 1 or size < 0:
        raise ValueError(f"need n >= 1 and size >= 0; got n={n}, size={size}.")
    i, j = cp.empty(int(size), cp.int64), cp.empty(int(size), cp.int64)
    cu.sample_pairs(int(n), int(size), int(seed) & _MASK64, int(stream) & _MASK64, i.data.ptr, j.data.ptr, _stream(cp))
    return i, j


def _features(cp, X, name="X"):
    """X (n, m) encoded features or (n, n, m) per-feature distances (precomputed)."""
    X = _f64(cp, X, name)
    if X.ndim == 3 and X.shape[0] == X.shape[1]:
        return X, X.shape[0], X.shape[2], True
    if X.ndim != 2:
        raise ValueError(f"{name} must be (n, m), or (n, n, m) when precomputed; got shape {X.shape}.")
    return X, X.shape[0], X.shape[1], False


def _feature_rows(cp, cu, X, n, m, pre, i, j, interactions, nan_to_num):
    F = cp.empty((i.size, _q(m, interactions)), cp.float64)
    cu.feature_distances(X.data.ptr, n, m, pre, i.data.ptr, j.data.ptr, i.size, bool(interactions),
                         float(nan_to_num), F.data.ptr, _stream(cp))
    return F


def feature_distances(X, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """Predictor rows (B, m) or (B, m(m+1)/2) of pairs (i, j) of encoded features X (n, m).

    d_k = clip(|x_ik - x_jk|, 0, 1) with NaN -> nan_to_num; columns d_k**2, or with interactions
    d_a * d_b for a >= b in row-major lower-triangle order. cupy float64 (B, q).
    """
    cp, cu = _mods()
    X = _f64(cp, X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be (n, m); got shape {X.shape}.")
    i, j = _pairs(cp, i, j, X.shape[0])
    return _feature_rows(cp, cu, X, X.shape[0], X.shape[1], False, i, j, interactions, nan_to_num)


def feature_distances_precomputed(X, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """As :func:`feature_distances` for per-feature distance matrices X (n, n, m): d_k = clip(X[i, j, k], 0, 1)."""
    cp, cu = _mods()
    X, n, m, pre = _features(cp, X)
    if not pre:
        raise ValueError(f"X must be (n, n, m); got shape {X.shape}.")
    i, j = _pairs(cp, i, j, n)
    return _feature_rows(cp, cu, X, n, m, True, i, j, interactions, nan_to_num)


def _weights(cp, w, m, interactions):
    w = _f64(cp, w, "w").ravel()
    if w.size != _q(m, interactions):
        raise ValueError(f"w must have {_q(m, interactions)} entries; got {w.size}.")
    return w


def sample_predict(X, w, size: int, seed: int, stream: int = 0, interactions: bool = False,
                   nan_to_num: float = 0.0):
    """Fused sampling, predictor rows and prediction: returns (i, j, pred), cupy (size,) each, with
    (i, j) = sample_pairs(n, size, seed, stream) and pred = feature_distances(X, i, j, ...) @ w,
    without the (size, q) matrix. X (n, m) or (n, n, m) precomputed; w (q,)."""
    cp, cu = _mods()
    X, n, m, pre = _features(cp, X)
    w = _weights(cp, w, m, interactions)
    if not cu.fused_supported(m, bool(interactions)):
        i, j = sample_pairs(n, size, seed, stream)
        return i, j, _feature_rows(cp, cu, X, n, m, pre, i, j, interactions, nan_to_num) @ w
    i, j, pred = (cp.empty(int(size), t) for t in (cp.int64, cp.int64, cp.float64))
    cu.predict_pairs(X.data.ptr, n, m, pre, bool(interactions), float(nan_to_num), w.data.ptr, True,
                     int(seed) & _MASK64, int(stream) & _MASK64, i.data.ptr, j.data.ptr, int(size), pred.data.ptr,
                     _stream(cp))
    return i, j, pred


def predict(X, w, i, j, interactions: bool = False, nan_to_num: float = 0.0):
    """pred (B,) = feature_distances(X, i, j, ...) @ w for given pairs, without the (B, q) matrix."""
    cp, cu = _mods()
    X, n, m, pre = _features(cp, X)
    w = _weights(cp, w, m, interactions)
    i, j = _pairs(cp, i, j, n)
    if not cu.fused_supported(m, bool(interactions)):
        return _feature_rows(cp, cu, X, n, m, pre, i, j, interactions, nan_to_num) @ w
    pred = cp.empty(i.size, cp.float64)
    cu.predict_pairs(X.data.ptr, n, m, pre, bool(interactions), float(nan_to_num), w.data.ptr, False, 0, 0,
                     i.data.ptr, j.data.ptr, i.size, pred.data.ptr, _stream(cp))
    return pred


def features_vjp(X, i, j, g, interactions: bool = False, nan_to_num: float = 0.0):
    """F^T g (q,) for F = feature_distances(X, i, j, ...) and g (B,), recomputing F tile by tile
    (deterministic: fixed-order reduction)."""
    cp, cu = _mods()
    X, n, m, pre = _features(cp, X)
    i, j = _pairs(cp, i, j, n)
    g = _f64(cp, g, "g").ravel()
    if g.size != i.size:
        raise ValueError(f"g must have one entry per pair ({i.size}); got {g.size}.")
    if not cu.fused_supported(m, bool(interactions)):
        return _feature_rows(cp, cu, X, n, m, pre, i, j, interactions, nan_to_num).T @ g
    grad = cp.empty(_q(m, interactions), cp.float64)
    nbytes = cu.features_vjp_workspace(m, bool(interactions), i.size)
    work = _work(cp, nbytes)
    cu.features_vjp(X.data.ptr, n, m, pre, bool(interactions), float(nan_to_num), i.data.ptr, j.data.ptr, i.size,
                    g.data.ptr, grad.data.ptr, work.data.ptr, nbytes, _stream(cp))
    return grad


# ---------------------------------------------------------------------- neural distances ---
def _representations(cp, Y):
    Y = cp.asarray(Y)
    if Y.dtype not in (cp.float32, cp.float64):
        Y = Y.astype(cp.float32 if Y.dtype == cp.float16 else cp.float64)
    return cp.ascontiguousarray(Y)


def neural_distances(Y, i, j, metric: str = "euclidean"):
    """Distances (B,) float64 between rows Y[i] and Y[j] of Y (n, p) (float32 or float64, other
    dtypes are cast): 'euclidean', 'manhattan', 'cosine' (a zero row counts as distance 1) or
    'norm_diff' (| ||y_i|| - ||y_j|| |). Twin: numpy_backend.neural_distances."""
    cp, cu = _mods()
    if metric not in cu.METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {tuple(cu.METRICS)}.")
    Y = _representations(cp, Y)
    Y = Y.reshape(Y.shape[0], -1)
    i, j = _pairs(cp, i, j, Y.shape[0])
    out = cp.empty(i.size, cp.float64)
    cu.neural_distances(Y.data.ptr, Y.itemsize, Y.shape[1], i.data.ptr, j.data.ptr, i.size, cu.METRICS[metric],
                        out.data.ptr, _stream(cp))
    return out


def all_pairs(n: int):
    """All pairs i < j in condensed (row-major upper-triangle) order: two cupy int64 arrays."""
    cp, _ = _mods()
    i, j = cp.triu_indices(int(n), 1)
    return i.astype(cp.int64), j.astype(cp.int64)


def condensed_rdm(Y, metric: str = "euclidean", block_bytes: int = 2**30):
    """Condensed neural RDM (n(n-1)/2,) float64 in the order of :func:`all_pairs`.

    euclidean and cosine go through cuBLAS: Gram rows Y[r0:r1] Y^T, ``block_bytes`` at a time, then
    one kernel turns them into distances; other metrics use :func:`neural_distances` on all pairs.
    Raises MemoryError when the RDM would not fit in free GPU memory.
    """
    cp, cu = _mods()
    if metric not in cu.METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {tuple(cu.METRICS)}.")
    Y = _representations(cp, Y)
    Y = Y.reshape(Y.shape[0], -1)
    n = Y.shape[0]
    n_pairs = n * (n - 1) // 2
    free = cp.cuda.Device().mem_info[0] + cp.get_default_memory_pool().free_bytes()
    if n_pairs * 8 > 0.8 * free:
        raise MemoryError(f"the condensed RDM of {n} stimuli needs {n_pairs * 8 / 2**30:.1f} GiB of GPU memory; "
                          f"{free / 2**30:.1f} GiB are free: sample pairs instead.")
    if metric not in ("euclidean", "cosine"):
        return neural_distances(Y, *all_pairs(n), metric)
    out = cp.empty(n_pairs, cp.float64)
    # the CPU's definition (centred / unit rows, norms from the Gram diagonal), with the kernel
    # turning each block into distances
    for r0, r1, G, sq in _shared.gram_blocks(Y, metric, cp, block_bytes):
        cu.condensed_from_gram(G.data.ptr, n, sq.data.ptr, r0, min(r1, n - 1), n, cu.METRICS[metric], out.data.ptr,
                               _stream(cp))
    return out


def rdm_lookup(D, n: int, i, j):
    """Entries (i, j) (B,) of a condensed RDM D (n(n-1)/2,) (0 on the diagonal)."""
    cp, cu = _mods()
    D = _f64(cp, D, "D")
    if D.size != n * (n - 1) // 2:
        raise ValueError(f"D must have n(n-1)/2 = {n * (n - 1) // 2} entries; got {D.size}.")
    i, j = _pairs(cp, i, j, n)
    out = cp.empty(i.size, cp.float64)
    cu.lookup_condensed(D.data.ptr, int(n), i.data.ptr, j.data.ptr, i.size, out.data.ptr, _stream(cp))
    return out


# -------------------------------------------------------------------- ranks and Spearman ---
def _check_no_nan(cp, *arrays):
    if any(a.size and bool(cp.isnan(a).any()) for a in arrays):
        raise ValueError("cannot rank NaN values.")


def _rank(cp, cu, x2, T, B):
    out = cp.empty((T, B), cp.float64)
    if T and B:
        nbytes = cu.rank_workspace(T, B)
        work = _work(cp, nbytes)
        cu.rank_average(x2.data.ptr, T, B, out.data.ptr, work.data.ptr, nbytes, _stream(cp))
    return out


def _pearson_rows(cp, cu, x2, y2, T, B):
    """Pearson of rows of x2 (T, B) with rows of y2 (T, B), or with y2's single row (1, B)."""
    out = cp.zeros(T, cp.float64)
    if T and B:
        nbytes = cu.pearson_workspace(T, B)
        work = _work(cp, nbytes)
        cu.pearson_rows(x2.data.ptr, y2.data.ptr, 0 if y2.shape[0] == 1 else B, T, B, out.data.ptr, work.data.ptr,
                        nbytes, _stream(cp))
    return out


def rank_average(x):
    """Ranks 1..B along the last axis with ties averaged (scipy's rankdata 'average'); same shape."""
    cp, cu = _mods()
    x = _f64(cp, x, "x")
    _check_no_nan(cp, x)
    if x.ndim == 0 or x.size == 0:
        return cp.empty(x.shape, cp.float64) if x.ndim else cp.ones((), cp.float64)
    x2, T, B = _rows(x)
    return _rank(cp, cu, x2, T, B).reshape(x.shape)


def spearman(x, y):
    """Exact Spearman correlation along the last axis (average ranks); shape x.shape[:-1]
    (0 where a vector is constant)."""
    cp, cu = _mods()
    x, y = _f64(cp, x, "x"), _f64(cp, y, "y")
    if x.shape != y.shape or x.ndim == 0:
        raise ValueError(f"x and y must have the same shape; got {x.shape} and {y.shape}.")
    _check_no_nan(cp, x, y)
    if x.size == 0:
        return cp.zeros(x.shape[:-1], cp.float64)
    x2, T, B = _rows(x)
    out = cp.empty(T, cp.float64)
    nbytes = cu.spearman_workspace(T, B)
    work = _work(cp, nbytes)
    cu.spearman(x2.data.ptr, y.reshape(T, B).data.ptr, T, B, out.data.ptr, work.data.ptr, nbytes, _stream(cp))
    return out.reshape(x.shape[:-1])


def pearson(x, y):
    """Pearson correlation along the last axis (0 where a vector is constant); y may be one vector
    (B,) shared by every row of x. Shape x.shape[:-1]."""
    cp, cu = _mods()
    x, y = _f64(cp, x, "x"), _f64(cp, y, "y")
    if x.ndim == 0 or (x.shape != y.shape and y.shape != x.shape[-1:]):
        raise ValueError(f"y must have x's shape or be one vector of x's last axis; got {x.shape} and {y.shape}.")
    if x.size == 0:
        return cp.zeros(x.shape[:-1], cp.float64)
    x2, T, B = _rows(x)
    return _pearson_rows(cp, cu, x2, y.reshape(-1, B), T, B).reshape(x.shape[:-1])


def permutation_spearman(pred, permuted, y):
    """Spearman of baseline and permuted predictions against the same neural distances, which are
    ranked once: pred (T, B), permuted (K, T, B) or (T, B), y (T, B) -> (base (T,), permuted
    (K, T) or (T,)). Rows are independent batches (one per feature x permutation task)."""
    cp, cu = _mods()
    pred, permuted, y = _f64(cp, pred, "pred"), _f64(cp, permuted, "permuted"), _f64(cp, y, "y")
    if pred.shape != y.shape or pred.ndim != 2 or permuted.shape[-2:] != pred.shape:
        raise ValueError(f"need pred and y (T, B), permuted (K, T, B) or (T, B); got {pred.shape}, "
                         f"{permuted.shape}, {y.shape}.")
    _check_no_nan(cp, pred, permuted, y)
    T, B = pred.shape
    ry = _rank(cp, cu, y, T, B)
    both = cp.concatenate([pred[None], permuted.reshape(-1, T, B)]).reshape(-1, B)
    rx = _rank(cp, cu, both, both.shape[0], B).reshape(-1, T, B)
    r = cp.stack([_pearson_rows(cp, cu, rx[k], ry, T, B) for k in range(rx.shape[0])])
    return r[0], r[1:].reshape(permuted.shape[:-1])


# ----------------------------------------------------------------------------- soft rank ---
class SoftRankState:
    """What :func:`soft_rank_vjp` needs from the forward pass: x (T, B), ranks (T, B), perm (T, B)
    int32 descending sort order, block_start (T, B) int64 FLAT index (t * B + start) of each sorted
    position's pooled block, eps (T,), kl."""

    def __init__(self, x, ranks, perm, block_start, eps, kl):
        self.x, self.ranks, self.perm, self.block_start, self.eps, self.kl = x, ranks, perm, block_start, eps, kl


def _soft_rank(cp, cu, x2, eps, kl):
    T, B = x2.shape
    ranks = cp.empty((T, B), cp.float64)
    perm = cp.empty((T, B), cp.int32)
    block = cp.empty((T, B), cp.int64)
    nbytes = cu.soft_rank_workspace(T, B)
    work = _work(cp, nbytes)
    cu.soft_rank(x2.data.ptr, eps.data.ptr, T, B, bool(kl), ranks.data.ptr, perm.data.ptr, block.data.ptr,
                 work.data.ptr, nbytes, _stream(cp))
    return ranks, SoftRankState(x2, ranks, perm, block, eps, bool(kl))


def soft_rank(x, strength=1.0, regularization: str = "l2"):
    """Soft ranks (ascending, 1..B) along the last axis of x (B,) or (T, B).

    Projection onto the permutahedron (Blondel et al. 2020): CUB radix sort, then a parallel
    Pool-Adjacent-Violators, 'l2' or 'kl' regularisation. Returns (ranks, state) for
    :func:`soft_rank_vjp`.
    """
    cp, cu = _mods()
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    x = _f64(cp, x, "x")
    one = x.ndim == 1
    x2 = x[None] if one else x
    if x2.ndim != 2 or x2.shape[1] == 0 or not bool(cp.isfinite(x2).all()):
        raise ValueError("x must be a finite (B,) or (T, B) array with B >= 1.")
    if x2.shape[1] >= 2**31:
        raise ValueError("soft_rank on the GPU needs rows shorter than 2**31.")
    ranks, state = _soft_rank(cp, cu, x2, soft_rank_strengths(x2, strength), regularization == "kl")
    return (ranks[0] if one else ranks), state


def soft_rank_vjp(state: SoftRankState, g):
    """Gradient w.r.t. x of <g, soft_rank(x)>, same shape as g: minus the mean of the sorted
    cotangent over each recorded block (l2), or its softmax-weighted block sum (kl)."""
    cp, cu = _mods()
    g = _f64(cp, g, "g")
    g2 = g[None] if g.ndim == 1 else g
    T, B = state.x.shape
    if g2.shape != (T, B):
        raise ValueError(f"g must have the forward's shape {state.x.shape}; got {g.shape}.")
    out = cp.empty((T, B), cp.float64)
    nbytes = cu.soft_rank_vjp_workspace(T, B)
    work = _work(cp, nbytes)
    cu.soft_rank_vjp(g2.data.ptr, state.x.data.ptr, state.ranks.data.ptr, state.perm.data.ptr,
                     state.block_start.data.ptr, state.eps.data.ptr, T, B, state.kl, out.data.ptr, work.data.ptr,
                     nbytes, _stream(cp))
    return out[0] if g.ndim == 1 else out


# ---------------------------------------------------------------------- MLEM step pieces ---
def _pearson_grad(cp, x, y):
    """(r, dr/dx) for vectors x, y (B,), without leaving the device (r is 0-d); (0, 0) when either
    is constant, by the rule of :func:`fastmlem._shared.centred` (spread at rounding level counts)."""
    from ._shared import centred
    (xc, nx), (yc, ny) = centred(x), centred(y)
    ok = (nx > 0) & (ny > 0)
    den = cp.where(ok, nx * ny, 1.0)
    r = cp.where(ok, xc @ yc / den, 0.0)
    grad = cp.where(ok, yc / den - r * xc / cp.where(ok, nx * nx, 1.0), 0.0)
    return r, grad


def _rank_loss(cp, cu, pred, y, strength, regularization):
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    kl = regularization == "kl"
    pred2, y2 = pred[None], _f64(cp, y, "y").reshape(1, -1)
    if y2.shape != pred2.shape:
        raise ValueError(f"y must have one entry per pair ({pred.size}); got {y2.size}.")
    rx, state = _soft_rank(cp, cu, pred2, soft_rank_strengths(pred2, strength), kl)
    ry, _ = _soft_rank(cp, cu, y2, soft_rank_strengths(y2, strength), kl)
    score, g_rank = _pearson_grad(cp, rx[0], ry[0])
    return score, soft_rank_vjp(state, g_rank)


def rank_loss_grad(F, w, y, strength=1.0, regularization: str = "l2"):
    """MLEM's objective on one batch and its gradient w.r.t. the column weights.

    F: (B, q) predictor rows, w: (q,), y: (B,) neural targets (cupy). Returns (score 0-d cupy,
    grad_w (q,) cupy) with score = pearson(soft_rank(F w), soft_rank(y)); twin:
    numpy_backend.rank_loss_grad.
    """
    cp, cu = _mods()
    F = _f64(cp, F, "F")
    score, g_pred = _rank_loss(cp, cu, F @ _f64(cp, w, "w"), y, strength, regularization)
    return score, F.T @ g_pred


def mlem_step(X, targets, interactions: bool, nan_to_num: float, batch_size: int, seed: int, strength=1.0,
              regularization: str = "l2", metric: str = "euclidean"):
    """GPU twin of :func:`fastmlem.ops.mlem_step`: MLEM's training step on a fresh batch, fused.

    X: (n, m) encoded features or (n, n, m) per-feature distances; targets: the condensed neural
    RDM (n(n-1)/2,) (e.g. from :func:`condensed_rdm`) or the representations Y (n, p) (rows
    gathered per pair with ``metric``). Returns step(stream, w (q,), lo, hi) -> (score, grad_w (q,),
    lo, hi): pairs from ``sample_pairs(n, batch_size, seed, stream)``, neural distances (NaN ->
    nan_to_num), min-max scaled with the running (lo, hi) and squared, score =
    pearson(soft_rank(F w), soft_rank(y)) and grad_w = d score / d w. F is never stored, and nothing
    leaves the device: score, lo and hi are 0-d cupy arrays (lo, hi may be given as floats).
    """
    from ._shared import minmax_scaled
    cp, cu = _mods()
    if regularization not in ("l2", "kl"):
        raise ValueError(f"regularization must be 'l2' or 'kl'; got {regularization!r}.")
    soft_rank_strengths(cp.zeros((1, 2)), strength)  # validates strength
    (X, n, m, pre), B = _features(cp, X), int(batch_size)
    gather = targets.ndim == 2
    if gather:
        Y = targets
        if Y.shape[0] != n:
            raise ValueError(f"Y must have one row per stimulus ({n}); got shape {Y.shape}.")
    else:
        D = _f64(cp, targets, "D")
        if D.shape != (n * (n - 1) // 2,):
            raise ValueError(f"D must be the condensed RDM (n(n-1)/2,) = ({n * (n - 1) // 2},); got {D.shape}.")

    def step(stream, w, lo, hi):
        i, j, pred = sample_predict(X, w, B, seed, stream, interactions, nan_to_num)
        if gather:
            y = neural_distances(Y, i, j, metric)
        else:
            y = cp.empty(B, cp.float64)  # pairs come from our sampler: no bounds check (and no sync) needed
            cu.lookup_condensed(D.data.ptr, n, i.data.ptr, j.data.ptr, B, y.data.ptr, _stream(cp))
        y = cp.nan_to_num(y, nan=nan_to_num)
        lo, hi = cp.minimum(lo, y.min()), cp.maximum(hi, y.max())  # running min-max, as the reference
        y = minmax_scaled(y, lo, hi)
        score, g_pred = _rank_loss(cp, cu, pred, y, strength, regularization)
        if not cu.fused_supported(m, bool(interactions)):
            return score, _feature_rows(cp, cu, X, n, m, pre, i, j, interactions, nan_to_num).T @ g_pred, lo, hi
        grad = cp.empty(_q(m, interactions), cp.float64)
        nbytes = cu.features_vjp_workspace(m, bool(interactions), B)
        work = _work(cp, nbytes)
        cu.features_vjp(X.data.ptr, n, m, pre, bool(interactions), float(nan_to_num), i.data.ptr, j.data.ptr, B,
                        g_pred.data.ptr, grad.data.ptr, work.data.ptr, nbytes, _stream(cp))
        return score, grad, lo, hi
    return step


def permutation_importance(X, targets, w, interactions: bool, nan_to_num: float, batch_size: int, seed: int,
                           stream0: int, perm_seed: int, n_permutations: int, metric: str = "euclidean"):
    """GPU twin of :func:`fastmlem.ops.permutation_importance`, composed from this module's kernels
    (one task at a time); returns numpy (base (T,), permuted (T,))."""
    from . import cuda_ops
    from ._shared import composed_permutation_importance
    cp, _ = _mods()
    X, w = _features(cp, X)[0], _f64(cp, w, "w")
    targets = cp.asarray(targets)
    return composed_permutation_importance(cuda_ops, X, targets if targets.ndim == 2 else _f64(cp, targets, "D"), w,
                                           interactions, nan_to_num, batch_size, seed, stream0, perm_seed,
                                           n_permutations, metric)
