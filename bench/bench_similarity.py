"""Benchmark: fastmlem.similarity against the best plain implementations and the peer packages.

One run, same data, side by side (median wall time over --repeat runs):

* fastmlem: ``m(X, Y)`` (value) and ``m.value_and_grad(X, Y)`` (value + gradient w.r.t. Y), on
  float32 input and on float64 input (float32 input is computed in float32 for CKA, NBS,
  Procrustes, ENSD and RSA; the other measures upcast it);
* plain numpy and plain torch written the smart way (p x q feature Grams, nuclear norm of the
  p x q matrix XᵀY, eigh-whitened Grams for CCA), float32 and float64; torch's value + gradient
  by autograd.  torch is used when importable;
* netrep (angular Procrustes, ``LinearMetric(alpha=1)``; CCA, ``alpha=0``) when importable;
* the naive (n, n)-kernel CKA of the seed code, at sizes with n <= 10,000;
* RSA: rsatoolbox (``calc_rdm`` + ``compare``) when importable, and plain torch for Pearson RSA,
  at n = 1,000 and 5,000 stimuli.

The routes of one row run in turn (round robin), so that a shared machine's load falls on all
of them alike.  Each row gives the times, the ratio peer / fastmlem (> 1: fastmlem faster) and
the relative
difference of each value from fastmlem's float64 value (a correctness check: float32 routes
differ by their rounding).

Sizes (n stimuli x p units x q units): S = 1,000 x 100 x 100, M = 10,000 x 1,000 x 1,000,
L = 50,000 x 512 x 512.

Usage:  python bench/bench_similarity.py --quick          (S and RSA at n = 1,000: a minute)
        python bench/bench_similarity.py --sizes S M L    (everything; L takes a while on 2 cores)
        python bench/bench_similarity.py --gpu            (fastmlem on cupy arrays)
"""
import argparse
import statistics
import time

import numpy as np

from fastmlem import similarity

SIZES = {"S": (1000, 100, 100), "M": (10000, 1000, 1000), "L": (50000, 512, 512),
         "ML": (20000, 512, 512)}  # ML: a cheaper stand-in for L
MEASURES = ["cka", "nbs", "procrustes-angular", "ensd", "cca"]
RSA_MEASURES = ["rsa-correlation-pearson", "rsa-euclidean-pearson", "rsa-correlation-spearman",
                "rsa-euclidean-spearman", "rsa-correlation-kendall-tau-a"]


def race(fns, repeat, sync=lambda: None):
    """Median wall times of several functions run in turn (round robin), so that the load of a
    shared machine falls on all of them alike; ``repeat`` rounds (more, up to 50, while a round
    takes under 0.1 s).  Returns (list of medians, list of last outputs)."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    rounds = 0
    while rounds < repeat or (rounds < 50 and sum(t[-1] for t in times) * rounds < 0.5):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            sync()
            times[i].append(time.perf_counter() - t0)
        rounds += 1
    return [statistics.median(t) for t in times], outs


def timed(fn, repeat, sync=lambda: None):
    """Median wall time of ``repeat`` calls (more, up to 50, while they total under 0.5 s)."""
    times, out = [], None
    while len(times) < repeat or (sum(times) < 0.5 and len(times) < 50):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# ------------------------------------------------------------------------- plain implementations
def plain(xp, name):
    """The measure ``name`` written plainly with array module ``xp`` (numpy or torch)."""
    T = xp.__name__ == "torch"
    mm = (lambda a, b: a.T @ b)
    fro2 = (lambda a: (a * a).sum())
    svdvals = xp.linalg.svdvals if T else (lambda a: np.linalg.svd(a, compute_uv=False))

    def center(a):
        return a - (a.mean(0, keepdim=True) if T else a.mean(0, keepdims=True))

    def cka(X, Y):
        X, Y = center(X), center(Y)
        return fro2(mm(X, Y)) / (fro2(mm(X, X)) * fro2(mm(Y, Y))) ** 0.5

    def nbs(X, Y):
        X, Y = center(X), center(Y)
        return svdvals(mm(X, Y)).sum() / (fro2(X) * fro2(Y)) ** 0.5

    def procrustes(X, Y):
        s = nbs(X, Y)
        return xp.arccos(xp.clamp(s, max=1.0)) if T else np.arccos(min(float(s), 1.0))

    def ensd(X, Y):
        X, Y = center(X), center(Y)
        Cx, Cy = mm(X, X), mm(Y, Y)
        tx = Cx.trace() if T else np.trace(Cx)
        ty = Cy.trace() if T else np.trace(Cy)
        return tx * ty * fro2(mm(X, Y)) / (fro2(Cx) * fro2(Cy))

    def inv_sqrt(C):
        lam, V = xp.linalg.eigh(C)
        return (V * lam.clamp(min=1e-12 * float(lam[-1])) ** -0.5) @ V.T if T else \
            (V * np.maximum(lam, 1e-12 * lam[-1]) ** -0.5) @ V.T

    def cca(X, Y):
        X, Y = center(X), center(Y)
        A = inv_sqrt(mm(X, X)) @ mm(X, Y) @ inv_sqrt(mm(Y, Y))
        return svdvals(A).sum() / min(X.shape[1], Y.shape[1])

    return {"cka": cka, "nbs": nbs, "procrustes-angular": procrustes, "ensd": ensd,
            "cca": cca}[name]


def naive_cka(X, Y):
    """The seed code's route: centred (n, n) kernels."""
    def hkh(Z):
        K = Z @ Z.T
        row = K.mean(axis=0, keepdims=True)
        return K - row - row.T + K.mean()
    K, L = hkh(X), hkh(Y)
    return float(np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L))


def netrep_metric(name):
    try:
        from netrep.metrics import LinearMetric
    except ImportError:
        return None
    alpha = {"procrustes-angular": 1.0, "cca": 0.0}.get(name)
    if alpha is None:
        return None

    def run(X, Y):
        v = LinearMetric(alpha=alpha, center_columns=True, score_method="angular").fit(X, Y)
        return float(v.score(X, Y))
    return run


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_runner(torch, name, X, Y, grad):
    f = plain(torch, name)
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)

    def run():
        if not grad:
            with torch.no_grad():
                return float(f(tx, ty))
        y = ty.detach().requires_grad_(True)
        v = f(tx, y)
        v.backward()
        return float(v.detach())
    return run


def make_data(n, p, q, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 32))
    X = latent @ rng.standard_normal((32, p)) + rng.standard_normal((n, p)) + 3.0
    Y = latent @ rng.standard_normal((32, q)) + 2.0 * rng.standard_normal((n, q)) - 1.0
    return X, Y


def ms(t):
    """Seconds as a 7-character millisecond column."""
    return f"{1e3 * t:7.1f}" if t < 10 else f"{1e3 * t:7.0f}"


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def measure_rows(size, args, torch):
    n, p, q = SIZES[size]
    X64, Y64 = make_data(n, p, q)
    X32, Y32 = X64.astype(np.float32), Y64.astype(np.float32)
    sync = lambda: None  # noqa: E731
    print(f"\n== size {size}: n={n}, p={p}, q={q}; times in ms (median of {args.repeat}); "
          "ratio = peer / fastmlem; rel = |value - fastmlem float64| / value")
    head = (f"{'measure':19s} {'dtype':7s} {'ours':>7s} {'ours+g':>7s} | {'numpy':>7s} "
            f"{'ratio':>6s} | {'torch':>7s} {'ratio':>6s} {'torch+g':>7s} {'ratio':>6s} | "
            f"{'other':>14s} {'ratio':>6s} | {'rel ours':>8s} {'rel torch':>9s}")
    print(head + "\n" + "-" * len(head))
    for name in args.measures:
        m = similarity.get(name)
        exact = m(X64, Y64)
        for dtype, X, Y in (("float32", X32, Y32), ("float64", X64, Y64)):
            if dtype not in args.dtypes:
                continue
            Xf, Yf = X, Y
            if args.gpu:
                import cupy as cp
                Xf, Yf, sync = cp.asarray(X), cp.asarray(Y), cp.cuda.Device().synchronize
            fns = [lambda: m(Xf, Yf), lambda: m.value_and_grad(Xf, Yf),
                   lambda: plain(np, name)(X, Y)]
            if torch is not None:
                fns += [torch_runner(torch, name, X, Y, False), torch_runner(torch, name, X, Y, True)]
            t, out = race(fns, args.repeat, sync)
            (t_v, t_g, t_np), v = t[:3], out[0]
            cols = [f"{ms(t_np)} {t_np / t_v:5.2f}x"]
            rel_t = "-"
            if torch is not None:
                t_t, t_tg = t[3:]
                cols.append(f"{ms(t_t)} {t_t / t_v:5.2f}x {ms(t_tg)} {t_tg / t_g:5.2f}x")
                rel_t = f"{rel(out[3], exact):9.1e}"
            else:
                cols.append(f"{'n/a':>7s} {'':6s} {'n/a':>7s} {'':6s}")
            other, label = netrep_metric(name), "netrep"
            if other is None and name == "cka" and n <= 10000 and dtype == "float64":
                other, label = naive_cka, "n x n"
            if other is not None:
                t_o, _ = timed(lambda: other(X, Y), max(1, args.repeat // 2))
                cols.append(f"{label:>6s} {ms(t_o)} {t_o / t_v:5.2f}x")
            else:
                cols.append(f"{'-':>14s} {'':6s}")
            print(f"{name:19s} {dtype:7s} {ms(t_v)} {ms(t_g)} | " + " | ".join(cols)
                  + f" | {rel(v, exact):8.1e} {rel_t}")


# -------------------------------------------------------------------------------------- RSA
def rsatoolbox_runner(name, X, Y):
    try:
        import rsatoolbox
    except ImportError:
        return None
    _, rdm_kind, compare = name.split("-", 2)
    method = {"pearson": "corr", "spearman": "spearman", "kendall-tau-a": "tau-a",
              "cosine": "cosine"}[compare]

    def run():
        rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(Z), method=rdm_kind)
                for Z in (X, Y)]
        return float(rsatoolbox.rdm.compare(rdms[0], rdms[1], method=method)[0, 0])
    return run


def torch_rsa_pearson(torch, X, Y):
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)

    def rdm(Z):
        Z = Z - Z.mean(1, keepdim=True)
        Z = Z / Z.norm(dim=1, keepdim=True)
        return 1 - Z @ Z.T

    def run():
        n = X.shape[0]
        iu = torch.triu_indices(n, n, 1)
        a, b = rdm(tx)[iu[0], iu[1]], rdm(ty)[iu[0], iu[1]]
        a, b = a - a.mean(), b - b.mean()
        return float((a @ b) / (a.norm() * b.norm()))
    return run


def rsa_rows(args, torch):
    for n in args.rsa_n:
        X, Y = make_data(n, args.rsa_p, args.rsa_p, seed=1)
        print(f"\n== RSA: n={n} stimuli ({n * (n - 1) // 2:,} pairs), p=q={args.rsa_p}; s; float64 "
              "input (float32 in parentheses); ratio = peer / fastmlem (rsatoolbox's "
              "'euclidean' RDM is the squared distance / p, hence its rel)")
        head = (f"{'measure':29s} {'ours':>7s} {'(f32)':>7s} {'ours+g':>7s} | {'rsatoolbox':>10s} "
                f"{'ratio':>6s} {'rel':>8s} | {'torch f32':>9s} {'ratio':>6s}")
        print(head + "\n" + "-" * len(head))
        X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
        repeat = args.repeat if n < 5000 else min(args.repeat, 3)
        for name in args.rsa_measures:
            m = similarity.get(name)
            if "kendall" in name and n > args.kendall_max_n:
                print(f"{name:29s} skipped above n={args.kendall_max_n} (--kendall-max-n)")
                continue
            fns = {"v": lambda: m(X, Y), "32": lambda: m(X32, Y32)}
            if m.differentiable:
                fns["g"] = lambda: m.value_and_grad(X, Y)
            peer = rsatoolbox_runner(name, X, Y)
            if peer is not None and not ("kendall" in name and n > args.rsatoolbox_kendall_max_n):
                fns["peer"] = peer
            if torch is not None and name == "rsa-correlation-pearson":
                fns["torch"] = torch_rsa_pearson(torch, X32, Y32)
            t, out = race(list(fns.values()), repeat)
            t, out = dict(zip(fns, t)), dict(zip(fns, out))
            t_v, t_32, v = t["v"], t["32"], out["v"]
            g = f"{t['g']:7.3f}" if "g" in t else f"{'-':>7s}"
            col = (f"{t['peer']:10.3f} {t['peer'] / t_v:5.2f}x {rel(out['peer'], v):8.1e}"
                   if "peer" in t else f"{'n/a':>10s} {'':6s} {'':8s}")
            tcol = (f"{t['torch']:9.3f} {t['torch'] / t_32:5.2f}x (vs ours f32)"
                    if "torch" in t else "")
            print(f"{name:29s} {t_v:7.3f} {t_32:7.3f} {g} | {col} | {tcol}")


def main():
    ap = argparse.ArgumentParser(description="fastmlem.similarity vs plain numpy/torch, netrep, "
                                             "rsatoolbox")
    ap.add_argument("--sizes", nargs="*", default=["S", "M"], choices=list(SIZES))
    ap.add_argument("--quick", action="store_true", help="size S and RSA at n=1000 only")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rsa-n", type=int, nargs="*", default=[1000, 5000])
    ap.add_argument("--rsa-p", type=int, default=100)
    ap.add_argument("--kendall-max-n", type=int, default=5000)
    ap.add_argument("--rsatoolbox-kendall-max-n", type=int, default=5000,
                    help="rsatoolbox's tau-a is skipped above this n")
    ap.add_argument("--dtypes", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--no-rsa", action="store_true")
    ap.add_argument("--rsa-measures", nargs="*", default=RSA_MEASURES, help="RSA rows to run")
    ap.add_argument("--measures", nargs="*", default=MEASURES)
    ap.add_argument("--gpu", action="store_true", help="run fastmlem on cupy arrays")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS/OpenMP threads for every library (default: their own default); "
                         "1 gives stable ratios on a loaded machine")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.rsa_n, args.repeat = ["S"], [1000], min(args.repeat, 3)
    torch = torch_module()
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    found = {"torch": torch is not None, "netrep": netrep_metric("cca") is not None,
             "rsatoolbox": rsatoolbox_runner("rsa-euclidean-pearson", None, None) is not None}
    print("peers: " + ", ".join(f"{k} {'found' if v else 'not installed'}"
                                for k, v in found.items())
          + (f"; torch threads {torch.get_num_threads()}" if torch else ""))
    for size in args.sizes:
        measure_rows(size, args, torch)
    if not args.no_rsa:
        rsa_rows(args, torch)


if __name__ == "__main__":
    main()
