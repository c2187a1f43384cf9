"""Array-level kernels backed by the compiled core (numpy in -> numpy out).

Same names and signatures as :mod:`fastmlem.numpy_backend`, their plain-numpy twins.
"""
from __future__ import annotations

import numpy as np

from ._backend import require_core


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
