"""Benchmark: fastmlem.similarity measures vs naive n x n implementations (and netrep).

fastmlem computes linear CKA, debiased CKA, ENSD, NBS / Procrustes and ridge R² from the feature
Grams XᵀX (p, p), YᵀY (q, q), XᵀY (p, q) and a p x q SVD: O(n p q) time, O(p q) memory.  The
naive routes build (n, n) kernels: centred HKH and HLH for CKA and ENSD (O(n² (p + q))),
zero-diagonal kernels for the unbiased HSIC, the dual (kernel) form of ridge regression
(an (n, n) solve, O(n³)), and for NBS ||(XXᵀ)^1/2 (YYᵀ)^1/2||_* through two (n, n)
eigendecompositions and an (n, n) SVD (O(n³)).  netrep's LinearMetric (angular Procrustes,
alpha=1) is timed too when ``import netrep`` works.

Every row runs the same data through each route, median wall time over --repeat runs, the ratio
naive / fastmlem, and the largest absolute difference between the values (a correctness check).
"grad" is fastmlem's value and analytic gradient w.r.t. Y together.

Usage:  python bench/bench_similarity.py           (n=2000, p=q=200: about a minute on 2 cores)
        python bench/bench_similarity.py --full    (n=10000, p=q=1000; the O(n³) naive routes are
                                                    skipped above n=4000 unless --cubic)
        python bench/bench_similarity.py --gpu     (fastmlem on cupy arrays; naive stays numpy)
"""
import argparse
import statistics
import time

import numpy as np

from fastmlem import similarity


def hkh(Z):
    K = Z @ Z.T
    row = K.mean(axis=0, keepdims=True)
    return K - row - row.T + K.mean()


def naive_cka(X, Y):
    K, L = hkh(X), hkh(Y)
    return float(np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L))


def naive_ensd(X, Y):
    K, L = hkh(X), hkh(Y)
    return float(np.trace(K) * np.trace(L) * np.sum(K * L) / (np.sum(K * K) * np.sum(L * L)))


def naive_debiased_cka(X, Y):
    n = len(X)

    def hsic(K, L):
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0.0)
        np.fill_diagonal(L, 0.0)
        k1, l1 = K.sum(axis=0), L.sum(axis=0)
        return (np.sum(K * L) + k1.sum() * l1.sum() / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * k1 @ l1) / (n * (n - 3))

    K, L = X @ X.T, Y @ Y.T
    return float(hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L)))


def _sqrt_kernel(Z):
    lam, V = np.linalg.eigh(Z @ Z.T)
    return (V * np.sqrt(np.where(lam > 1e-10 * lam[-1], lam, 0.0))) @ V.T


def naive_procrustes_angular(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    nuc = np.linalg.svd(_sqrt_kernel(Xc) @ _sqrt_kernel(Yc), compute_uv=False).sum()
    return float(np.arccos(min(nuc / np.linalg.norm(Xc) / np.linalg.norm(Yc), 1.0)))


def naive_ridge_r2(X, Y, lam=1.0):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    K = Yc @ Yc.T
    pred = K @ np.linalg.solve(K + lam * np.eye(len(K)), Xc)
    return float(1.0 - np.sum((Xc - pred) ** 2) / np.sum(Xc ** 2))


def netrep_procrustes_angular(X, Y):
    from netrep.metrics import LinearMetric

    return float(LinearMetric(alpha=1.0, center_columns=True, score_method="angular")
                 .fit(X, Y).score(X, Y))


CASES = [  # id, naive, cubic naive?, netrep
    ("cka", naive_cka, False, None),
    ("cka-debiased", naive_debiased_cka, False, None),
    ("ensd", naive_ensd, False, None),
    ("procrustes-angular", naive_procrustes_angular, True, netrep_procrustes_angular),
    ("ridge-r2", naive_ridge_r2, True, None),
    ("cca", None, False, None),
    ("linreg-r2-cv", None, False, None),
]


def timed(fn, repeat, sync=lambda: None):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description="fastmlem.similarity vs naive n x n routes")
    ap.add_argument("--full", action="store_true", help="n=10000, p=q=1000")
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("-p", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cubic", action="store_true", help="run O(n³) naive routes at any n")
    ap.add_argument("--gpu", action="store_true", help="run fastmlem on cupy arrays")
    args = ap.parse_args()
    n = args.n or (10000 if args.full else 2000)
    p = args.p or (1000 if args.full else 200)
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((n, 50))
    X = latent @ rng.standard_normal((50, p)) + rng.standard_normal((n, p))
    Y = latent @ rng.standard_normal((50, p)) + 2.0 * rng.standard_normal((n, p))
    Xf, Yf, sync = X, Y, (lambda: None)
    if args.gpu:
        import cupy as cp

        Xf, Yf, sync = cp.asarray(X), cp.asarray(Y), cp.cuda.Device().synchronize
    try:
        import netrep  # noqa: F401
        have_netrep = True
    except ImportError:
        have_netrep = False
    print(f"n={n} stimuli, p=q={p} units, median of {args.repeat}, "
          f"fastmlem on {'GPU (cupy)' if args.gpu else 'CPU (numpy)'}, "
          f"netrep {'found' if have_netrep else 'not installed'}")
    head = (f"{'measure':20s} {'fastmlem s':>11s} {'grad s':>9s} {'naive nxn s':>12s} "
            f"{'ratio':>8s} {'netrep s':>9s} {'ratio':>7s} {'max |diff|':>11s}")
    print(head + "\n" + "-" * len(head))
    for mid, naive, cubic, other in CASES:
        m = similarity.get(mid)
        t_fast, v_fast = timed(lambda: m(Xf, Yf), args.repeat, sync)
        t_grad, _ = timed(lambda: m.value_and_grad(Xf, Yf), args.repeat, sync)
        cols, diffs = [], []
        for fn, why_not in ((naive, "skipped" if cubic and n > 4000 and not args.cubic else None),
                            (other, None if have_netrep else "n/a")):
            if fn is None or why_not:
                cols.append((why_not if fn is not None else "-", ""))
                continue
            t, v = timed(lambda: fn(X, Y), args.repeat)
            cols.append((f"{t:.4f}", f"{t / t_fast:.1f}x"))
            diffs.append(abs(v - v_fast))
        diff = f"{max(diffs):.1e}" if diffs else "-"
        print(f"{mid:20s} {t_fast:11.4f} {t_grad:9.4f} {cols[0][0]:>12s} {cols[0][1]:>8s} "
              f"{cols[1][0]:>9s} {cols[1][1]:>7s} {diff:>11s}")


if __name__ == "__main__":
    main()
