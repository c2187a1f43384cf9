"""`python -m fastmlem ...` end to end in a subprocess, on the bundled data and on user files.

Exit codes: 0 done, 2 the command line or an input file is wrong, 1 the run failed otherwise.
"""
import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlem", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def usage_error(out, *fragments):
    """Exit status 2, one 'error:' message holding every fragment, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "error:" in out.stderr and "Traceback" not in out.stderr, out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, (fragment, out.stderr)


@pytest.fixture
def files(tmp_path):
    """80 stimuli: a features CSV, representations (.npy, a 2-layer .npz), and a train/test split whose
    test sizes span a narrower range than the training ones (so they must be encoded on the training scale)."""
    rng = np.random.default_rng(0)
    size = np.concatenate([rng.uniform(0, 1, 60), rng.uniform(0.3, 0.6, 20)])
    features = pd.DataFrame({"colour": rng.choice(["red", "blue"], 80), "size": size})
    Y = np.column_stack([(features.colour == "red") * 1.0, features["size"] * 4.0, rng.normal(size=(80, 5))])
    features.to_csv(tmp_path / "features.csv", index=False)
    features.to_csv(tmp_path / "indexed.csv")  # pandas' default: an 'Unnamed: 0' row-number column
    np.save(tmp_path / "reps.npy", Y)
    np.savez(tmp_path / "layers.npz", early=Y[:, 2:], late=Y)
    features[:60].to_csv(tmp_path / "train.csv", index=False)
    features[60:].to_csv(tmp_path / "test.csv", index=False)
    np.save(tmp_path / "train.npy", Y[:60])
    np.save(tmp_path / "test.npy", Y[60:])
    return tmp_path, features, Y


def test_demo_runs_on_bundled_data(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("demo", "--layers", "embeddings,layer_2", "--quiet", "--n-permutations", "2",
              "--plot", "demo.png", "--out", "demo.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Mean permutation importance" in out.stdout and "layer_2" in out.stdout and "tense" in out.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    tidy = pd.read_csv(tmp_path / "demo.csv")
    assert set(tidy.columns) == {"layer", "permutation", "feature", "importance"} and len(tidy) == 2 * 2 * 6


def test_fit_on_user_files(files):
    tmp_path, _, _ = files
    out = run("fit", "features.csv", "reps.npy", "--quiet", "--out", "res.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "features used (2): colour, size" in out.stdout
    tidy = pd.read_csv(tmp_path / "res.csv")
    assert tidy.groupby("feature").importance.mean().idxmax() == "size"
    assert pd.read_csv(tmp_path / "res_weights.csv", index_col=0).shape == (2, 1)
    np.save(tmp_path / "short.npy", np.load(tmp_path / "reps.npy")[:10])
    usage_error(run("fit", "features.csv", "short.npy", "--quiet", cwd=tmp_path), "80 stimuli", "10 rows")


def test_progress_bars_stay_out_of_a_redirected_stderr(files):
    """Without --quiet, but stderr is a pipe (as in a batch job's log): no bar lines."""
    tmp_path, _, _ = files
    out = run("fit", "features.csv", "reps.npy", "--max-steps", "30", "--n-permutations", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Fitting MLEM" not in out.stderr and "it/s" not in out.stderr and "Permutation importance" not in out.stderr


@pytest.mark.parametrize("tty", [True, False])
def test_progress_helper_draws_only_on_a_terminal(monkeypatch, tty):
    from fastmlem._progress import progress

    class Stream(io.StringIO):
        def isatty(self):
            return tty

    monkeypatch.setattr(sys, "stderr", Stream())
    list(progress(range(5), desc="work", verbose=True))
    assert ("work" in sys.stderr.getvalue()) == tty
    list(progress(range(5), desc="silent", verbose=False))
    assert "silent" not in sys.stderr.getvalue()


def test_new_fit_options_reach_the_model(files):
    tmp_path, _, _ = files
    out = run("fit", "features.csv", "reps.npy", "--quiet", "--batch-size", "300", "--max-steps", "7",
              "--memory", "low", "--n-permutations", "3", "--out", "o.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "batch 300, 7 steps" in out.stdout  # patience 50 > 7: exactly max_steps steps
    assert len(pd.read_csv(tmp_path / "o.csv")) == 2 * 3
    usage_error(run("fit", "features.csv", "reps.npy", "--batch-size", "2", cwd=tmp_path), "--batch-size", ">= 3")
    usage_error(run("fit", "features.csv", "reps.npy", "--memory", "huge", cwd=tmp_path), "--memory")


def test_index_and_id_columns_are_named_and_can_be_dropped(files):
    tmp_path, features, _ = files
    out = run("fit", "indexed.csv", "reps.npy", "--quiet", "--out", "warned.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "'Unnamed: 0'" in out.stderr and "--index-col" in out.stderr and "row number" in out.stderr
    assert "features used (3): Unnamed: 0, colour, size" in out.stdout
    dropped = run("fit", "indexed.csv", "reps.npy", "--quiet", "--index-col", "Unnamed: 0", "--out", "dropped.csv",
                  cwd=tmp_path)
    assert dropped.returncode == 0 and "warning" not in dropped.stderr, dropped.stderr
    assert "features used (2): colour, size" in dropped.stdout
    plain = run("fit", "features.csv", "reps.npy", "--quiet", "--out", "plain.csv", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dropped.csv"), pd.read_csv(tmp_path / "plain.csv"))
    # a text ID column is named too; a continuous feature whose values all differ is not
    features.assign(word=[f"w{k}" for k in range(80)]).to_csv(tmp_path / "ids.csv", index=False)
    out = run("fit", "ids.csv", "reps.npy", "--quiet", "--max-steps", "5", cwd=tmp_path)
    assert out.returncode == 0 and "'word'" in out.stderr and "'size'" not in out.stderr, out.stderr
    usage_error(run("fit", "features.csv", "reps.npy", "--index-col", "id", cwd=tmp_path), "'id'", "colour")


def test_precomputed_distances_give_the_same_fit_as_the_representations(files):
    tmp_path, _, Y = files
    np.save(tmp_path / "train_rdm.npy", squareform(pdist(Y[:60])))
    np.save(tmp_path / "test_rdm.npy", squareform(pdist(Y[60:])))
    common = ("--quiet", "--n-permutations", "2", "--test-features", "test.csv")
    direct = run("fit", "train.csv", "train.npy", *common, "--test-representations", "test.npy",
                 "--out", "direct.csv", cwd=tmp_path)
    pre = run("fit", "train.csv", "train_rdm.npy", "--distance", "precomputed", *common,
              "--test-representations", "test_rdm.npy", "--out", "pre.csv", cwd=tmp_path)
    assert direct.returncode == 0 and pre.returncode == 0, direct.stderr + pre.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "direct.csv"), pd.read_csv(tmp_path / "pre.csv"))
    usage_error(run("fit", "train.csv", "train.npy", "--distance", "precomputed", cwd=tmp_path), "(n, n)")


def test_held_out_scoring_matches_the_python_api(files):
    from fastmlem import MLEM
    tmp_path, features, Y = files
    out = run("fit", "train.csv", "train.npy", "--quiet", "--seed", "4", "--test-features", "test.csv",
              "--test-representations", "test.npy", "--out", "held.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "scored on 20 held-out stimuli" in out.stdout
    model = MLEM(random_state=4).fit(features[:60], Y[:60])
    expected = model.score(features[60:].reset_index(drop=True), Y[60:], tidy=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "held.csv"), expected, check_dtype=False)
    usage_error(run("fit", "train.csv", "train.npy", "--test-features", "test.csv", cwd=tmp_path),
                "--test-representations")
    usage_error(run("fit", "train.csv", "layers.npz", "--test-features", "test.csv", "--test-representations",
                    "test.npy", cwd=tmp_path), "same form")


def test_several_layers_from_one_npz(files):
    tmp_path, _, _ = files
    out = run("fit", "features.csv", "layers.npz", "--quiet", "--n-permutations", "2", "--out", "layers.csv",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "per layer" in out.stdout
    tidy = pd.read_csv(tmp_path / "layers.csv")
    assert list(tidy.layer.unique()) == ["early", "late"] and len(tidy) == 2 * 2 * 2
    weights = pd.read_csv(tmp_path / "layers_weights.csv")
    assert list(weights.columns) == ["layer", "feature", "Weight"] and len(weights) == 4
    single = run("fit", "features.csv", "reps.npy", "--quiet", "--n-permutations", "2", "--out", "late.csv",
                 cwd=tmp_path)  # reps.npy is the 'late' layer: same numbers
    assert single.returncode == 0, single.stderr
    late = tidy[tidy.layer == "late"].drop(columns="layer").reset_index(drop=True)
    pd.testing.assert_frame_equal(late, pd.read_csv(tmp_path / "late.csv"))
    picked = run("fit", "features.csv", "layers.npz", "--quiet", "--layers", "late", "--max-steps", "5",
                 "--out", "picked.csv", cwd=tmp_path)
    assert picked.returncode == 0 and set(pd.read_csv(tmp_path / "picked.csv").layer) == {"late"}
    usage_error(run("fit", "features.csv", "layers.npz", "--layers", "middle", cwd=tmp_path), "middle", "early")
    usage_error(run("fit", "features.csv", "reps.npy", "--layers", "late", cwd=tmp_path), ".npz")


def test_wrong_files_say_what_to_do(files):
    tmp_path, _, _ = files
    usage_error(run("fit", "missing.csv", "reps.npy", cwd=tmp_path), "'missing.csv' does not exist")
    usage_error(run("fit", "features.csv", "missing.npy", cwd=tmp_path), "'missing.npy' does not exist")
    swapped = run("fit", "reps.npy", "features.csv", cwd=tmp_path)
    usage_error(swapped, "numpy array file, not a CSV", "FEATURES.csv REPS.npy")
    assert "codec" not in swapped.stderr
    (tmp_path / "text.npy").write_text("0.1,0.2\n0.3,0.4\n")
    text = run("fit", "features.csv", "text.npy", cwd=tmp_path)
    usage_error(text, "not a numpy .npy/.npz file", "text or CSV", "numpy.save")
    assert "pickle" not in text.stderr
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 80, dtype=object), allow_pickle=True)
    usage_error(run("fit", "features.csv", "objects.npy", cwd=tmp_path), "Python objects", "numeric array")
    (tmp_path / "latin.csv").write_bytes("colour,size\ncafé,1\nthé,2\nlait,3\n".encode("latin-1"))
    usage_error(run("fit", "latin.csv", "reps.npy", cwd=tmp_path), "not a UTF-8 text CSV")
    (tmp_path / "empty.csv").write_text("")
    usage_error(run("fit", "empty.csv", "reps.npy", cwd=tmp_path), "is empty")
    usage_error(run("fit", ".", "reps.npy", cwd=tmp_path), "is a folder")
    usage_error(run("fit", "features.csv", "reps.npy", "--out", "nowhere/res.csv", cwd=tmp_path), "does not exist")
    usage_error(run("fit", "features.csv", "reps.npy", "--columns", "shape", cwd=tmp_path), "not in features.csv")


@pytest.mark.parametrize("args, fragments", [
    (("fit", "features.csv", "reps.npy", "--soft-rank-strength", "autoo"), ("'auto' or a positive number",)),
    (("fit", "features.csv", "reps.npy", "--n-permutations", "0"), ("--n-permutations", ">= 1")),
    (("fit", "features.csv"), ("representations",)),
    (("demo", "--layers", "layer_9"), ("layer_9", "embeddings")),
    (("simulate", "--seeds", "0"), ("--seeds", ">= 1")),
    (("simulate", "--noise", "-1"), ("noise levels must be >= 0",)),
    (("simulate", "--embedding", "pca"), ("--embedding",)),
])
def test_usage_errors_exit_2_with_a_message(files, args, fragments):
    out = run(*args, cwd=files[0])
    usage_error(out, *fragments)
    assert "_strength" not in out.stderr and "_int_at_least" not in out.stderr


def test_failures_exit_1(files, monkeypatch, capsys):
    """Running out of memory is a failure (1), not a usage error, and says what to try."""
    from fastmlem import __main__ as cli
    from fastmlem.mlem import MLEM

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(MLEM, "fit", out_of_memory)
    monkeypatch.chdir(files[0])
    assert cli.main(["fit", "features.csv", "reps.npy", "--quiet"]) == cli.EXIT_FAILURE == 1
    assert "out of memory" in capsys.readouterr().err


def test_simulate_small_grid(tmp_path):
    out = run("simulate", "--noise", "0,2", "--seeds", "1", "--n-stimuli", "40", "--n-features", "3",
              "--max-steps", "100", "--quiet", "--out", "sim.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MLEM vs FR-RSA-I" in out.stdout
    assert len(pd.read_csv(tmp_path / "sim.csv")) == 4
    control = run("simulate", "--noise", "0", "--seeds", "1", "--n-stimuli", "30", "--n-features", "3",
                  "--max-steps", "50", "--quiet", "--embedding", "none", "--out", "none.csv", cwd=tmp_path)
    assert control.returncode == 0, control.stderr
    assert "embedding none" in control.stdout and len(pd.read_csv(tmp_path / "none.csv")) == 2
