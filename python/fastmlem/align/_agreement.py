"""Per-stimulus agreement between aligned models (numpy or cupy, ``xp``).

All functions take the aligned models A (K, n, k) (row i of A[m] is stimulus i in model m, in the
shared space) and return one value per stimulus, an (n,) array.
"""
from __future__ import annotations

from .._backend import get_array_module

KINDS = ("dispersion", "cosine", "identification")
METRICS = ("cosine", "euclidean")
#: whether a larger value of each kind means the models agree more about the stimulus
HIGHER_IS_CONVERGENT = {"dispersion": False, "cosine": True, "identification": True}
_CHUNK_ENTRIES = 1 << 23  # similarity-matrix block size in identification (64 MiB in float64)


def check_kind(kind: str, metric: str = "cosine") -> None:
    """Raise a clear error for an unknown agreement kind or identification metric."""
    if kind not in KINDS:
        raise ValueError(f"unknown agreement kind {kind!r}; choose one of {KINDS}.")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}.")


def agreement(A, B, kind: str, metric: str = "cosine"):
    """Per-stimulus agreement (n,) of aligned models A (K, n, k) around barycenter B (n, k).

    "dispersion": (1/K) sum_m |A[m, i] - B[i]|^2 (lower = more convergent).
    "cosine": mean over model pairs m != l of cos(A[m, i], A[l, i]).
    "identification": fraction of ordered model pairs (m, l) for which stimulus i's row in m is
        nearest (by ``metric``) to stimulus i's own row in l among all n rows of l.
    """
    check_kind(kind, metric)
    if kind == "dispersion":
        return ((A - B[None]) ** 2).sum(axis=-1).mean(axis=0)
    if kind == "cosine":
        return mean_pairwise_cosine(A)
    return identification(A, metric)


def _unit_rows(A):
    xp = get_array_module(A)
    norms = xp.sqrt((A * A).sum(axis=-1, keepdims=True))
    return A / xp.where(norms > 0, norms, 1.0)


def mean_pairwise_cosine(A):
    """(n,) mean over ordered model pairs m != l of cos(A[m, i], A[l, i]), in O(K n k).

    With unit rows u_m: sum_{m != l} u_m . u_l = |sum_m u_m|^2 - sum_m |u_m|^2.
    """
    K = A.shape[0]
    U = _unit_rows(A)
    total = U.sum(axis=0)
    return ((total * total).sum(axis=-1) - (U * U).sum(axis=(0, 2))) / (K * (K - 1))


def identification(A, metric: str = "cosine"):
    """(n,) fraction of ordered model pairs (m, l) in which stimulus i is identified.

    Identified: score(A[m, i], A[l, i]) >= score(A[m, i], A[l, j]) for all j, where the score is
    the cosine similarity or minus the squared euclidean distance.  Each unordered pair is scored
    once in row blocks (m -> l along rows, l -> m along columns): O(K^2 n^2 k) time, O(n) memory
    beyond one block.
    """
    xp = get_array_module(A)
    K, n, _ = A.shape
    V = _unit_rows(A) if metric == "cosine" else A
    sq = (A * A).sum(axis=-1)
    hits = xp.zeros(n, dtype=A.dtype)
    step = max(1, _CHUNK_ENTRIES // n)
    for m in range(K):
        for l in range(m + 1, K):
            own = xp.empty(n, dtype=A.dtype)
            col_best = xp.full(n, -xp.inf, dtype=A.dtype)
            for start in range(0, n, step):
                rows = slice(start, min(start + step, n))
                S = V[m, rows] @ V[l].T
                if metric == "euclidean":
                    S = 2.0 * S - sq[m, rows, None] - sq[l][None, :]
                own[rows] = xp.diagonal(S, offset=start)
                hits[rows] += own[rows] >= S.max(axis=1)
                col_best = xp.maximum(col_best, S.max(axis=0))
            hits += own >= col_best
    return hits / (K * (K - 1))
