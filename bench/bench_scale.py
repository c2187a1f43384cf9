"""MLEM at the sizes users have: n = 10^3 .. 10^6 stimuli, float32 and float16 representations.

    python bench/bench_scale.py [--sizes 1000,10000,100000,1000000] [--dtypes float32,float16]
                                [--dims 768] [--reference-python /path/to/venv/bin/python]
                                [--batch B] [--recovery SEEDS]

For each (n, dtype), in its own process (so that peak memory is its own): fit + score with the
defaults (seed 0, 8 binary features), the time of one fused training step and of one importance
batch (a fresh batch of pairs, baseline and one permuted column; 8 batches on all threads, / 8),
and the floor of a sampled-pair batch: B * 2 * h * bytes over this machine's copy bandwidth,
measured in the same run. "RDM" says whether the cost model built the condensed RDM (then steps are
look-ups, not gathers, and the floor does not apply). Peak RSS growth is over the process after Y
is loaded. With --reference-python (a Python where the authors' `mlem` imports), the reference
runs on the same files with the same batch size, and the ratio is its fit + score time over ours.

--batch B: this batch size for both packages instead of the estimated one.
--recovery SEEDS: instead, weight recovery |w - w*| (mean and spread over seeds 0..SEEDS-1, the
planted weights w* of make_files) for each MLEM(weights_from=...) and the reference, defaults.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

M = 8  # binary features


def make_files(folder, n, h, dtype, seed=0):
    """features.csv and reps.npy (n, h) in `folder`; Y written in row chunks (no n x h float64)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2, (n, M))
    pd.DataFrame({f"f{k}": np.where(codes[:, k], "a", "b") for k in range(M)}).to_csv(
        os.path.join(folder, "features.csv"), index=False)
    w = np.linspace(1, 0, M)
    Y = np.lib.format.open_memmap(os.path.join(folder, "reps.npy"), mode="w+", dtype=dtype, shape=(n, h))
    for r0 in range(0, n, 50_000):
        r1 = min(n, r0 + 50_000)
        block = rng.normal(size=(r1 - r0, h)).astype(np.float32)
        block[:, :M] += codes[r0:r1] * np.sqrt(w) * 3
        Y[r0:r1] = block
    Y.flush()
    return w / np.linalg.norm(w)


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def rss_bytes():
    return _status_kib("VmRSS") * 1024


def reset_peak():
    """Start the peak-RSS count afresh (ru_maxrss would also count what the process inherited)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_bytes():
    return _status_kib("VmHWM") * 1024


def copy_bandwidth():
    """Bytes read + written per second by a 256 MB copy (best of 5)."""
    src = np.ones(2**25)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * src.nbytes / best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_ours(folder, batch):
    from fastmlem import MLEM, ops
    X = pd.read_csv(os.path.join(folder, "features.csv"))
    Y = np.load(os.path.join(folder, "reps.npy"))
    base_rss = rss_bytes()
    reset_peak()
    model = MLEM(random_state=0, batch_size=batch)
    t_fit = _timed(lambda: model.fit(X, Y))
    t_score = _timed(model.score)
    peak = peak_bytes()
    # one fused step / importance batch, timed alone (median of 15 / 5), on the path the fit used
    targets = model._rdm if model._rdm is not None else model.Y_
    step = ops.mlem_step(model.X_, targets, False, 0.0, model.batch_size_, 1)
    w = model.weights_
    step_s = float(np.median([_timed(lambda s=s: step(s, w, np.inf, -np.inf)) for s in range(15)]))
    # the gather kernel alone on fresh batches of the same size (what a step cannot beat)
    gather_s = np.nan
    if model._rdm is None:
        batches = [ops.sample_pairs(model.Y_.shape[0], model.batch_size_, 2, s) for s in range(15)]
        gather_s = float(np.median([_timed(lambda b=b: ops.neural_distances(model.Y_, *b)) for b in batches]))
    imp_s = float(np.median([_timed(lambda s=s: ops.permutation_importance(
        model.X_, targets, w, False, 0.0, model.batch_size_, 1, s, 2, 1)) for s in range(5)])) / len(w)
    return dict(fit=t_fit, score=t_score, steps=model.n_steps_, batch=model.batch_size_, step=step_s, gather=gather_s,
                importance=imp_s, rdm=model._rdm is not None, rss=max(0, peak - base_rss),
                weights=model.weights_.tolist())


def run_reference(folder, batch):
    from mlem import MLEM as RefMLEM
    X = pd.read_csv(os.path.join(folder, "features.csv")).astype("category")
    Y = np.load(os.path.join(folder, "reps.npy"))
    if Y.dtype == np.float16:
        Y = Y.astype(np.float32)  # torch's CPU kernels are not for half precision
    model = RefMLEM(batch_size=batch, random_seed=0)
    t_fit = _timed(lambda: model.fit(X, Y))
    t_score = _timed(model.score)
    return dict(fit=t_fit, score=t_score, weights=model.get_weights()["Weight"].to_numpy().tolist())


def run_recovery(folder, batch):
    """Weights of each weights_from rule (one training path: same seed, same batches)."""
    from fastmlem import MLEM
    X = pd.read_csv(os.path.join(folder, "features.csv"))
    Y = np.load(os.path.join(folder, "reps.npy"))
    return {rule: MLEM(random_state=0, batch_size=batch, weights_from=rule).fit(X, Y).weights_.tolist()
            for rule in ("average", "best", "last")}


def recovery(args):
    from fastmlem import MLEM
    rules = ("average", "best", "last", "reference")
    print(f"weight recovery |w - w*| over {args.recovery} seeds (mean, min-max); h = {args.dims}, float32, defaults")
    print(f"{'n':>9} " + " ".join(f"{r:>20}" for r in rules))
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        errors = {r: [] for r in rules}
        for seed in range(args.recovery):
            with tempfile.TemporaryDirectory() as folder:
                w_true = make_files(folder, n, args.dims, "float32", seed=seed)
                batch = MLEM(random_state=0).estimate_batch_size(pd.read_csv(os.path.join(folder, "features.csv")))
                ours = child(sys.executable, "recovery", folder, batch)
                ref = child(args.reference_python, "reference", folder, batch) if args.reference_python else {}
            if "error" in ours:
                print(f"    fastmlem failed (n = {n}, seed {seed}): {ours['error']}")
                continue
            for rule in rules[:3]:
                errors[rule].append(np.linalg.norm(np.array(ours[rule]) - w_true))
            if "weights" in ref:
                errors["reference"].append(np.linalg.norm(np.array(ref["weights"]) - w_true))
        cells = [f"{np.mean(e):.3f} ({np.min(e):.3f}-{np.max(e):.3f})" if e else "" for e in errors.values()]
        print(f"{n:>9} " + " ".join(f"{c:>20}" for c in cells), flush=True)


def child(python, role, folder, batch):
    out = subprocess.run([python, __file__, "--child", role, folder, str(batch)], capture_output=True, text=True)
    if out.returncode:
        return dict(error=(out.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--dims", type=int, default=768)
    ap.add_argument("--reference-python", default=None)
    ap.add_argument("--batch", type=int, default=None, help="batch size for both (default: estimated)")
    ap.add_argument("--recovery", type=int, default=0, metavar="SEEDS")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        role, folder, batch = args.child
        run = {"ours": run_ours, "reference": run_reference, "recovery": run_recovery}[role]
        print(json.dumps(run(folder, int(batch))))
        return
    if args.recovery:
        return recovery(args)
    from fastmlem import MLEM
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth (read + write): {bandwidth / 1e9:.1f} GB/s; h = {args.dims}; defaults, seed 0, "
          f"{M} binary features")
    head = (f"{'n':>9} {'dtype':>8} {'batch':>7} {'RDM':>4} {'steps':>5} {'fit s':>7} {'score s':>7} "
            f"{'step ms':>8} {'floor ms':>8} {'floor %':>7} {'gather %':>8} {'imp ms':>7} {'imp %':>5} {'RSS+ MB':>8} {'ref s':>8} {'ratio':>6} "
            f"{'|w-w*|':>6} {'ref':>6}")
    print(head)
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        for dtype in args.dtypes.split(","):
            with tempfile.TemporaryDirectory() as folder:
                w_true = make_files(folder, n, args.dims, dtype)
                X = pd.read_csv(os.path.join(folder, "features.csv"))
                batch = args.batch or MLEM(random_state=0).estimate_batch_size(X)  # both packages get it
                ours = child(sys.executable, "ours", folder, batch)
                ref = child(args.reference_python, "reference", folder, batch) if args.reference_python else {}
            if "error" in ours:
                print(f"{n:>9} {dtype:>8} fastmlem failed: {ours['error']}")
                continue
            floor = batch * 2 * args.dims * np.dtype(dtype).itemsize / bandwidth
            total = ours["fit"] + ours["score"]
            ref_s = ref.get("fit", np.nan) + ref.get("score", np.nan)
            err = np.linalg.norm(np.array(ours["weights"]) - w_true)
            ref_err = np.linalg.norm(np.array(ref["weights"]) - w_true) if "weights" in ref else np.nan
            share = "" if ours["rdm"] else f"{100 * floor / ours['step']:.0f}"
            imp_share = "" if ours["rdm"] else f"{100 * floor / ours['importance']:.0f}"
            gather_share = "" if ours["rdm"] else f"{100 * floor / ours['gather']:.0f}"
            print(f"{n:>9} {dtype:>8} {batch:>7} {'yes' if ours['rdm'] else 'no':>4} {ours['steps']:>5} "
                  f"{ours['fit']:>7.2f} {ours['score']:>7.2f} {ours['step'] * 1e3:>8.2f} {floor * 1e3:>8.2f} "
                  f"{share:>7} {gather_share:>8} {ours['importance'] * 1e3:>7.2f} {imp_share:>5} {ours['rss'] / 2**20:>8.0f} {ref_s:>8.2f} "
                  f"{ref_s / total:>6.1f} {err:>6.3f} {ref_err:>6.3f}", flush=True)
            if "error" in ref:
                print(f"    reference failed: {ref['error']}")
    print("floor = B x 2 x h x bytes / copy bandwidth (gathers only); floor % = floor / measured step (gather %: over the"
          " gather kernel alone on a fresh batch; imp %: per importance batch);"
          " ratio = reference (fit + score) / fastmlem (fit + score); |w-w*| = weight error vs the planted weights")


if __name__ == "__main__":
    main()
