"""`python -m fastmlem ...` end to end in a subprocess, on the bundled data and on user files."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmlem", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_demo_runs_on_bundled_data(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("demo", "--layers", "embeddings,layer_2", "--quiet", "--n-permutations", "2",
              "--plot", "demo.png", "--out", "demo.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Mean permutation importance" in out.stdout and "layer_2" in out.stdout and "tense" in out.stdout
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    tidy = pd.read_csv(tmp_path / "demo.csv")
    assert set(tidy.columns) == {"layer", "permutation", "feature", "importance"} and len(tidy) == 2 * 2 * 6


def test_fit_on_user_files(tmp_path):
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"colour": rng.choice(["red", "blue"], 80), "size": rng.uniform(0, 1, 80)})
    Y = np.column_stack([(features.colour == "red") * 3.0, rng.normal(size=(80, 5))])
    features.to_csv(tmp_path / "features.csv", index=False)
    np.save(tmp_path / "reps.npy", Y)
    out = run("fit", "features.csv", "reps.npy", "--quiet", "--out", "res.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    tidy = pd.read_csv(tmp_path / "res.csv")
    assert tidy.groupby("feature").importance.mean().idxmax() == "colour"
    assert pd.read_csv(tmp_path / "res_weights.csv", index_col=0).shape == (2, 1)
    bad = run("fit", "features.csv", "reps.npy", "--columns", "shape", cwd=tmp_path)
    assert bad.returncode != 0 and "not in features.csv" in bad.stderr
    np.save(tmp_path / "short.npy", Y[:10])
    bad = run("fit", "features.csv", "short.npy", "--quiet", cwd=tmp_path)
    assert bad.returncode == 2 and "error:" in bad.stderr


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
    assert run("simulate", "--embedding", "pca", cwd=tmp_path).returncode == 2
