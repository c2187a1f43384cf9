"""CUDA kernels (fastmlem.cuda_ops) against their rooflines and what users would otherwise run on a GPU.

    python bench/bench_gpu.py [--quick]

Per kernel: median GPU time (cupyx.profiler.benchmark), the bytes it must move (or flops it must
do), achieved GB/s (TFLOP/s) as a fraction of the device's peak memory bandwidth (from
memoryClockRate x memoryBusWidth, and as measured by a device-to-device copy), and the time of the
plain cupy version (gathers, argsort-based ranks), torchsort on CUDA and the reference ``mlem`` on
CUDA when importable, as ratios (theirs / ours: > 1 means we are faster). Exits cleanly without a GPU.
"""
import argparse
import sys

import numpy as np


def gpu_or_exit():
    try:
        import cupy as cp
        from cupyx.profiler import benchmark
    except Exception as exc:  # ImportError, or a CUDA driver error at import
        print(f"bench_gpu: cupy is not usable ({exc.__class__.__name__}: {exc}); nothing to measure.")
        sys.exit(0)
    from fastmlem import _backend
    if not _backend.cuda_available():
        print("bench_gpu: no GPU visible, or fastmlem was built without its CUDA module; nothing to measure.")
        sys.exit(0)
    return cp, benchmark


def peak_bandwidth(cp):
    """(theoretical bytes/s from the memory clock and bus width or None, measured copy bytes/s)."""
    rt = cp.cuda.runtime
    theory = None
    try:
        clock_khz = rt.deviceGetAttribute(getattr(rt, "cudaDevAttrMemoryClockRate", 36), 0)
        bus_bits = rt.deviceGetAttribute(getattr(rt, "cudaDevAttrGlobalMemoryBusWidth", 37), 0)
        theory = 2.0 * clock_khz * 1e3 * bus_bits / 8  # double data rate
    except Exception:
        props = rt.getDeviceProperties(0)
        if props.get("memoryClockRate") and props.get("memoryBusWidth"):
            theory = 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8
    a = cp.empty(2**28, cp.uint8)  # 256 MiB device-to-device copy: read + write
    b = cp.empty_like(a)
    t = median(lambda: b.__setitem__(Ellipsis, a))
    return theory, 2 * a.nbytes / t


_BENCH = None


def median(fn, repeat=20):
    res = _BENCH(fn, n_repeat=repeat, n_warmup=3)
    return float(np.median(res.gpu_times[0]))


class Table:
    def __init__(self, peak):
        self.peak = peak
        print(f"{'kernel':<50} {'ms':>9} {'GB/s':>8} {'%peak':>6} {'other ms':>9} {'ratio':>7}  other")

    def row(self, name, t, nbytes, other=None, other_name="", flops=None):
        rate = f"{nbytes / t / 1e9:8.0f} {100 * nbytes / t / self.peak:5.0f}%" if nbytes else " " * 15
        if flops:
            rate = f"{flops / t / 1e12:5.1f}TF/s" + " " * 5
        extra = f"{other * 1e3:9.3f} {other / t:6.1f}x  {other_name}" if other else ""
        print(f"{name:<50} {t * 1e3:9.3f} {rate} {extra}")


def main():
    global _BENCH
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    cp, _BENCH = gpu_or_exit()
    from fastmlem import cuda_ops as co

    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    theory, measured = peak_bandwidth(cp)
    print(f"device: {name}; peak memory bandwidth {theory / 1e9 if theory else float('nan'):.0f} GB/s "
          f"(clock x bus), {measured / 1e9:.0f} GB/s measured by a device copy; %peak below is of the former")
    tab = Table(theory or measured)
    s = 4 if args.quick else 1
    rng = np.random.default_rng(0)

    # ---- pairs and predictor rows
    n, m, B = 100_000, 16, 2**22 // s
    X = cp.asarray(rng.integers(0, 2, size=(n, m)).astype(float))
    t = median(lambda: co.sample_pairs(n, B, 1))
    tab.row(f"sample_pairs B={B}", t, 16 * B)
    i, j = co.sample_pairs(n, B, 1)
    for inter in (False, True):
        q = m * (m + 1) // 2 if inter else m
        t = median(lambda: co.feature_distances(X, i, j, inter))
        plain = lambda: (cp.clip(cp.nan_to_num(cp.abs(X[i] - X[j])), 0, 1) ** 2)  # noqa: E731
        tab.row(f"feature_distances m={m} inter={inter} (write-bound)", t, B * (16 + 8 * q),
                median(plain) if not inter else None, "cupy gather")
        w = cp.asarray(rng.random(q))
        g = cp.asarray(rng.normal(size=B))
        F = co.feature_distances(X, i, j, inter)
        t = median(lambda: co.sample_predict(X, w, B, 1, 0, inter))
        tab.row(f"  fused sample+features+F@w q={q}", t, B * 24,
                median(lambda: co.feature_distances(X, *co.sample_pairs(n, B, 1), inter) @ w), "unfused + cuBLAS")
        t = median(lambda: co.features_vjp(X, i, j, g, inter))
        tab.row(f"  fused F^T g q={q}", t, B * 24, median(lambda: F.T @ g), "cuBLAS on stored F")

    # ---- neural distances (gather-bound)
    for p, dtype in ((768, np.float32), (4096, np.float32), (64, np.float64)):
        nY = 50_000 // s
        Y = cp.asarray(rng.normal(size=(nY, p)).astype(dtype))
        iy, jy = co.sample_pairs(nY, 2**20 // s, 2)
        nbytes = iy.size * (2 * p * Y.itemsize + 24)
        for metric in ("euclidean", "cosine"):
            t = median(lambda: co.neural_distances(Y, iy, jy, metric))
            if metric == "euclidean":
                plain = lambda: cp.sqrt(((Y[iy].astype(cp.float64) - Y[jy]) ** 2).sum(1))  # noqa: E731
            else:
                plain = lambda: 1 - (Y[iy] * Y[jy]).sum(1) / (cp.linalg.norm(Y[iy], axis=1) * cp.linalg.norm(Y[jy], axis=1))  # noqa: E731
            tab.row(f"neural_distances {metric} p={p} {np.dtype(dtype).name}", t, nbytes, median(plain, 5),
                    "cupy gather")
    nR, p = 10_000 // s, 768
    Y = cp.asarray(rng.normal(size=(nR, p)))
    t = median(lambda: co.condensed_rdm(Y), 5)

    def plain_rdm():
        G = Y @ Y.T
        sq = cp.diag(G)
        a, b = cp.triu_indices(nR, 1)
        return cp.sqrt(cp.maximum(sq[a] + sq[b] - 2 * G[a, b], 0))
    tab.row(f"condensed_rdm n={nR} p={p} (fp64 GEMM)", t, 0, median(plain_rdm, 5), "cupy GEMM + triu gather",
            flops=2.0 * nR * nR * p)

    # ---- ranks and Spearman (sort-bound: 8 radix passes over 8-byte keys + 4-byte values)
    def argsort_ranks(x):  # what users write on the GPU: ties broken arbitrarily
        return cp.argsort(cp.argsort(x, axis=-1), axis=-1) + 1.0

    for T, Bv in ((1, 10**7 // s), (256, 10_000)):
        x = cp.asarray(np.round(rng.normal(size=(T, Bv)) * 100))
        y = cp.asarray(rng.normal(size=(T, Bv)))
        t = median(lambda: co.rank_average(x), 10)
        tab.row(f"rank_average T={T} B={Bv} (ties)", t, x.size * 16, median(lambda: argsort_ranks(x), 10),
                "cupy argsort∘argsort")
        t = median(lambda: co.spearman(x, y), 10)
        plain = lambda: co.pearson(argsort_ranks(x), argsort_ranks(y))  # noqa: E731
        tab.row(f"spearman T={T} B={Bv}", t, x.size * 16, median(plain, 10), "argsort ranks + pearson")

    # ---- soft rank forward + backward
    try:
        import torch
        import torchsort
        has_torchsort = torch.cuda.is_available()
    except Exception:
        has_torchsort = False
    for T, Bv in ((1, 10**6 // s), (1, 10**7 // s), (64, 10_000)):
        x = cp.asarray(rng.normal(size=(T, Bv)))
        g = cp.asarray(rng.normal(size=(T, Bv)))

        def ours():
            _, state = co.soft_rank(x, "auto")
            return co.soft_rank_vjp(state, g)
        t = median(ours, 10)
        other, other_name = None, "torchsort not importable"
        if has_torchsort:
            xt = torch.from_dlpack(x).clone()
            gt = torch.from_dlpack(g)
            strength = float((x.max() - x.min()) / Bv)

            def theirs():
                xr = xt.detach().requires_grad_(True)
                torchsort.soft_rank(xr, regularization_strength=strength).backward(gt)
            other, other_name = median(theirs, 10), "torchsort (CUDA)"
        tab.row(f"soft_rank + vjp T={T} B={Bv} (l2, auto)", t, x.size * 32, other, other_name)

    # ---- permutation importance helper
    T, Bv, K = 64, 50_000 // s, 5
    pred, y = cp.asarray(rng.normal(size=(T, Bv))), cp.asarray(rng.normal(size=(T, Bv)))
    perm = cp.asarray(rng.normal(size=(K, T, Bv)))
    t = median(lambda: co.permutation_spearman(pred, perm, y), 5)
    plain = lambda: [co.pearson(argsort_ranks(p_), argsort_ranks(y)) for p_ in (pred, *perm)]  # noqa: E731
    tab.row(f"permutation_spearman T={T} B={Bv} K={K}", t, (K + 2) * T * Bv * 16, median(plain, 5),
            "argsort ranks, y re-ranked")

    # ---- MLEM end to end (the targets): fastmlem on CUDA vs the reference on CUDA
    mlem_end_to_end(cp, rng, steps=200 if args.quick else 1000)


def mlem_end_to_end(cp, rng, steps, batch=20_000):
    """fit + score, 16 binary features with interactions, 1024-dim float32 Y, fixed steps."""
    import time

    import pandas as pd

    from fastmlem import MLEM
    print(f"\nMLEM fit ({steps} steps, batch {batch}, interactions) + score, 1024-dim Y")
    print(f"{'n stimuli':>10} {'fastmlem cuda s':>16} {'reference cuda s':>17} {'ratio':>7}")
    for n in (100_000, 1_000_000):
        codes = rng.integers(0, 2, size=(n, 16))
        X = pd.DataFrame(codes, columns=[f"f{k}" for k in range(16)]).astype("category")
        Y = cp.asarray(codes.astype(np.float32) @ rng.normal(size=(16, 1024)).astype(np.float32)
                       + rng.normal(size=(n, 1024)).astype(np.float32))
        model = MLEM(interactions=True, batch_size=batch, max_steps=steps, patience=steps, device="cuda",
                     random_state=0)
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        model.fit(X, Y)
        model.score()
        cp.cuda.Device().synchronize()
        ours = time.perf_counter() - t0
        ref_s = "not run"
        if n == 100_000:
            try:
                import torch
                from mlem import MLEM as RefMLEM
                Yt = torch.from_dlpack(Y)
                t0 = time.perf_counter()
                ref = RefMLEM(interactions=True, batch_size=batch, max_steps=steps, patience=steps, device="cuda",
                              random_seed=0)
                ref.fit(X, Yt)
                ref.score()
                torch.cuda.synchronize()
                ref_t = time.perf_counter() - t0
                ref_s = f"{ref_t:.2f}"
                print(f"{n:>10} {ours:>16.2f} {ref_s:>17} {ref_t / ours:>7.1f}")
                continue
            except Exception as exc:
                ref_s = f"skipped ({exc.__class__.__name__})"
        print(f"{n:>10} {ours:>16.2f} {ref_s:>17}")


if __name__ == "__main__":
    main()
