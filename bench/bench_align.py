"""Benchmark: BarycentricAlignment vs a textbook numpy generalised Procrustes loop.

Both solve the same problem (K centred models of n stimuli x d units, rotations, barycenter =
mean of the aligned models) from the same start (the first model), timed end to end on the same
data, median over --repeat runs, printed side by side.  By default every method runs exactly
--iters iterations (tol=0), so the table compares the cost of the same work; pass --tol > 0 to
run each to convergence instead (GPA converges slowly in noise-dominated directions: hundreds
of iterations at tol=1e-6 on full-dimensional noisy data, a handful after PCA to the signal
dimensions, which is a second, data-dependent, source of speed-up not measured by default).

Where the speed-up comes from
-----------------------------
* dim=k (PCA to k << d first): every iteration costs 2*K*n*k^2 flops for the cross-covariances
  and the new barycenter, plus K SVDs of k x k, instead of 2*K*n*d^2 and K SVDs of d x d; the
  one-off PCA is one (d, d) scatter matrix and one eigh per model (not an SVD of the n x d
  data).  With d = 768, k = 256 this is ~9x less work per iteration.  It changes the problem
  only by dropping the low-variance directions: the table shows how far its barycenter lies from
  the full-dimensional one (normalised Procrustes distance, 0 = identical up to rotation).
* dim="pad" (same problem in full d): the K cross-covariances Z_kᵀB are one BLAS call on the
  stacked (n, K*d) matrix, the new barycenter is one more call with the R_k stacked (no (K, n, d)
  temporary, no per-model Python loop), the K SVDs are one batched call, and the loss comes for
  free (sum |Z_k|^2 - K |B|^2).  On a CPU the K d x d SVDs and the unavoidable 2*K*n*d^2 flops
  dominate both loops, so expect only a modest gain here; on a GPU (cupy input) the batching is
  what matters.

netrep's Procrustes barycentre (``netrep.multiset.frechet_mean``, group "orth") is timed too
when ``import netrep`` works (netrep is not on PyPI: pip install it from its repository).

Usage:  python bench/bench_align.py            (K=16, n=10000, d=768, 5 iterations, 3 repeats:
                                                about 4 minutes on 2 cores)
        python bench/bench_align.py --quick    (K=8, n=2000, d=256; seconds)
        python bench/bench_align.py --issue    (K=8, n=5000, d=256 and d=768, the sizes of the
                                                speed issue)
"""
import argparse
import statistics
import time
import warnings

import numpy as np

from fastmlem.align import BarycentricAlignment, procrustes_distance


def textbook_gpa(models, tol, max_iter):
    """Generalised Procrustes analysis as usually written: loop over models, SVD each d x d
    cross-covariance, recompute every aligned model and their mean.  Returns (barycenter, n_iter)."""
    Xs = [X - X.mean(axis=0) for X in models]
    B = Xs[0]
    for it in range(1, max_iter + 1):
        aligned = []
        for X in Xs:
            U, _, Vt = np.linalg.svd(X.T @ B)
            aligned.append(X @ (U @ Vt))
        B_new = np.mean(aligned, axis=0)
        change = np.linalg.norm(B_new - B) / np.linalg.norm(B)
        B = B_new
        if change < tol:
            break
    return B, it


def netrep_barycenter(models, tol, max_iter):
    """netrep's Procrustes barycentre, or None when netrep is missing."""
    try:
        from netrep.multiset import frechet_mean
    except ImportError:
        return None
    return frechet_mean([X - X.mean(axis=0) for X in models], group="orth", tol=max(tol, 1e-12),
                        max_iter=max_iter)


def make_models(K, n, d, latent, noise, seed):
    """K models (n, d): a shared latent (n, latent) with a decaying spectrum, mixed by a random
    map per model, plus independent noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)) * np.linspace(1.0, 0.1, latent)
    return [z @ rng.standard_normal((latent, d)) + noise * rng.standard_normal((n, d))
            for _ in range(K)]


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--K", type=int, default=16)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--dims", type=int, nargs="*", default=[256, 128], help="PCA dims to try")
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--iters", type=int, default=5, help="iterations (the most, with --tol)")
    p.add_argument("--tol", type=float, default=0.0, help="0: run exactly --iters iterations")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="K=8, n=2000, d=256, dims 64 32")
    p.add_argument("--issue", action="store_true", help="K=8, n=5000, d=256 then d=768")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: the library's); 1 is stabler on a loaded machine")
    args = p.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    if args.quick:
        args.K, args.n, args.d, args.dims, args.latent = 8, 2000, 256, [64, 32], 32
    if args.issue:
        for d in (256, 768):
            args.K, args.n, args.d, args.dims = 8, 5000, d, [128]
            run(args)
        return
    run(args)


def run(args):
    models = make_models(args.K, args.n, args.d, args.latent, args.noise, args.seed)
    print(f"K={args.K} models, n={args.n} stimuli, d={args.d} units, iterations <= {args.iters}, "
          f"tol={args.tol}, median of {args.repeat} runs")
    warnings.simplefilter("ignore")  # tol=0 never "converges": no ConvergenceWarning spam

    t_ref, (B_ref, it_ref) = timed(lambda: textbook_gpa(models, args.tol, args.iters),
                                   args.repeat)
    rows = [("textbook numpy GPA (full d)", t_ref, it_ref, 0.0)]
    try:
        if netrep_barycenter(models[:2], 0.0, 1) is not None:
            t_nr, out = timed(lambda: netrep_barycenter(models, args.tol, args.iters), args.repeat)
            B_nr = out[0] if isinstance(out, tuple) else out
            rows.append(("netrep frechet_mean (full d)", t_nr, args.iters,
                         procrustes_distance(B_nr, B_ref)))
        else:
            print("netrep not installed: its barycentre is not timed")
    except Exception as exc:  # an API we could not check here: report, do not stop the bench
        print(f"netrep frechet_mean failed ({type(exc).__name__}: {exc}); not timed")
    for dim in ["pad", *args.dims]:
        est = BarycentricAlignment(dim=dim, tol=args.tol, max_iter=args.iters)
        t, fitted = timed(lambda: est.fit(models), args.repeat)
        label = "fastmlem dim='pad' (full d)" if dim == "pad" else f"fastmlem dim={dim} (PCA)"
        rows.append((label, t, fitted.n_iter_, procrustes_distance(fitted.barycenter_, B_ref)))
        del fitted

    print(f"{'method':32s} {'median s':>9s} {'iters':>6s} {'speed-up':>9s} {'dist to textbook':>17s}")
    for label, t, it, dist in rows:
        print(f"{label:32s} {t:9.2f} {it:6d} {t_ref / t:8.1f}x {dist:17.2e}")


if __name__ == "__main__":
    main()
