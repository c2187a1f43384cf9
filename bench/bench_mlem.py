"""MLEM fit + score: fastmlem vs a pure-numpy twin of the same algorithm, and vs the reference
`mlem` package (torch) when it is importable. Same data, batch size and step count, one run.

    python bench/bench_mlem.py [--steps 200]

Data: n = 1000 stimuli, 8 binary categorical features, 768-dim representations.
"""
import argparse
import time

import numpy as np
import pandas as pd

from fastmlem import MLEM
from fastmlem import numpy_backend as nb


def make_data(n=1000, m=8, h=768, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], n) for k in range(m)})
    codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
    w = np.linspace(1, 0, m)
    Y = np.column_stack([codes * np.sqrt(w) * 3, rng.normal(size=(n, h - m))]).astype(np.float32)
    return X, Y, w / np.linalg.norm(w)


def numpy_step_time(X, Y, batch, steps):
    """Per-step time of the same training step written with the numpy twins only."""
    Xe = np.column_stack([pd.Categorical(X[c]).codes for c in X]).astype(float)
    params = np.random.default_rng(0).uniform(0, 1, Xe.shape[1])
    t = time.perf_counter()
    for s in range(steps):
        i, j = nb.sample_pairs(len(Xe), batch, 0, s)
        F = nb.feature_distances(Xe, i, j)
        y = nb.neural_distances(Y, i, j) ** 2
        w = nb.weights(params, Xe.shape[1], "diag")
        _, g = nb.rank_loss_grad(F, w, y)
        params += 0.1 * np.sign(nb.weights_vjp(params, Xe.shape[1], "diag", g))
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=1, help="seeds for the weight error (mean over seeds)")
    args = ap.parse_args()
    X, Y, w_true = make_data()
    batch = MLEM(random_state=0).estimate_batch_size(X)  # then both packages get this batch size
    t = time.perf_counter()
    model = MLEM(random_state=0, batch_size=batch, max_steps=args.steps, patience=args.steps).fit(X, Y)
    fit_time = time.perf_counter() - t
    t = time.perf_counter()
    model.score()
    score_time = time.perf_counter() - t
    err = np.mean([np.linalg.norm(model.weights_ - w_true)] + [
        np.linalg.norm(MLEM(random_state=s, batch_size=batch, max_steps=args.steps, patience=args.steps)
                       .fit(X, Y).weights_ - w_true) for s in range(1, args.seeds)])
    print(f"batch size {batch}, {model.n_steps_} steps")
    print(f"{'implementation':<28} {'fit s':>8} {'score s':>8} {'per step ms':>12} {'ratio':>8} {'|w - w_true|':>13}")
    ours_step = fit_time / model.n_steps_
    print(f"{'fastmlem':<28} {fit_time:>8.2f} {score_time:>8.2f} {ours_step * 1e3:>12.2f} {1.0:>8.1f} {err:>13.3f}")
    np_step = numpy_step_time(X, Y, batch, max(3, args.steps // 50))
    print(f"{'numpy twin (same algorithm)':<28} {'':>8} {'':>8} {np_step * 1e3:>12.2f} {np_step / ours_step:>8.1f}")
    try:
        from mlem import MLEM as RefMLEM
    except ImportError:
        print("reference `mlem` not importable: pip install it (needs torch) to add its row")
        return
    ref = RefMLEM(batch_size=batch, max_steps=args.steps, patience=args.steps, random_seed=0)
    t = time.perf_counter()
    Xc = X.astype("category")  # the reference crashes on pandas >= 3 string columns
    ref.fit(Xc, Y)
    ref_fit = time.perf_counter() - t
    t = time.perf_counter()
    ref.score()  # on its training data
    ref_score = time.perf_counter() - t
    ref_err = np.mean([np.linalg.norm(ref.get_weights()["Weight"].to_numpy() - w_true)] + [
        np.linalg.norm(RefMLEM(batch_size=batch, max_steps=args.steps, patience=args.steps, random_seed=s)
                       .fit(Xc, Y).get_weights()["Weight"].to_numpy() - w_true) for s in range(1, args.seeds)])
    print(f"{'reference mlem (torch)':<28} {ref_fit:>8.2f} {ref_score:>8.2f} {ref_fit / args.steps * 1e3:>12.2f} "
          f"{(ref_fit + ref_score) / (fit_time + score_time):>8.1f} {ref_err:>13.3f}")
    print(f"(|w - w_true|: mean over {args.seeds} seed(s); ratio = reference time / fastmlem time, fit + score)")


if __name__ == "__main__":
    main()
