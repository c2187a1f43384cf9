"""Plain numpy/scipy twins of every compiled kernel.

They define what each kernel computes, serve as the oracle in the tests, and are the "pure numpy
implementation of the same algorithm" the benchmarks compare against. Same names and signatures
as :mod:`fastmlem.ops`. Slow on purpose: clarity over speed.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import rankdata

from ._shared import (centred, composed_permutation_importance, minmax_scaled, pearson,  # noqa: F401
                      pearson_grad, permuted_rows, predict, random_bits, random_permutations, sigmoid,
                      soft_rank_strengths, softplus, splitmix64, stream_key, weights, weights_vjp)

_U64 = np.uint64
_MASK32 = _U64(0xFFFFFFFF)


# ---------------------------------------------------------------- random numbers and pairs ---
def sample_pairs(n: int, size: int, seed: int, stream: int = 0):
    """Pairs (i, j) drawn uniformly with replacement from [0, n)^2 (i == j allowed, as in MLEM).

    Returns two int64 arrays (size,). n < 2**32: i uses the high 32 bits, j the low 32 bits of
    one draw, each mapped to [0, n) by a multiply-shift. n >= 2**32: draws 2k and 2k + 1 give i
    and j, each mapped to [0, n) by a 64-bit multiply-shift (high half of the 128-bit product).
    """
    if n >= 2**32:
        h = random_bits(seed, stream, 2 * size)
        return _mulhi64(h[0::2], _U64(n)).astype(np.int64), _mulhi64(h[1::2], _U64(n)).astype(np.int64)
    h = random_bits(seed, stream, size)
    i = ((h >> _U64(32)) * _U64(n)) >> _U64(32)
    j = ((h & _MASK32) * _U64(n)) >> _U64(32)
    return i.astype(np.int64), j.astype(np.int64)


def _mulhi64(a, b):
    """High 64 bits of the 128-bit products a * b (uint64), from 32-bit halves."""
    lo, sh = _MASK32, _U64(32)
    a0, a1, b0, b1 = a & lo, a >> sh, b & lo, b >> sh
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> sh) + (p01 & lo) + (p10 & lo)
    return p11 + (p01 >> sh) + (p10 >> sh) + (mid >> sh)


def all_pairs(n: int):
    """All pairs i < j in condensed (row-major upper-triangle) order: two int64 arrays."""
    i, j = np.triu_indices(n, 1)
    return i.astype(np.int64), j.astype(np.int64)


# ---------------------------------------------------------------------- feature distances ---
def feature_distances(X: np.ndarray, i: np.ndarray, j: np.ndarray, interactions: bool = False,
                      nan_to_num: float = 0.0) -> np.ndarray:
    """Predictor rows of the sampled pairs.

    X: (n, m) encoded features; i, j: (B,). d_k = clip(|x_ik - x_jk|, 0, 1), NaN -> nan_to_num.
    Returns (B, m) squared distances d_k**2, or with interactions (B, m(m+1)/2) products d_a*d_b
    for a >= b in row-major lower-triangle order.
    """
    d = np.clip(np.nan_to_num(np.abs(X[i] - X[j]), nan=nan_to_num), 0.0, 1.0)
    if interactions:
        a, b = np.tril_indices(X.shape[1])
        return d[:, a] * d[:, b]
    return d * d


def feature_distances_precomputed(X: np.ndarray, i, j, interactions=False, nan_to_num=0.0):
    """As :func:`feature_distances` for per-feature distance matrices X (n, n, m)."""
    d = np.clip(np.nan_to_num(X[i, j], nan=nan_to_num), 0.0, 1.0)
    if interactions:
        a, b = np.tril_indices(X.shape[2])
        return d[:, a] * d[:, b]
    return d * d


# ------------------------------------------------------------------------ neural distances ---
METRICS = ("euclidean", "manhattan", "cosine", "norm_diff")


def neural_distances(Y: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distances between rows Y[i] and Y[j] (B,), float64; exactly 0 where i == j. Cosine of a
    zero row counts as 1."""
    return np.where(i == j, 0.0, _row_distances(Y, i, j, metric))


def _row_distances(Y, i, j, metric):
    Y = np.asarray(Y)
    a, b = Y[i].astype(np.float64), Y[j].astype(np.float64)
    if metric == "euclidean":
        return np.sqrt(((a - b) ** 2).sum(1))
    if metric == "manhattan":
        return np.abs(a - b).sum(1)
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        den = na * nb
        return 1.0 - np.divide((a * b).sum(1), den, out=np.zeros_like(den), where=den > 0)
    if metric == "norm_diff":
        return np.abs(np.linalg.norm(a, axis=1) - np.linalg.norm(b, axis=1))
    raise ValueError(f"unknown metric {metric!r}")


def condensed_rdm(Y: np.ndarray, metric: str = "euclidean", block_bytes=None) -> np.ndarray:
    """Condensed neural RDM (n(n-1)/2,), order of :func:`all_pairs` (``block_bytes``: unused here)."""
    i, j = all_pairs(Y.shape[0])
    if metric in ("euclidean", "cosine"):
        d = pdist(Y.astype(np.float64), metric)
        return np.nan_to_num(d, nan=1.0) if metric == "cosine" else d
    return neural_distances(Y, i, j, metric)


def rdm_lookup(D: np.ndarray, n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Entries (i, j) of a condensed RDM D (0 on the diagonal)."""
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    k = n * lo - lo * (lo + 1) // 2 + hi - lo - 1
    return np.where(lo == hi, 0.0, D[np.where(lo == hi, 0, k)])


# --------------------------------------------------------------------------------- soft rank ---
def _pav_decreasing(y: np.ndarray, w: np.ndarray, regularization: str):
    """Isotonic regression onto non-increasing sequences by Pool-Adjacent-Violators.

    l2: argmin ||v - (y - w)||^2; kl: block value logsumexp(y_B) - logsumexp(w_B).
    Returns (v, block_starts) with the pooled blocks recorded.
    """
    starts, vals, s1, s2 = [], [], [], []  # block start, value, sufficient statistics
    for k in range(len(y)):
        starts.append(k)
        if regularization == "l2":
            s1.append(y[k] - w[k]); s2.append(1.0)
            vals.append(s1[-1])
        else:
            s1.append(y[k]); s2.append(w[k])
            vals.append(y[k] - w[k])
        while len(vals) > 1 and vals[-2] <= vals[-1]:
            if regularization == "l2":
                s1[-2] += s1[-1]; s2[-2] += s2[-1]
                vals[-2] = s1[-2] / s2[-2]
            else:
                s1[-2] = np.logaddexp(s1[-2], s1[-1]); s2[-2] = np.logaddexp(s2[-2], s2[-1])
                vals[-2] = s1[-2] - s2[-2]
            for lst in (starts, vals, s1, s2):
                lst.pop()
    v = np.empty(len(y))
    bounds = starts + [len(y)]
    for b in range(len(starts)):
        v[bounds[b]:bounds[b + 1]] = vals[b]
    return v, np.array(bounds)


def soft_rank(x: np.ndarray, strength: float = 1.0, regularization: str = "l2"):
    """Soft ranks (ascending, 1..B) of x (B,) by projection onto the permutahedron (Blondel et al.).

    Returns (ranks (B,), state) where state is what :func:`soft_rank_vjp` needs.
    """
    x = np.asarray(x, dtype=np.float64)
    B = x.size
    theta = x / strength
    perm = np.argsort(-theta, kind="stable")  # descending
    s = theta[perm]
    rho = np.arange(B, 0, -1, dtype=np.float64)
    w = rho if regularization == "l2" else np.log(rho)
    dual, bounds = _pav_decreasing(s, w, regularization)
    primal = s - dual
    if regularization == "kl":
        primal = np.exp(primal)
    out = np.empty(B)
    out[perm] = primal
    return out, (perm, bounds, s, primal, strength, regularization)


def soft_rank_vjp(state, g: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. x of <g, soft_rank(x)>: minus the blockwise mean (l2) or softmax-weighted
    block sum (kl) of the sorted cotangent, through the recorded blocks."""
    perm, bounds, s, primal, strength, regularization = state
    u = np.asarray(g, dtype=np.float64)[perm]
    if regularization == "kl":
        u = u * primal
    out = u.copy()
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        blk = u[b0:b1]
        if regularization == "l2":
            out[b0:b1] -= blk.mean()
        else:
            e = np.exp(s[b0:b1] - s[b0:b1].max())
            out[b0:b1] -= e / e.sum() * blk.sum()
    res = np.empty_like(out)
    res[perm] = out
    return res / strength


# ------------------------------------------------------------------------ Pearson, Spearman ---
def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..B along the last axis, ties get their average rank."""
    return rankdata(x, axis=-1, method="average")


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact Spearman correlation along the last axis (average ranks for ties)."""
    return pearson(rank_average(x), rank_average(y))


def kendall_tau_a(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-a along the last axis, (concordant - discordant) / (B(B-1)/2), from scipy's
    tau-b: tau-a = tau-b sqrt((P - T_x)(P - T_y)) / P, P = B(B-1)/2 pairs, T_x and T_y the pairs
    tied in x and in y (0 when every pair is tied in x or in y)."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    B = x.shape[-1]
    total = B * (B - 1) / 2

    def tied(v):
        t = np.unique(v, return_counts=True)[1].astype(np.float64)
        return float((t * (t - 1) / 2).sum())

    def one(a, b):
        ta, tb = tied(a), tied(b)
        if ta == total or tb == total:
            return 0.0
        return float(kendalltau(a, b)[0]) * np.sqrt((total - ta) * (total - tb)) / total  # [0]: old scipy too
    rows = [one(a, b) for a, b in zip(x.reshape(-1, B), y.reshape(-1, B))]
    return np.array(rows).reshape(x.shape[:-1])


# -------------------------------------------------------------------------- MLEM step pieces ---
def rank_loss_grad(F: np.ndarray, w: np.ndarray, y: np.ndarray, strength=1.0, regularization="l2"):
    """MLEM's training objective on one batch and its gradient w.r.t. the column weights.

    F: (B, q) predictor rows, w: (q,) weights, y: (B,) neural targets.
    strength: float, or 'auto' (per vector: _shared.auto_strength, so the soft rank tracks the hard rank).
    Returns (score, grad_w): score = pearson(softrank(F w), softrank(y)).
    """
    pred = F @ w
    rx, state = soft_rank(pred, soft_rank_strengths(pred[None], strength)[0], regularization)
    ry, _ = soft_rank(y, soft_rank_strengths(y[None], strength)[0], regularization)
    r, g_rx = pearson_grad(rx, ry)
    g_pred = soft_rank_vjp(state, g_rx)
    return r, F.T @ g_pred


def _neural_targets(targets, n, i, j, metric, nan_to_num):
    """Neural distances of pairs (i, j): looked up in a condensed RDM (1-D) or computed from Y (n, p)."""
    targets = np.asarray(targets)
    y = rdm_lookup(targets, n, i, j) if targets.ndim == 1 else neural_distances(targets, i, j, metric)
    return np.nan_to_num(y, nan=nan_to_num)


def _rows(X, i, j, interactions, nan_to_num):
    return (feature_distances_precomputed if X.ndim == 3 else feature_distances)(X, i, j, interactions, nan_to_num)


def mlem_step(X, targets, interactions: bool, nan_to_num: float, batch_size: int, seed: int, strength=1.0,
              regularization: str = "l2", metric: str = "euclidean"):
    """Twin of :func:`fastmlem.ops.mlem_step`, composed: sample_pairs -> predictor rows -> neural
    targets (condensed RDM lookup or rows of Y) -> running min-max^2 -> :func:`rank_loss_grad`."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]

    def step(stream, w, lo, hi):
        i, j = sample_pairs(n, batch_size, seed, stream)
        y = _neural_targets(targets, n, i, j, metric, nan_to_num)
        lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        score, grad = rank_loss_grad(_rows(X, i, j, interactions, nan_to_num), np.asarray(w, dtype=np.float64),
                                     minmax_scaled(y, lo, hi), strength, regularization)
        return score, grad, lo, hi
    return step


def permutation_spearman(pred, permuted, y):
    """Twin of :func:`fastmlem.ops.permutation_spearman`: (spearman(pred, y) (T,), spearman(permuted, y))."""
    return spearman(pred, y), spearman(permuted, np.broadcast_to(y, np.shape(permuted)))


def permutation_importance(X, targets, w, interactions: bool, nan_to_num: float, batch_size: int, seed: int,
                           stream0: int, perm_seed: int, n_permutations: int, metric: str = "euclidean"):
    """Twin of :func:`fastmlem.ops.permutation_importance`: task t (column t // n_permutations)
    draws its batch from stream stream0 + t, permutes that column by random_permutations(batch_size,
    1, perm_seed, t) and gives the exact Spearman of the baseline and permuted predictions."""
    from . import numpy_backend
    return composed_permutation_importance(numpy_backend, np.asarray(X, dtype=np.float64), np.asarray(targets),
                                           np.asarray(w, dtype=np.float64), interactions, nan_to_num, batch_size,
                                           seed, stream0, perm_seed, n_permutations, metric)
