"""Does MLEM's training loss track Spearman? The batch loss against the exact Spearman of the
same batch, step by step, for soft_rank_strength=1.0 (the reference: the loss is Pearson) and
'auto' (the largest strength whose soft ranks correlate >= 0.999 with the hard ranks), and what
the fits recover. One run, side by side.

    python bench/bench_soft_rank_auto.py [--steps 300]

Data: the bundled sentences (transformer layer 3, 6 binary features, no interactions) and one synthetic
dataset of the paper's simulation (16 binary features, interactions, sigma = 1).
Printed per data set and strength: mean |loss - Spearman| over the steps, the correlation of
the two across steps, steps run, best batch score, the held-out-free exact Spearman of the
fitted weights over all pairs, the per-step time, and for the simulation the weight errors.
"""
import argparse
import time
import warnings

import numpy as np
import pandas as pd

from fastmlem import MLEM, ops
from fastmlem import numpy_backend as nb
from fastmlem import simulate as sim
from fastmlem.datasets import load_sentences


def traced_fit(model, X, Y):
    """Fit, recording (batch loss, exact Spearman of the same batch and weights) at every step."""
    trace = []
    build = type(model)._train_step

    def train_step(self, rows, n):
        step, seed = build(self, rows, n), self._seed()

        def recorded(stream, w, lo, hi):
            out = step(stream, w, lo, hi)
            F, y = rows(*rows.sample_pairs(n, self.batch_size_, seed, stream))
            trace.append((out[0], float(ops.spearman(nb.predict(F, w), y))))  # ranks of y = ranks of scaled y^2
            return out
        return recorded
    model._train_step = train_step.__get__(model)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(X, Y)
    seconds = time.perf_counter() - start
    del model._train_step
    return np.array(trace), seconds


def full_spearman(model, X, Y):
    from fastmlem.mlem import pair_rows
    X_enc = model.X_
    rows = pair_rows(X_enc, model.Y_, model.distance, model.interactions, model.nan_to_num)
    F, y = rows(*nb.all_pairs(len(X_enc)))
    return float(ops.spearman(nb.predict(F, model.weights_), y))


def main(steps):
    features, Y_sent = load_sentences(layers=3, dtype=np.float64)
    data = sim.make_dataset(256, 16, 1.0, 768, seed=0)
    cases = [("sentences layer 3", features, Y_sent, False, None),
             ("simulation sigma=1", data["X"], data["Y"], True, data["W"])]
    rows, importances = [], {}
    for name, X, Y, inter, W in cases:
        for strength in (1.0, "auto"):
            model = MLEM(interactions=inter, soft_rank_strength=strength, max_steps=steps, random_state=0)
            trace, _ = traced_fit(model, X, Y)
            start = time.perf_counter()  # the same fit untraced, for its time per step
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                MLEM(interactions=inter, soft_rank_strength=strength, max_steps=steps, random_state=0).fit(X, Y)
            seconds = time.perf_counter() - start
            loss, rho = trace[:, 0], trace[:, 1]
            row = {"data": name, "strength": strength, "batch": model.batch_size_, "steps": len(trace),
                   "mean |loss - rho|": np.abs(loss - rho).mean(), "corr(loss, rho)": np.corrcoef(loss, rho)[0, 1],
                   "best batch loss": loss.max(), "rho all pairs": full_spearman(model, X, Y),
                   "ms / step": 1e3 * seconds / len(trace)}
            if W is not None:
                row["error invariant"] = sim.weight_error(model.weights_, W, "MLEM", "invariant")
                row["error authors"] = sim.weight_error(model.weights_, W, "MLEM", "authors")
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    imp = model.score()[0].mean()
                importances[strength] = imp
                row["importance order"] = " > ".join(imp.sort_values(ascending=False).index[:3])
            rows.append(row)
    pd.set_option("display.width", 250)
    print(pd.DataFrame(rows).round(4).to_string(index=False))
    a, b = importances[1.0], importances["auto"]
    print(f"\nsentences: mean permutation importances, 1.0 vs 'auto': Pearson {np.corrcoef(a, b)[0, 1]:.4f}, "
          f"max |difference| {np.abs(a - b).max():.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    main(parser.parse_args().steps)
