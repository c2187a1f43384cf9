"""Studies benchmark: the bundled sentences, 7 layers x 5 folds, plus a 200-refit null for one layer.

    python bench/bench_studies.py [--jobs 2] [--n-null 200] [--skip-loop] [--skip-dask]

Prints, side by side in one run: the hand-written KFold loop users write today (sequential),
fastmlem.cross_validate on joblib threads and on a Dask LocalCluster with the same number of cores
(worker processes, one thread each, warmed up; the two alternate, medians of --repeats), and the
permutation test. Target: the 7 x 5
cross-validation plus the 200-refit null within 3 minutes on 2 cores; Dask within 1.3x of joblib.
The load average is printed: on a shared machine the absolute times move with it.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

import fastmlem
from fastmlem import MLEM
from fastmlem.datasets import load_sentences


def hand_loop(features, reps, folds, seed):
    """What users write today (the reference README's loop): every layer, every fold, fit and score."""
    rows = []
    for layer, Y in reps.items():
        for k, (train, test) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(features)):
            model = MLEM(random_state=seed).fit(features.iloc[train], Y[train])
            importances, _ = model.score(features.iloc[test], Y[test])
            rows.append(importances.mean().rename((layer, k)))
    return pd.DataFrame(rows)


def timed(label, func, results):
    start = time.perf_counter()
    out = func()
    results.append((label, time.perf_counter() - start))
    print(f"  {label}: {results[-1][1]:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--n-null", type=int, default=200)
    parser.add_argument("--skip-loop", action="store_true", help="skip the sequential hand-written loop")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="alternating joblib / Dask runs (medians)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    features, reps = load_sentences()
    print(f"{len(features)} sentences, {len(reps)} layers x {args.folds} folds, {args.jobs} jobs, "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}")
    model, results = MLEM(), []
    if not args.skip_loop:
        timed("hand-written KFold loop, sequential", lambda: hand_loop(features, reps, args.folds, 0), results)
    run_cv = lambda **kw: fastmlem.cross_validate(model, features, reps, cv=args.folds, random_state=0, **kw)  # noqa
    joblib_label = f"cross_validate, joblib {args.jobs} threads"
    if args.skip_dask:
        cv = timed(joblib_label, lambda: run_cv(n_jobs=args.jobs), results)
    else:
        # worker processes, what a cluster runs (dask sets OMP_NUM_THREADS=1 in them), started and warmed
        # up (imports, one small fit) before timing; joblib and Dask alternate, medians are compared
        from distributed import Client, LocalCluster
        dask_label = f"cross_validate, Dask LocalCluster {args.jobs} processes x 1 thread"
        with LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(lambda: warnings.simplefilter("ignore", UserWarning))
            fastmlem.cross_validate(MLEM(max_steps=2), features.iloc[::12], reps["layer_1"][::12], cv=2,
                                    backend=client)
            tables = {}
            for _ in range(args.repeats):
                tables["joblib"] = timed(joblib_label, lambda: run_cv(n_jobs=args.jobs), results)
                tables["dask"] = timed(dask_label, lambda: run_cv(backend=client), results)
        cv = tables["joblib"]
        print(f"  Dask table identical to joblib's: {cv.equals(tables['dask'])}")
    medians = pd.DataFrame(results, columns=["what", "seconds"]).groupby("what", sort=False)["seconds"].median()
    results[:] = list(medians.items())
    layer = "layer_3"
    test = timed(f"permutation_test, {layer}, {args.n_null} null refits, joblib {args.jobs} threads",
                 lambda: fastmlem.permutation_test(model, features, reps[layer], n_null=args.n_null,
                                                   n_jobs=args.jobs, random_state=0), results)
    times = dict(results)
    cv_time = times[f"cross_validate, joblib {args.jobs} threads"]
    print("\n| what (median) | seconds | ratio |\n|---|---|---|")
    for label, seconds in results:
        print(f"| {label} | {seconds:.1f} | {seconds / cv_time:.2f}x cross_validate (joblib) |")
    total = cv_time + times[f"permutation_test, {layer}, {args.n_null} null refits, joblib {args.jobs} threads"]
    print(f"\n7 x {args.folds} cross-validation + {args.n_null}-refit null: {total:.1f} s (target <= 180 s); "
          f"load average at end {os.getloadavg()[0]:.1f}")
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(fastmlem.studies.summarize(cv, test.assign(target=layer)).query("target == @layer"))


if __name__ == "__main__":
    main()
