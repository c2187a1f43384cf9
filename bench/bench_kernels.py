"""Compiled kernels vs what users would otherwise run, side by side in one run (medians, ratios).

    python bench/bench_kernels.py
"""
import time

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import rankdata, spearmanr

from fastmlem import numpy_backend as nb
from fastmlem import ops


def median_time(fn, repeat=7):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def row(name, ours, theirs, other):
    print(f"{name:<44} {ours * 1e3:>10.3f} {theirs * 1e3:>10.3f} {theirs / ours:>8.1f}x  vs {other}")


def main():
    rng = np.random.default_rng(0)
    print(f"{'kernel':<44} {'ours ms':>10} {'other ms':>10} {'ratio':>9}")
    T, B = 200, 10_000
    x, y = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    ours = median_time(lambda: ops.spearman(x, y), 3) / T
    theirs = median_time(lambda: [spearmanr(a, b) for a, b in zip(x[:20], y[:20])], 3) / 20
    row(f"exact Spearman, per vector (B={B})", ours, theirs, "scipy.stats.spearmanr")
    xt = np.round(x * 2)  # heavy ties
    ours = median_time(lambda: ops.rank_average(xt), 3) / T
    theirs = median_time(lambda: rankdata(xt, axis=1), 3) / T
    row(f"average ranks with ties, per vector (B={B})", ours, theirs, "scipy.stats.rankdata")
    n, m, Bp = 100_000, 16, 20_000
    X = rng.integers(0, 2, size=(n, m)).astype(float)
    i, j = ops.sample_pairs(n, Bp, 1)
    ours = median_time(lambda: ops.sample_pairs(n, Bp, 1))
    theirs = median_time(lambda: nb.sample_pairs(n, Bp, 1))
    row(f"pair sampling (B={Bp})", ours, theirs, "numpy twin")
    for inter in (False, True):
        ours = median_time(lambda: ops.feature_distances(X, i, j, inter))
        theirs = median_time(lambda: nb.feature_distances(X, i, j, inter))
        row(f"feature rows m={m} interactions={inter} (B={Bp})", ours, theirs, "numpy twin")
    v, g = rng.normal(size=100_000), rng.normal(size=100_000)

    def ours_soft_rank():
        _, state = ops.soft_rank(v, 1.0)
        ops.soft_rank_vjp(state, g)

    t_ours = median_time(ours_soft_rank)
    others = []
    try:
        import torch
        tv, tg = torch.tensor(v[None]), torch.tensor(g[None])
    except ImportError:
        torch = None
    for module, label in (("torchsort", "torchsort (CPU)"),
                          ("fast_soft_sort.pytorch_ops", "fast-soft-sort (the reference MLEM's)")):
        try:
            soft_rank = __import__(module, fromlist=["soft_rank"]).soft_rank if torch else None
        except ImportError:
            soft_rank = None
        if soft_rank is not None:
            def theirs_soft_rank(soft_rank=soft_rank):
                x = tv.clone().requires_grad_(True)
                soft_rank(x, regularization_strength=1.0).backward(tg)
            others.append((label, median_time(theirs_soft_rank)))
    for label, t_theirs in others:
        row("soft rank fwd+bwd, one 1e5 vector", t_ours, t_theirs, label)
    if not others:
        print(f"{'soft rank fwd+bwd, one 1e5 vector':<44} {t_ours * 1e3:>10.3f}   (torch + torchsort not installed)")
    bench_neural_distances(rng)
    bench_permutation_spearman(rng)


def copy_bandwidth(nbytes=2**28):
    """This machine's memory bandwidth (bytes/s) as seen by a large numpy copy (read + write)."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    return 2 * nbytes / median_time(lambda: np.copyto(dst, src), 5)


def bench_neural_distances(rng):
    from sklearn.metrics.pairwise import euclidean_distances

    from fastmlem.mlem import _condensed_rdm
    n, p, B = 20_000, 768, 100_000
    Y = rng.normal(size=(n, p)).astype(np.float32)
    i, j = ops.sample_pairs(n, B, 2)
    ours = median_time(lambda: ops.neural_distances(Y, i, j))
    row(f"sampled-pair euclidean p={p} f32 (B={B})", ours,
        median_time(lambda: np.linalg.norm(Y[i] - Y[j], axis=1)), "numpy gather (float32 sums)")
    row(f"sampled-pair euclidean p={p} f32 (B={B})", ours,
        median_time(lambda: nb.neural_distances(Y, i, j), 3), "numpy twin (float64)")
    t_cos = median_time(lambda: ops.neural_distances(Y, i, j, "cosine"))
    row(f"sampled-pair cosine p={p} f32 (B={B})", t_cos,
        median_time(lambda: nb.neural_distances(Y, i, j, "cosine"), 3), "numpy twin (float64)")
    gbs, bw = 2 * B * p * Y.itemsize / ours / 1e9, copy_bandwidth() / 1e9
    print(f"  sampled-pair euclidean kernel: {gbs:.1f} GB/s of rows read (2*B*p*4 bytes) vs {bw:.1f} GB/s "
          f"numpy copy bandwidth here ({gbs / bw:.0%} of the roofline)")
    Yr = rng.normal(size=(2000, p))
    ours = median_time(lambda: _condensed_rdm(Yr, "euclidean"), 5)
    row("condensed euclidean RDM n=2000 p=768 (GEMM)", ours, median_time(lambda: pdist(Yr), 3),
        "scipy.spatial.distance.pdist")
    row("condensed euclidean RDM n=2000 p=768 (GEMM)", ours, median_time(lambda: euclidean_distances(Yr), 5),
        "sklearn euclidean_distances (square)")


def bench_permutation_spearman(rng):
    T, B = 40, 10_000
    pred = rng.integers(0, 5, size=(T, B)).astype(float)  # categorical predictions: heavy ties
    perm = rng.permuted(pred, axis=1)
    y = pred + rng.normal(size=(T, B))
    ours = median_time(lambda: ops.permutation_spearman(pred, perm, y), 3) / T
    theirs = median_time(lambda: [(spearmanr(a, c), spearmanr(b, c)) for a, b, c in zip(pred[:10], perm[:10], y[:10])],
                         3) / 10
    row(f"permutation Spearman base+permuted (B={B})", ours, theirs, "2 x scipy.stats.spearmanr per row")


if __name__ == "__main__":
    main()
