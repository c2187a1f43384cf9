"""What every backend shares: random streams, weight parametrisations and their VJPs, the
soft-rank strength rule and the Pearson gradient.

The compiled CPU backend (:mod:`fastmlem.ops`), the CUDA backend (:mod:`fastmlem.cuda_ops`) and the
numpy oracle (:mod:`fastmlem.numpy_backend`) all use these; none of them is a kernel.
"""
from __future__ import annotations

import numpy as np

_U64 = np.uint64


# ------------------------------------------------------------------------ random streams ---
def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of uint64 array x (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def stream_key(seed: int, stream: int) -> np.uint64:
    """Key of one random stream: every (seed, stream) gives an independent counter sequence."""
    s = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=_U64))
    with np.errstate(over="ignore"):
        return splitmix64(s ^ np.array([stream & 0xFFFFFFFFFFFFFFFF], dtype=_U64) * _U64(0xD1B54A32D192ED03))[0]


def random_bits(seed: int, stream: int, size: int) -> np.ndarray:
    """uint64 (size,): counter-based random numbers, bits[k] = splitmix64(key(seed, stream) + k)."""
    with np.errstate(over="ignore"):
        return splitmix64(stream_key(seed, stream) + np.arange(size, dtype=_U64))


def random_permutations(size: int, count: int, seed: int, stream: int = 0) -> np.ndarray:
    """int64 (count, size): row r permutes range(size) by the stable argsort of the 53-bit keys
    random_bits(seed, stream + r, size) >> 11 (exact as doubles, so the C++ radix sort agrees)."""
    keys = np.stack([random_bits(seed, stream + r, size) >> _U64(11) for r in range(count)]).reshape(count, size)
    return np.argsort(keys.astype(np.float64), axis=1, kind="stable")


# ------------------------------------------------------------------ weight parametrisations ---
def n_columns(m: int, interactions: bool) -> int:
    """Predictor columns q of m features: m, or m(m+1)/2 (a >= b) with interactions."""
    return m * (m + 1) // 2 if interactions else m


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def weights(params: np.ndarray, m: int, kind: str) -> np.ndarray:
    """Weights of the predictor columns from raw parameters.

    kind 'diag': w = softplus(v) / ||softplus(v)||_2 (m,).
    kind 'spd' : W = L L^T / ||L L^T||_F with L lower-triangular from params (row-major tril),
                 softplus on its diagonal; returns the lower triangle of W (m(m+1)/2,): the
                 reference's form, prediction sum_{a>=b} W_ab d_a d_b = d'((W + diag W)/2)d.
    kind 'spd_quadratic': the same SPD W, used as the quadratic form itself (prediction d'W d,
                 the paper's Fig. 1): returns the column coefficients, W_aa on the diagonal and
                 2 W_ab off it (lower triangle, m(m+1)/2,).
    kind 'free': w = params / ||params||_2 (unconstrained; FR-RSA-I when over interaction columns).
    """
    if kind == "diag":
        u = softplus(params)
        return u / np.linalg.norm(u)
    if kind == "free":  # one column: its sign is not identifiable from a unit vector, use +1
        return np.ones(1) if params.size == 1 else params / np.linalg.norm(params)
    if kind == "spd_quadratic":
        return weights(params, m, "spd") * _offdiag_factor(m)
    if kind == "spd":
        a, b = np.tril_indices(m)
        L = np.zeros((m, m))
        L[a, b] = params
        L[np.diag_indices(m)] = softplus(np.diag(L))
        W = L @ L.T
        return (W / np.linalg.norm(W))[a, b]
    raise ValueError(kind)


def _offdiag_factor(m: int) -> np.ndarray:
    """(m(m+1)/2,): 1 on the diagonal entries of a row-major lower triangle, 2 off it."""
    a, b = np.tril_indices(m)
    return np.where(a == b, 1.0, 2.0)


def weights_vjp(params: np.ndarray, m: int, kind: str, grad_w: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. params of <grad_w, weights(params)> (analytic)."""
    if kind == "spd_quadratic":
        return weights_vjp(params, m, "spd", grad_w * _offdiag_factor(m))
    if kind == "free" and params.size == 1:
        return np.zeros(1)
    if kind in ("diag", "free"):
        u = softplus(params) if kind == "diag" else params
        nrm = np.linalg.norm(u)
        w = u / nrm
        g = (grad_w - w * (w @ grad_w)) / nrm
        return g * sigmoid(params) if kind == "diag" else g
    a, b = np.tril_indices(m)
    L = np.zeros((m, m))
    L[a, b] = params
    raw_diag = np.diag(L).copy()
    L[np.diag_indices(m)] = softplus(raw_diag)
    M = L @ L.T
    nrm = np.linalg.norm(M)
    W = M / nrm
    G = np.zeros((m, m))
    G[a, b] = grad_w
    gM = (G - W * np.sum(G * W)) / nrm
    gL = np.tril((gM + gM.T) @ L)
    gL[np.diag_indices(m)] *= sigmoid(raw_diag)
    return gL[a, b]


# ------------------------------------------------------------ neural RDM by a Gram product ---
def gram_operand(Y, metric: str, xp=np):
    """The float64 operand (n, p) whose Gram product gives the RDM: Y centred for 'euclidean'
    (same distances, and sq_i + sq_j - 2 g_ij stays accurate under an offset), rows scaled to
    unit norm for 'cosine' (zero rows stay zero). Always a new array."""
    Y = Y.reshape(Y.shape[0], -1).astype(xp.float64)
    if metric == "euclidean":
        return Y - Y.mean(axis=0)
    norms = xp.sqrt((Y * Y).sum(axis=1, keepdims=True))
    return Y / xp.where(norms > 0, norms, 1.0)


def distances_from_gram(g, sq_rows, sq_cols, metric: str, xp=np, inplace: bool = False):
    """Distances from Gram entries g = <y_r, y_c> of :func:`gram_operand` and the squared norms
    sq taken from the diagonal of the same Gram product (so identical rows get exactly 0):
    sqrt(max((-2 g + sq_r) + sq_c, 0)) for 'euclidean', 1 - g / (sqrt(sq_r) sqrt(sq_c)) for
    'cosine' (1 where a row is zero). ``inplace``: overwrite g. The CUDA kernel
    ``condensed_from_gram`` computes the same (up to the order of the additions)."""
    d = g if inplace else g.copy()
    if metric == "euclidean":
        d *= -2.0
        d += sq_rows
        d += sq_cols
        xp.maximum(d, 0.0, out=d)
        return xp.sqrt(d, out=d)
    den = xp.sqrt(sq_rows) * xp.sqrt(sq_cols)
    xp.divide(d, xp.where(den > 0, den, 1.0), out=d)
    xp.subtract(1.0, d, out=d)
    d[xp.broadcast_to(den <= 0, d.shape)] = 1.0
    return d


def gram_blocks(Y, metric: str, xp=np, block_bytes: int = 2**27):
    """The Gram route to a condensed RDM, one definition for every device.

    Yields (r0, r1, G, sq) for row blocks, last block first: G (r1 - r0, n) = rows r0:r1 of the
    Gram product of :func:`gram_operand`, sq (n,) the Gram diagonal, filled from each block's
    own diagonal as the blocks go (entries r0: are set when a block is yielded, which is all
    that the pairs (r, c > r) of rows r0:r1 need). ``block_bytes`` bounds one block.
    """
    Y = gram_operand(Y, metric, xp)
    n = Y.shape[0]
    sq = xp.zeros(n, dtype=xp.float64)
    rows = max(1, min(n, int(block_bytes) // max(8 * n, 1)))
    for r0 in reversed(range(0, n, rows)):
        r1 = min(n, r0 + rows)
        G = xp.ascontiguousarray(Y[r0:r1] @ Y.T)
        k = xp.arange(r1 - r0)
        sq[r0:r1] = G[k, k + r0]
        yield r0, r1, G, sq


def condensed_index(r, n: int):
    """Position in a condensed RDM of the first pair (r, r + 1) of row r."""
    return n * r - r * (r + 1) // 2


# ------------------------------------------------------------- soft rank strength, Pearson ---
AUTO_TARGET = 0.999  # 'auto': soft ranks correlate at least this much with the hard ranks
_AUTO_OCTAVES, _AUTO_STEPS = 40.0, 12


def auto_strength(x) -> float:
    """The 'auto' soft-rank strength of one vector x (B,): the largest l2 strength under which
    the soft ranks of x still correlate >= AUTO_TARGET (Pearson) with its hard (average) ranks.

    Strengths are searched as ``range * 2**t``, t in [-40, 0], by 12 bisection steps on t; if the
    range itself qualifies (the whole vector in one block: soft ranks affine in x, the loss is
    then Pearson and x is already rank-like) it is returned; 1.0 for a constant vector or B < 2.
    Small strengths give the hard ranks and a zero gradient almost everywhere; the largest one
    that keeps the ranks pools only neighbours that are close for this x, so the gradient is
    informative and the loss tracks Spearman. The C++ fused step (``strength_of`` in
    csrc/cpu/mlem_step.cpp via ``auto_strength`` in csrc/cpu/softrank.cpp) follows the same steps.
    """
    from scipy.stats import rankdata
    from sklearn.isotonic import isotonic_regression
    s = -np.sort(-np.asarray(x, dtype=np.float64).ravel())  # descending, as the soft rank sorts
    B = s.size
    span = s[0] - s[-1] if B else 0.0
    if B < 2 or not span > 0:
        return 1.0
    hard = rankdata(s, method="average")
    hard_c = hard - hard.mean()
    rho = np.arange(B, 0, -1, dtype=np.float64)

    def rank_corr(eps):  # soft ranks at eps, times eps (PAV is scale-equivariant, Pearson scale-free)
        soft = s - isotonic_regression(s - eps * rho, increasing=False)
        soft_c = soft - soft.mean()
        den = np.sqrt((soft_c @ soft_c) * (hard_c @ hard_c))
        return soft_c @ hard_c / den if den > 0 else 0.0

    if rank_corr(span) >= AUTO_TARGET:
        return float(span)
    lo, hi = -_AUTO_OCTAVES, 0.0
    for _ in range(_AUTO_STEPS):
        mid = 0.5 * (lo + hi)
        if rank_corr(span * np.exp2(mid)) >= AUTO_TARGET:
            lo = mid
        else:
            hi = mid
    return float(span * np.exp2(lo))


def soft_rank_strengths(x, strength):
    """Per-row regularisation strength (T,) for x (T, B): a positive number, or 'auto'
    (:func:`auto_strength` per row, on the host: by the compiled core when it is built, else by
    the numpy definition). numpy in -> numpy out, cupy in -> cupy out."""
    from . import _backend
    xp = _backend.get_array_module(x)
    if isinstance(strength, str):
        if strength != "auto":
            raise ValueError(f"strength must be a positive number or 'auto'; got {strength!r}.")
        rule = getattr(_backend.core, "auto_strength", auto_strength)
        rows = np.ascontiguousarray(_backend.to_numpy(x), dtype=np.float64).reshape(x.shape[0], -1)
        return xp.asarray([rule(row) for row in rows], dtype=xp.float64)
    if not strength > 0:
        raise ValueError(f"strength must be positive; got {strength!r}.")
    return xp.full(x.shape[0], float(strength))


def centred(x):
    """(x - mean, norm) along the last axis, numpy or cupy. The norm is 0 for a constant vector and
    for one whose spread is at the rounding level of its values: the mean of a constant vector is
    not always exactly that constant, and a Pearson correlation of such leftovers is +-1, not 0."""
    xc = x - x.mean(-1, keepdims=True)
    nrm = ((xc * xc).sum(-1)) ** 0.5
    rounding = 4 * np.finfo(np.float64).eps * x.shape[-1] ** 0.5 * abs(x).max(-1)
    return xc, nrm * ((nrm > rounding) & (x.max(-1) > x.min(-1)))


def pearson(x, y):
    """Pearson correlation along the last axis (0 where a vector is constant)."""
    (xc, nx), (yc, ny) = centred(x), centred(y)
    den = nx * ny
    num = (xc * yc).sum(-1)
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def pearson_grad(x: np.ndarray, y: np.ndarray):
    """(r, dr/dx) for vectors x, y (B,); (0, 0) when either is constant (see :func:`centred`)."""
    (xc, nx), (yc, ny) = centred(x), centred(y)
    if nx == 0 or ny == 0:
        return 0.0, np.zeros_like(x)
    r = xc @ yc / (nx * ny)
    return r, yc / (nx * ny) - r * xc / nx ** 2


def minmax_scaled(y, lo, hi):
    """MLEM's neural targets: ((y - lo) / (hi - lo))^2 with the running (lo, hi), guarded by a
    relative epsilon (as csrc/pair_math.hpp's minmax_scale) so that tiny data keep their ranks;
    0 when every distance so far is equal. numpy or cupy (lo, hi: floats or 0-d arrays)."""
    from ._backend import get_array_module
    xp = get_array_module(y)
    den = (hi - lo) + 1e-8 * xp.maximum(xp.abs(lo), xp.abs(hi))
    scale = xp.where(den > 0, 1.0 / xp.where(den > 0, den, 1.0), 0.0)
    return ((y - lo) * scale) ** 2


# ------------------------------------------------------------------- predictions of pair rows ---
def predict(F, w):
    """Predicted distances (B,) = sum_c F[:, c] w[c], each row summed in the same order, so that
    pairs with identical predictor rows tie exactly (exact Spearman's average ranks depend on it;
    a BLAS product or ``pred + w_c * (new - old)`` leaves 1-ulp differences that split ties).
    Works for numpy and cupy arrays. The sum runs over columns in order, as the C++ kernels do
    (numpy's pairwise ``sum(axis=1)`` would group the terms differently and split other ties)."""
    pred = F[:, 0] * w[0]
    for c in range(1, F.shape[1]):
        pred = pred + F[:, c] * w[c]
    return pred


def permuted_rows(F, column: int, perm):
    """Copy of F (B, q) with column ``column`` permuted across rows by ``perm`` (B,)."""
    G = F.copy()
    G[:, column] = F[perm, column]
    return G


# ------------------------------------------------------------- composed permutation importance ---
def composed_permutation_importance(kernels, X, targets, w, interactions, nan_to_num, batch_size, seed, stream0,
                                    perm_seed, n_permutations, metric="euclidean"):
    """``permutation_importance`` composed from a backend's array kernels, one task at a time.

    The contract of :func:`fastmlem.ops.permutation_importance` (which fuses it in C++); the numpy
    oracle and the CUDA backend run this with their own kernels. Returns (base (T,), permuted (T,))
    as numpy arrays, T = len(w) * n_permutations.
    """
    from ._backend import get_array_module, to_numpy
    xp = get_array_module(X)
    n, T = X.shape[0], w.shape[0] * n_permutations
    features = kernels.feature_distances_precomputed if X.ndim == 3 else kernels.feature_distances
    base, permuted = np.empty(T), np.empty(T)
    for t in range(T):
        i, j = kernels.sample_pairs(n, batch_size, seed, stream0 + t)
        F = features(X, i, j, interactions, nan_to_num)
        y = kernels.rdm_lookup(targets, n, i, j) if targets.ndim == 1 else kernels.neural_distances(targets, i, j, metric)
        perm = xp.asarray(random_permutations(batch_size, 1, perm_seed, t)[0])
        b, p = kernels.permutation_spearman(predict(F, w)[None], predict(permuted_rows(F, t // n_permutations, perm), w)[None],
                                            xp.nan_to_num(y, nan=nan_to_num)[None])
        base[t], permuted[t] = float(to_numpy(b)[0]), float(to_numpy(p)[0])
    return base, permuted
