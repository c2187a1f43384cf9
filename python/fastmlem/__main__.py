"""Command line: ``python -m fastmlem {demo,fit,simulate} ...`` (also installed as ``fastmlem``).

demo      MLEM on every layer of the bundled sentence dataset; prints importances per layer.
fit       MLEM on your files: a features CSV (one row per stimulus) and a representations .npy.
simulate  The MLEM paper's synthetic benchmark: MLEM vs FR-RSA-I (and classic FR-RSA).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd


def _mlem(args, verbose=False):
    from .mlem import MLEM
    return MLEM(interactions=args.interactions, n_permutations=args.n_permutations, distance=args.distance,
                random_state=args.seed, verbose=verbose, soft_rank_strength=args.soft_rank_strength)


def _strength(value):
    return value if value == "auto" else float(value)


def _add_model_options(parser):
    parser.add_argument("--interactions", action="store_true", help="learn an SPD matrix over feature pairs")
    parser.add_argument("--distance", default="euclidean",
                        choices=["euclidean", "manhattan", "cosine", "norm_diff"], help="neural distance")
    parser.add_argument("--n-permutations", type=int, default=5, help="permutations per feature (default 5)")
    parser.add_argument("--soft-rank-strength", type=_strength, default=1.0,
                        help="1.0 (reference) or 'auto' (loss tracks Spearman)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _summary(importances: pd.DataFrame) -> pd.Series:
    return importances.mean()


def demo(args):
    """Fit MLEM per layer on the bundled sentences; print mean importance per layer and feature."""
    from tqdm.auto import tqdm
    from .datasets import load_sentences
    features, reps = load_sentences()
    layers = list(reps) if not args.layers else args.layers.split(",")
    unknown = [layer for layer in layers if layer not in reps]
    if unknown:
        raise SystemExit(f"unknown layer(s) {unknown}; choose from {list(reps)}.")
    print(f"Bundled sentences: {len(features)} sentences, features {list(features.columns)}, "
          f"{len(layers)} layers of all-MiniLM-L6-v2 ({next(iter(reps.values())).shape[1]} dims).")
    results, rows, start = {}, [], time.perf_counter()
    for layer in tqdm(layers, desc="Layers", disable=args.quiet):
        t0 = time.perf_counter()
        model = _mlem(args).fit(features, reps[layer])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            importances, baseline = model.score()
        results[layer] = importances
        rows.append(dict(layer=layer, **_summary(importances), spearman=baseline.mean(),
                         seconds=time.perf_counter() - t0))
    table = pd.DataFrame(rows).set_index("layer")
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.precision", 3):
        print("\nMean permutation importance (drop in Spearman) per layer:")
        print(table)
    print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
    if args.out:
        tidy = pd.concat({layer: imp for layer, imp in results.items()}, names=["layer", "permutation"])
        tidy.stack().rename("importance").rename_axis(["layer", "permutation", "feature"]).reset_index().to_csv(
            args.out, index=False)
        print(f"Wrote {args.out}")
    if args.plot:
        _demo_figure(results, table, features, reps, args.plot)
        print(f"Wrote {args.plot}")


def _demo_figure(results, table, features, reps, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from . import plot
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    plot.importance_by_layer(results, ax=ax_a, title="Feature importance across layers")
    best_layer = table["spearman"].idxmax()
    top_feature = table.loc[best_layer].drop(["spearman", "seconds"]).astype(float).idxmax()
    plot.mds_scatter(reps[best_layer], features[top_feature], ax=ax_b,
                     title=f"MDS of {best_layer}, coloured by {top_feature}")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fit(args):
    """MLEM on a user's features CSV and representations .npy; write importances (and weights) CSVs."""
    features = pd.read_csv(args.features)
    if args.columns:
        missing = [c for c in args.columns.split(",") if c not in features.columns]
        if missing:
            raise SystemExit(f"columns {missing} are not in {args.features}; it has {list(features.columns)}.")
        features = features[args.columns.split(",")]
    try:
        Y = np.load(args.representations, allow_pickle=False)
    except ValueError as err:
        raise SystemExit(f"could not read {args.representations} as a numpy .npy array: {err}") from err
    if not isinstance(Y, np.ndarray):  # an .npz archive
        if len(Y.files) != 1:
            raise SystemExit(f"{args.representations} holds {len(Y.files)} arrays {Y.files}; save the one "
                             "to use as .npy (or an .npz with a single array).")
        Y = Y[Y.files[0]]
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise SystemExit(f"the folder of --out ({out_dir}) does not exist.")
    print(f"{len(features)} stimuli, features {list(features.columns)}, representations {Y.shape}")
    start = time.perf_counter()
    model = _mlem(args, verbose=not args.quiet).fit(features, Y)
    tidy = model.score(tidy=True)
    print(f"Fitted in {time.perf_counter() - start:.1f} s (batch {model.batch_size_}, {model.n_steps_} steps, "
          f"best score {model.best_score_:.4f})")
    summary = tidy.groupby("feature", sort=False)["importance"].agg(["mean", "std"])
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(summary.sort_values("mean", ascending=False))
    tidy.to_csv(args.out, index=False)
    weights_path = os.path.splitext(args.out)[0] + "_weights.csv"
    model.get_weights().to_csv(weights_path)
    print(f"Wrote {args.out} and {weights_path}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from . import plot
        ax = plot.importance_bars(tidy, title="MLEM permutation importance")
        ax.figure.savefig(args.plot, dpi=120)
        print(f"Wrote {args.plot}")


def simulate(args):
    """The synthetic benchmark; prints the table and whether MLEM beats FR-RSA-I; writes the figure."""
    from . import simulate as sim
    grid = dict(sim.QUICK) if args.quick else dict(noise_levels=sim.NOISE_LEVELS, seeds=tuple(range(5)),
                                                   n_stimuli=256, n_features=16)
    if args.noise:
        grid["noise_levels"] = tuple(float(v) for v in args.noise.split(","))
        if min(grid["noise_levels"]) < 0:
            raise SystemExit(f"noise levels must be >= 0; got {args.noise}.")
    for name, minimum in (("seeds", 1), ("n_stimuli", 10), ("n_features", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= {minimum}; got {value}.")
    if args.seeds is not None:
        grid["seeds"] = tuple(range(args.seeds))
    if args.n_stimuli is not None:
        grid["n_stimuli"] = args.n_stimuli
    if args.n_features is not None:
        grid["n_features"] = args.n_features
    methods = tuple(args.methods.split(","))
    print(f"Simulation: {grid['n_stimuli']} stimuli, {grid['n_features']} binary features, noise "
          f"{grid['noise_levels']}, seeds {grid['seeds']}, methods {methods}, embedding {args.embedding}")
    start = time.perf_counter()
    results = sim.run(methods=methods, max_steps=args.max_steps, verbose=not args.quiet, embedding=args.embedding,
                      **grid)
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.precision", 3):
        print(sim.summarize(results))
        if {"MLEM", "FR-RSA-I"} <= set(methods):
            wins = sim.mlem_wins(results)
            print("\nMLEM vs FR-RSA-I (paper: lower error at every noise > 0, fewer steps):")
            print(wins)
            positive = wins.loc[wins.index > 0]
            print(f"MLEM lower error at every noise > 0: {bool(positive['lower error'].all())}; "
                  f"fewer steps at every noise: {bool(wins['fewer steps'].all())}")
        print(f"Chance level (two independent random SPD matrices): "
              f"{sim.chance_frobenius(grid['n_features']):.3f}")
    print(f"Total time: {time.perf_counter() - start:.1f} s")
    if args.out:
        results.to_csv(args.out, index=False)
        print(f"Wrote {args.out}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from . import plot
        plot.simulation(results, args.plot, chance=sim.chance_frobenius(grid["n_features"]))
        print(f"Wrote {args.plot}")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fastmlem", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="MLEM per layer on the bundled sentence dataset")
    _add_model_options(p)
    p.add_argument("--layers", help="comma-separated layer names (default: all)")
    p.add_argument("--plot", metavar="FILE", help="write the figure (importance across layers + MDS)")
    p.add_argument("--out", metavar="CSV", help="write the importances in long form")
    p.set_defaults(func=demo)

    p = commands.add_parser("fit", help="MLEM on your own features CSV and representations .npy")
    p.add_argument("features", help="CSV, one row per stimulus, one column per feature")
    p.add_argument("representations", help=".npy array (n_stimuli, ...) of representations")
    _add_model_options(p)
    p.add_argument("--columns", help="comma-separated feature columns to use (default: all)")
    p.add_argument("--out", default="fastmlem_results.csv", help="importances CSV (default %(default)s)")
    p.add_argument("--plot", metavar="FILE", help="write an importance bar chart")
    p.set_defaults(func=fit)

    p = commands.add_parser("simulate", help="the paper's synthetic benchmark (MLEM vs FR-RSA-I)")
    p.add_argument("--quick", action="store_true", help="the paper's sizes on a smaller grid: noise 0,1,2,3,5 x 3 seeds")
    p.add_argument("--noise", help="comma-separated noise levels")
    p.add_argument("--seeds", type=int, help="number of seeds")
    p.add_argument("--n-stimuli", type=int, help="stimuli per dataset (default 256)")
    p.add_argument("--n-features", type=int, help="binary features (default 16)")
    p.add_argument("--methods", default="MLEM,FR-RSA-I", help="from MLEM,FR-RSA-I,FR-RSA")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--embedding", choices=("mds", "none"), default="mds",
                   help="mds: the paper's protocol; none: fit the noisy ground-truth dissimilarities directly "
                        "(a control that skips the MDS step)")
    p.add_argument("--plot", metavar="FILE", help="write the figure (error and steps vs noise)")
    p.add_argument("--out", metavar="CSV", help="write one row per fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=simulate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
