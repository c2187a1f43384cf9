"""Command line: ``python -m fastmlem {demo,fit,simulate,study} ...`` (also installed as ``fastmlem``).

demo      MLEM on every layer of the bundled sentence dataset; prints importances per layer.
fit       MLEM on your files: a features CSV (one row per stimulus) and a representations .npy.
simulate  The MLEM paper's synthetic benchmark: MLEM vs FR-RSA-I (and classic FR-RSA).
study     Cross-validation and permutation p-values over many targets (.npz), on threads or Dask.
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
    if args.cv:
        return _run_study(args, features, {layer: reps[layer] for layer in layers})
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


def _read_targets(path):
    """Targets from an .npz (one array per target, named by its keys) or an .npy (one array, or (L, n, ...))."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise SystemExit(f"could not read {path} as a numpy .npz/.npy file: {err}") from err
    if isinstance(data, np.ndarray):
        return data
    with data:
        return {name: data[name] for name in data.files}


def _run_study(args, features, targets):
    """Cross-validation (--cv) and the permutation test (--n-null) of every target; print, write, plot."""
    from . import studies
    if args.cv == 0 and args.n_null == 0:
        raise SystemExit("nothing to do: give --cv >= 2 and/or --n-null >= 1.")
    if args.cv == 1 or args.cv < 0 or args.n_null < 0:
        raise SystemExit(f"--cv must be 0 (none) or >= 2 and --n-null >= 0; got {args.cv} and {args.n_null}.")
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise SystemExit(f"the folder of --out ({os.path.dirname(os.path.abspath(args.out))}) does not exist.")
    model = _mlem(args).set_params(max_steps=args.max_steps)
    run = dict(n_jobs=args.jobs, backend=args.scheduler, random_state=args.seed)
    start, cv, test = time.perf_counter(), None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch-size notes; constant features still named below
        warnings.simplefilter("default", studies.ConstantFeatureWarning)
        if args.cv:
            cv = studies.cross_validate(model, features, targets, cv=args.cv, **run)
            print(f"{args.cv}-fold cross-validation of {len(cv['target'].unique())} target(s): "
                  f"{time.perf_counter() - start:.1f} s")
        if args.n_null:
            t0 = time.perf_counter()
            test = studies.permutation_test(model, features, targets, n_null=args.n_null, **run)
            print(f"permutation test, {args.n_null} null refits per target: {time.perf_counter() - t0:.1f} s")
    summary = studies.summarize(cv, test)
    value = "cv_importance" if cv is not None else "importance"
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.precision", 3):
        print(f"\n{'Held-out' if cv is not None else 'All-stimuli'} permutation importance per target and feature:")
        print(summary.pivot_table(index="target", columns="feature", values=value, sort=False))
        if cv is not None:
            print("\nHeld-out Spearman per target:")
            print(summary.groupby("target", sort=False)["test_spearman"].first().to_string())
        if test is not None:
            print(f"\nBenjamini-Hochberg adjusted p-values (smallest possible {1 / (args.n_null + 1):.3g}):")
            print(summary.pivot_table(index="target", columns="feature", values="p_adjusted", sort=False))
    print(f"Total time: {time.perf_counter() - start:.1f} s")
    if args.out:
        summary.to_csv(args.out, index=False)
        written = [args.out]
        if cv is not None:
            folds = os.path.splitext(args.out)[0] + "_folds.csv"
            cv.to_csv(folds, index=False)
            written.append(folds)
        print(f"Wrote {' and '.join(written)}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from . import plot
        ax = plot.study_importance(summary, title="Feature importance across targets")
        ax.figure.savefig(args.plot, dpi=120)
        print(f"Wrote {args.plot}")


def study(args):
    """The study subcommand: features CSV + one representation array per target (.npz)."""
    features = pd.read_csv(args.features)
    targets = _read_targets(args.representations)
    print(f"{len(features)} stimuli, features {list(features.columns)}, "
          f"{len(targets) if isinstance(targets, dict) else 1} target(s) from {args.representations}")
    _run_study(args, features, targets)


def _add_study_options(parser, cv, n_null):
    parser.add_argument("--cv", type=int, default=cv, help=f"folds over stimuli, 0 = none (default {cv})")
    parser.add_argument("--n-null", type=int, default=n_null,
                        help=f"null refits per target for p-values, 0 = none (default {n_null})")
    parser.add_argument("--jobs", type=int, default=None, help="parallel fits (joblib threads)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run the fits on this Dask scheduler (tcp://host:8786)")
    parser.add_argument("--max-steps", type=int, default=1000, help="MLEM training steps (default 1000)")


def _add_study_parser(commands):
    p = commands.add_parser("study", help="cross-validation + permutation p-values over many targets")
    p.add_argument("features", help="CSV, one row per stimulus, one column per feature")
    p.add_argument("representations", help=".npz with one array (n_stimuli, ...) per target (layer, subject)")
    _add_model_options(p)
    _add_study_options(p, cv=5, n_null=200)
    p.add_argument("--out", default="fastmlem_study.csv",
                   help="summary CSV, one row per target x feature (default %(default)s); folds go to *_folds.csv")
    p.add_argument("--plot", metavar="FILE", help="write the importance-across-targets figure")
    p.set_defaults(func=study)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fastmlem", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="MLEM per layer on the bundled sentence dataset")
    _add_model_options(p)
    p.add_argument("--layers", help="comma-separated layer names (default: all)")
    p.add_argument("--plot", metavar="FILE", help="write the figure (importance across layers + MDS)")
    p.add_argument("--out", metavar="CSV", help="write the importances in long form")
    _add_study_options(p, cv=0, n_null=0)  # --cv K: the layers as a study (cross-validation, --n-null p-values)
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
    _add_study_parser(commands)
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
