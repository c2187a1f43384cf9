"""Command line: ``python -m fastmlem {demo,fit,simulate,study} ...`` (also installed as ``fastmlem``).

demo      MLEM on every layer of the bundled sentence dataset; prints importances per layer.
fit       MLEM on your files: a features CSV (one row per stimulus) and representations (.npy, or an
          .npz with one array per layer), or a neural distance matrix with --distance precomputed.
simulate  The MLEM paper's synthetic benchmark: MLEM vs FR-RSA-I (and classic FR-RSA).
study     Cross-validation and permutation p-values over many targets (.npz), on threads or Dask.

Exit status: 0 done; 2 the command line or an input file is wrong (the message says what to
change); 1 the run failed otherwise.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
import zipfile

import numpy as np
import pandas as pd

from ._backend import METRICS

EXIT_FAILURE, EXIT_USAGE = 1, 2
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
_MAX_PRECOMPUTED_BYTES = 2**32  # per-feature distance matrices the CLI builds for --distance precomputed


class UsageError(Exception):
    """The command line or an input file is wrong; the message says what to do (exit status 2)."""


# ---------------------------------------------------------------- argument types (argparse -> exit 2)
def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {value}")
        return value
    return parse


def _strength(text):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number such as 1.0; got {text!r}")
    return value


def _batch_size(text):
    return text if text == "all" else _int_at_least(3)(text)


def _noise_levels(text):
    try:
        levels = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0,1,2; got {text!r}") from None
    if min(levels) < 0:
        raise argparse.ArgumentTypeError(f"noise levels must be >= 0; got {text!r}")
    return levels


# ---------------------------------------------------------------- input files (-> UsageError)
def _check_input_file(path, what):
    if not os.path.exists(path):
        raise UsageError(f"the {what} file {path!r} does not exist (looked in {os.getcwd()}); check the path.")
    if os.path.isdir(path):
        raise UsageError(f"the {what} path {path!r} is a folder; give the file inside it.")
    with open(path, "rb") as fh:
        return fh.read(64)


def _check_output_folder(path, option):
    """Checked before any work, so that a long fit does not end on a path that cannot be written."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UsageError(f"the folder of {option} ({folder}) does not exist; create it or choose another path.")
        if os.path.isdir(path):
            raise UsageError(f"{option} {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'results.csv')}.")


def read_features(path, what="features", index_col=None, columns=None):
    """A features CSV as a DataFrame (one row per stimulus), with clear errors for the wrong file.

    ``index_col``: a column that names the stimuli (dropped from the features); ``columns``: a list of
    feature columns to keep. Raises UsageError.
    """
    head = _check_input_file(path, what)
    if head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        raise UsageError(f"the {what} file {path!r} is a numpy array file, not a CSV table. The features CSV "
                         "comes first, then the representations: fastmlem fit FEATURES.csv REPS.npy")
    try:
        table = pd.read_csv(path)
    except UnicodeDecodeError as err:
        raise UsageError(f"the {what} file {path!r} is not a UTF-8 text CSV (byte {err.object[err.start]:#04x} at "
                         f"position {err.start}); save the table as CSV (UTF-8).") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"the {what} file {path!r} is empty; it needs a header line and one row per stimulus.") from None
    except pd.errors.ParserError as err:
        raise UsageError(f"the {what} file {path!r} could not be read as CSV ({err}); check its separators "
                         "and quotes.") from None
    if index_col is not None:
        if index_col not in table.columns:
            raise UsageError(f"--index-col {index_col!r} is not a column of {path}; it has {list(table.columns)}.")
        table = table.set_index(index_col)
    if columns is not None:
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise UsageError(f"columns {missing} are not in {path}; it has {list(table.columns)}.")
        table = table[columns]
    return table


def read_representations(path, what="representations", layers=None):
    """Arrays from a .npy file ({None: array}) or an .npz archive ({name: array}, one per layer).

    ``layers``: names of the .npz arrays to keep, in that order. Raises UsageError for a file that is
    not a numpy array file, an array of Python objects, or an unknown layer.
    """
    head = _check_input_file(path, what)
    if not head.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
        text = head.decode("utf-8", "replace").splitlines()[0][:40] if head else ""
        looks = f"it starts with {text!r}, like a text or CSV file" if head and head.isascii() else "its format is unknown"
        raise UsageError(f"the {what} file {path!r} is not a numpy .npy/.npz file: {looks}. Give the features CSV "
                         "first, then the representations (fastmlem fit FEATURES.csv REPS.npy), saved with "
                         "numpy.save('reps.npy', array) (or numpy.savez('layers.npz', layer_1=..., ...)).")
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = {None: loaded} if isinstance(loaded, np.ndarray) else {name: loaded[name] for name in loaded.files}
    except ValueError as err:
        if "pickle" not in str(err):
            raise UsageError(f"could not read the {what} file {path!r} as a numpy array: {err}.") from None
        raise UsageError(f"the {what} file {path!r} holds Python objects (dtype object), not numbers; save a "
                         "numeric array, e.g. numpy.save(path, numpy.asarray(reps, dtype=float)).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"the {what} file {path!r} is damaged or truncated ({err}); save it again.") from None
    if layers is not None:
        if None in arrays:
            raise UsageError(f"--layers picks arrays of an .npz archive; {path!r} holds a single .npy array.")
        unknown = [layer for layer in layers if layer not in arrays]
        if unknown:
            raise UsageError(f"layer(s) {unknown} are not in {path}; it holds {list(arrays)}.")
        arrays = {layer: arrays[layer] for layer in layers}
    if not arrays:
        raise UsageError(f"the {what} archive {path!r} holds no arrays.")
    return arrays


def _id_like_columns(table):
    """Columns with a different value for every stimulus that look like a row number or a name:
    integers 0..n-1 (any offset), a pandas 'Unnamed: k' column, or text with one level per row.
    Numeric features that are merely all distinct (e.g. word frequency) are not flagged."""
    found = []
    n = len(table)
    for name, column in table.items():
        values = column.dropna()
        if n < 3 or len(values) != n or values.nunique() != n:
            continue
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric:
            as_float = values.to_numpy(dtype=np.float64)
            row_number = bool(np.all(as_float == np.round(as_float))) and as_float.max() - as_float.min() == n - 1
            if row_number or re.fullmatch(r"Unnamed: \d+", str(name)):
                found.append((name, "a row number" if row_number else "an unnamed index column"))
        else:
            found.append((name, "a name or ID"))
    return found


def _warn_id_columns(table, path):
    for name, kind in _id_like_columns(table):
        warnings.warn(f"column {name!r} of {path} has a different value for every stimulus (it looks like {kind}), so "
                      f"it is fitted as a feature; if it is not one, drop it with --index-col {name!r} "
                      "(or choose the features with --columns).", UserWarning, stacklevel=2)


def _mlem(args, verbose=False):
    from .mlem import MLEM
    return MLEM(interactions=args.interactions, n_permutations=args.n_permutations, distance=args.distance,
                random_state=args.seed, verbose=verbose, soft_rank_strength=args.soft_rank_strength,
                weights_from=getattr(args, "weights_from", "average"),
                **{name: getattr(args, name) for name in ("batch_size", "max_steps", "memory") if name in args})


def _add_model_options(parser, distances=None):
    parser.add_argument("--interactions", action="store_true", help="learn an SPD matrix over feature pairs")
    parser.add_argument("--distance", default="euclidean", choices=distances, help="neural distance")
    parser.add_argument("--n-permutations", type=_int_at_least(1), default=5, metavar="N",
                        help="permutations per feature (default 5)")
    parser.add_argument("--soft-rank-strength", type=_strength, default=1.0, metavar="S",
                        help="1.0 (reference) or 'auto' (loss tracks Spearman)")
    parser.add_argument("--weights-from", choices=("average", "best", "last"), default="average",
                        help="weights fit returns: mean over the last patience + 1 steps (default), the best "
                        "batch's, or the last step's (the reference's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when stderr "
                        "is not a terminal, e.g. in a batch job's log)")


def _summary(importances: pd.DataFrame) -> pd.Series:
    return importances.mean()


def demo(args):
    """Fit MLEM per layer on the bundled sentences; print mean importance per layer and feature."""
    from ._progress import progress
    from .datasets import load_sentences
    _check_output_folder(args.out, "--out")
    _check_output_folder(args.plot, "--plot")
    features, reps = load_sentences()
    layers = list(reps) if not args.layers else args.layers.split(",")
    unknown = [layer for layer in layers if layer not in reps]
    if unknown:
        raise UsageError(f"unknown layer(s) {unknown}; choose from {list(reps)}.")
    print(f"Bundled sentences: {len(features)} sentences, features {list(features.columns)}, "
          f"{len(layers)} layers of all-MiniLM-L6-v2 ({next(iter(reps.values())).shape[1]} dims).")
    if args.cv:
        return _run_study(args, features, {layer: reps[layer] for layer in layers})
    results, rows, start = {}, [], time.perf_counter()
    for layer in progress(layers, desc="Layers", verbose=not args.quiet):
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


def _feature_distance_matrices(X_enc):
    """(n, n, m) |x_ik - x_jk| of encoded features, for --distance precomputed (the model clips them to
    [0, 1] and fills missing values, as it does for feature columns)."""
    n, m = X_enc.shape
    if n * n * m * 8 > _MAX_PRECOMPUTED_BYTES:
        raise UsageError(f"--distance precomputed builds {m} feature distance matrices of {n} x {n} stimuli "
                         f"({n * n * m * 8 / 2**30:.1f} GiB); fit the representations themselves instead, or fewer "
                         "stimuli.")
    return np.abs(X_enc[:, None, :] - X_enc[None, :, :])


def _precomputed_features(features, test_features=None):
    """Per-feature distance matrices (n, n, m) of the training table (and of the test table, encoded
    on the training scale and categories), and the feature names, for --distance precomputed."""
    from .encoding import encode_features
    X_enc, names, encoding = encode_features(features, return_encoding=True)
    X_test = None if test_features is None else _feature_distance_matrices(
        encode_features(test_features, encoding=encoding)[0])
    return _feature_distance_matrices(X_enc), X_test, names


def _fit_data(args):
    """Read and check fit's inputs: (features DataFrame, {layer: Y}, test) where test is None or
    (test features DataFrame, {layer: Y_test}); layer is None for a single .npy array."""
    columns = args.columns.split(",") if args.columns else None
    if (args.test_features is None) != (args.test_representations is None):
        raise UsageError("held-out scoring needs both --test-features and --test-representations.")
    _check_output_folder(args.out, "--out")
    _check_output_folder(args.plot, "--plot")
    features = read_features(args.features, index_col=args.index_col, columns=columns)
    reps = read_representations(args.representations, layers=args.layers.split(",") if args.layers else None)
    _warn_id_columns(features, args.features)
    if args.test_features is None:
        return features, reps, None
    test_features = read_features(args.test_features, "test features", args.index_col,
                                  [str(c) for c in features.columns])
    test_reps = read_representations(args.test_representations, "test representations")
    if not set(reps) <= set(test_reps):
        def form(arrays):
            return "one .npy array" if None in arrays else f".npz layers {list(arrays)}"
        raise UsageError(f"give the training and test representations in the same form (both .npy, or both .npz "
                         f"with the same layers); training: {form(reps)}, test: {form(test_reps)}.")
    return features, reps, (test_features, test_reps)


def _write_fit_results(args, results, weights):
    """Print the importance summary; write the long-form importances, the weights and the chart.
    results / weights: {layer: tidy importances / weights DataFrame}, layer None for a single array."""
    single = None in results
    if single:
        tidy, table = results[None], weights[None]
        summary = tidy.groupby("feature", sort=False)["importance"].agg(["mean", "std"]).sort_values("mean",
                                                                                                     ascending=False)
    else:
        tidy = pd.concat(results, names=["layer", None]).reset_index(level=0)
        table = pd.concat(weights, names=["layer", "feature"])
        summary = pd.DataFrame({layer: r.groupby("feature", sort=False)["importance"].mean()
                                for layer, r in results.items()}).T.rename_axis(index="layer", columns=None)
        summary["spearman"] = [r["baseline"].mean() for r in results.values()]
        print("\nMean permutation importance (drop in Spearman) per layer:")
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4f}".format):
        print(summary)
    tidy.to_csv(args.out, index=False)
    weights_path = os.path.splitext(args.out)[0] + "_weights.csv"
    table.to_csv(weights_path)
    print(f"Wrote {args.out} and {weights_path}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from . import plot
        ax = (plot.importance_bars(tidy, title="MLEM permutation importance") if single else
              plot.importance_by_layer(tidy, title="MLEM permutation importance across layers"))
        ax.figure.savefig(args.plot, dpi=120)
        print(f"Wrote {args.plot}")


def fit(args):
    """MLEM on a user's features CSV and representations (.npy, or .npz layers); writes importances
    (held-out ones with --test-features/--test-representations) and weights CSVs."""
    features, reps, test = _fit_data(args)
    print(f"{len(features)} stimuli; features used ({features.shape[1]}): {', '.join(map(str, features.columns))}"
          + (f"; index column {args.index_col!r} not used" if args.index_col else ""))
    X, X_test, keywords = features, None if test is None else test[0], {}
    if args.distance == "precomputed":
        X, X_test, names = _precomputed_features(features, X_test)
        keywords["feature_names"] = names
    results, weights = {}, {}
    start = time.perf_counter()
    for layer, Y in reps.items():
        name = "" if layer is None else f"layer {layer}: "
        print(f"{name}representations {Y.shape}" + (" (distance matrix)" if args.distance == "precomputed" else ""))
        t0 = time.perf_counter()
        model = _mlem(args, verbose=not args.quiet).fit(X, Y, **keywords)
        tidy = model.score(tidy=True) if test is None else model.score(X_test, test[1][layer], tidy=True)
        print(f"{name}fitted in {time.perf_counter() - t0:.1f} s (batch {model.batch_size_}, {model.n_steps_} steps, "
              f"best score {model.best_score_:.4f}); "
              + (f"scored on {len(X_test)} held-out stimuli" if test else "scored on the training stimuli")
              + f", baseline Spearman {tidy['baseline'].mean():.4f}")
        results[layer], weights[layer] = tidy, model.get_weights()
    print(f"Total time: {time.perf_counter() - start:.1f} s")
    _write_fit_results(args, results, weights)


def simulate(args):
    """The synthetic benchmark; prints the table and whether MLEM beats FR-RSA-I; writes the figure."""
    from . import simulate as sim
    _check_output_folder(args.out, "--out")
    _check_output_folder(args.plot, "--plot")
    grid = dict(sim.QUICK) if args.quick else dict(noise_levels=sim.NOISE_LEVELS, seeds=tuple(range(5)),
                                                   n_stimuli=256, n_features=16)
    if args.noise:
        grid["noise_levels"] = args.noise
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
        raise UsageError(f"could not read {path} as a numpy .npz/.npy file: {err}") from err
    if isinstance(data, np.ndarray):
        return data
    with data:
        return {name: data[name] for name in data.files}


def _run_study(args, features, targets):
    """Cross-validation (--cv) and the permutation test (--n-null) of every target; print, write, plot."""
    from . import studies
    if args.cv == 0 and args.n_null == 0:
        raise UsageError("nothing to do: give --cv >= 2 and/or --n-null >= 1.")
    if args.cv == 1 or args.cv < 0 or args.n_null < 0:
        raise UsageError(f"--cv must be 0 (none) or >= 2 and --n-null >= 0; got {args.cv} and {args.n_null}.")
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise UsageError(f"the folder of --out ({os.path.dirname(os.path.abspath(args.out))}) does not exist.")
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
    features = read_features(args.features)
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

    p = commands.add_parser("fit", help="MLEM on your own features CSV and representations .npy/.npz",
                            description="MLEM on your own data. Importances (long form) go to --out, the "
                            "weights next to it (*_weights.csv).")
    p.add_argument("features", help="CSV, one row per stimulus, one column per feature")
    p.add_argument("representations", help=".npy array (n_stimuli, ...) of representations, or an .npz with one "
                   "array per layer (all fitted, or those named by --layers); with --distance precomputed, "
                   "(n_stimuli, n_stimuli) neural distance matrices")
    _add_model_options(p, distances=(*METRICS, "precomputed"))
    p.add_argument("--columns", metavar="A,B", help="comma-separated feature columns to use (default: all)")
    p.add_argument("--index-col", metavar="COLUMN", help="a column that names the stimuli (an index or ID), "
                   "not a feature: it is not fitted")
    p.add_argument("--layers", metavar="NAMES", help="comma-separated array names of an .npz to fit (default: all)")
    p.add_argument("--test-features", metavar="CSV", help="held-out stimuli's features: importances are "
                   "measured on them (needs --test-representations)")
    p.add_argument("--test-representations", metavar="NPY", help="held-out stimuli's representations (same form "
                   "as the training ones)")
    p.add_argument("--batch-size", type=_batch_size, default=None, metavar="N",
                   help="pairs per batch, or 'all' (every pair); default: estimated from the features")
    p.add_argument("--max-steps", type=_int_at_least(1), default=1000, metavar="N", help="training steps at most (default 1000)")
    p.add_argument("--memory", choices=("low", "medium", "high"), default="medium",
                   help="memory allowed for full batches and importance chunks (default medium)")
    p.add_argument("--out", default="fastmlem_results.csv", metavar="CSV", help="importances CSV (default %(default)s)")
    p.add_argument("--plot", metavar="FILE", help="write an importance chart")
    p.set_defaults(func=fit)

    p = commands.add_parser("simulate", help="the paper's synthetic benchmark (MLEM vs FR-RSA-I)")
    p.add_argument("--quick", action="store_true", help="the paper's sizes on a smaller grid: noise 0,1,2,3,5 x 3 seeds")
    p.add_argument("--noise", type=_noise_levels, help="comma-separated noise levels (>= 0)")
    p.add_argument("--seeds", type=_int_at_least(1), help="number of seeds")
    p.add_argument("--n-stimuli", type=_int_at_least(10), help="stimuli per dataset (default 256)")
    p.add_argument("--n-features", type=_int_at_least(1), help="binary features (default 16)")
    p.add_argument("--methods", default="MLEM,FR-RSA-I", help="from MLEM,FR-RSA-I,FR-RSA")
    p.add_argument("--max-steps", type=_int_at_least(1), default=1000)
    p.add_argument("--embedding", choices=("mds", "none"), default="mds",
                   help="mds: the paper's protocol; none: fit the noisy ground-truth dissimilarities directly "
                        "(a control that skips the MDS step)")
    p.add_argument("--plot", metavar="FILE", help="write the figure (error and steps vs noise)")
    p.add_argument("--out", metavar="CSV", help="write one row per fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=simulate)
    _add_study_parser(commands)
    return parser


def _report(message, status):
    print(f"error: {message}", file=sys.stderr)
    return status


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None):
    """Run one subcommand; returns the exit status (0 done, EXIT_USAGE = 2, EXIT_FAILURE = 1).

    The one place errors become messages and exit codes, for every subcommand: argparse's own errors
    and UsageError (raised by the subcommands and the file readers), and the library's ValueError /
    TypeError about the data, exit with 2 and no traceback; running out of memory or failing to write
    exits with 1; anything else is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)  # exits with 2 on a malformed command line
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # "warning: ..." lines, without source paths
        try:
            args.func(args)
        except (UsageError, ValueError, TypeError) as err:
            return _report(err, EXIT_USAGE)
        except MemoryError:
            return _report("out of memory; use fewer stimuli or dimensions, a smaller --batch-size, or --memory low.",
                           EXIT_FAILURE)
        except OSError as err:
            return _report(f"{err}; check that the output path is writable and the disk not full.", EXIT_FAILURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
