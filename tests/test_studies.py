"""Studies: cross-validation over targets x folds, permutation tests, Dask, CV-friendly estimators."""
import warnings

import numpy as np
import pandas as pd
import pytest

import fastmlem
from fastmlem import FRRSA, MLEM, studies
from fastmlem.encoding import ConstantFeatureWarning

FAST = dict(batch_size=200, max_steps=10, n_permutations=2)  # ~5 ms per fit + score at n = 30


def data(n=30, m=3, h=4, seed=0, signal=0.0, targets=1):
    """Uniform features; Y = noise (+ signal x feature 0 along one direction) for each target."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.uniform(size=(n, m)), columns=[f"f{k}" for k in range(m)])
    Ys = [rng.normal(size=(n, h)) + signal * X[["f0"]].to_numpy() @ np.ones((1, h)) for _ in range(targets)]
    return X, (Ys[0] if targets == 1 else Ys)


# ------------------------------------------------------------------------------ cross_validate
def test_cross_validate_fits_on_train_and_scores_held_out():
    X, Y = data()
    splits = [(np.arange(10, 30), np.arange(10)), (np.arange(20), np.arange(20, 30))]
    table = fastmlem.cross_validate(MLEM(**FAST), X, Y, cv=splits, random_state=3)
    assert list(table.columns[:7]) == ["target", "fold", "feature", "permutation", "importance", "baseline",
                                       "test_spearman"]
    assert len(table) == 2 * 3 * 2
    root = np.random.SeedSequence(3)
    for k, (train, test) in enumerate(splits):  # the oracle: the same fit by hand, seed of task (target 0, fold k)
        seed = studies._seed_of(studies._child(root, 1, 0, k))
        model = MLEM(**FAST, random_state=seed).fit(X.iloc[train], Y[train])
        tidy = model.score(X.iloc[test], Y[test], tidy=True)
        fold = table[table["fold"] == k].reset_index(drop=True)
        np.testing.assert_array_equal(fold["importance"], tidy["importance"])
        np.testing.assert_array_equal(fold["baseline"], tidy["baseline"])
        assert np.all(fold["test_spearman"] == tidy["baseline"].mean())


def test_targets_as_list_dict_and_stacked_array_and_reproducible():
    X, Ys = data(targets=2)
    kw = dict(cv=3, random_state=0)
    by_list = fastmlem.cross_validate(MLEM(**FAST), X, Ys, **kw)
    by_stack = fastmlem.cross_validate(MLEM(**FAST), X, np.stack(Ys), **kw)
    by_dict = fastmlem.cross_validate(MLEM(**FAST), X, {"a": Ys[0], "b": Ys[1]}, **kw)
    pd.testing.assert_frame_equal(by_list, by_stack)
    assert list(by_dict["target"].unique()) == ["a", "b"] and list(by_list["target"].unique()) == [0, 1]
    np.testing.assert_array_equal(by_dict["importance"], by_list["importance"])
    threads = fastmlem.cross_validate(MLEM(**FAST), X, Ys, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(by_list, threads, check_exact=True)  # same seed -> same table, any n_jobs
    other = fastmlem.cross_validate(MLEM(**FAST), X, Ys, cv=3, random_state=1)
    assert not np.array_equal(other["importance"], by_list["importance"])
    single = fastmlem.cross_validate(MLEM(**FAST), X, Ys[0], **kw)
    pd.testing.assert_frame_equal(single, by_list[by_list["target"] == 0].reset_index(drop=True))


def test_cross_validate_shares_one_batch_size_estimate(monkeypatch):
    X, Ys = data(n=40, targets=2)
    calls = []
    original = MLEM.estimate_batch_size
    monkeypatch.setattr(MLEM, "estimate_batch_size", lambda self, X_: calls.append(len(X_)) or original(self, X_))
    fastmlem.cross_validate(MLEM(max_steps=5, n_permutations=1, batch_size_min=50), X, Ys, cv=2, random_state=0)
    assert calls == [40]  # once, on all stimuli, not once per target x fold


def test_cross_validate_frrsa_and_groups():
    X, Y = data(n=40, signal=3.0)
    groups = np.repeat(np.arange(8), 5)
    frrsa = FRRSA(n_outer_splits=2, n_outer_repeats=1, n_inner_splits=2, n_inner_repeats=1, n_permutations=2)
    table = fastmlem.cross_validate(frrsa, X, Y, cv=4, groups=groups, random_state=0)
    assert table["fold"].nunique() == 4 and np.isfinite(table["importance"]).all()
    means = table.groupby("feature")["importance"].mean()
    assert means.idxmax() == "f0"


# ------------------------------------------------------------------------------ permutation_test
def test_p_values_are_uniform_without_signal():
    """No signal: P(p < 0.05) = 2/41 with n_null = 40 (p takes the values k/41); 600 feature x seed draws
    (6 feature tables x 10 independent targets x 10 features), ~2500 tiny fits."""
    tiny = MLEM(batch_size=100, max_steps=5, n_permutations=1)
    ps = []
    for seed in range(6):
        X, Ys = data(n=20, m=10, h=2, seed=seed, targets=10)
        ps.append(fastmlem.permutation_test(tiny, X, Ys, n_null=40, n_jobs=2, random_state=seed)["p_value"])
    ps = np.concatenate(ps)
    assert len(ps) == 600 and set(np.round(ps * 41).astype(int)) <= set(range(1, 42))
    assert 0.02 <= np.mean(ps < 0.05) <= 0.08
    assert 0.45 <= np.mean(ps) <= 0.58  # 21/41 = 0.512 in expectation (sd of the mean ~ 0.012)


def test_planted_feature_is_significant_and_same_seed_same_table():
    X, Y = data(n=40, signal=3.0)
    kw = dict(n_null=120, random_state=7)
    table = fastmlem.permutation_test(MLEM(**FAST), X, Y, **kw)
    p = table.set_index("feature")["p_value"]
    assert p["f0"] < 0.01 and p["f0"] == 1 / 121
    f0 = table.set_index("feature").loc["f0"]
    assert abs(f0["null_mean"]) < 0.2 * f0["importance"]  # the null refits lost the signal: Y was shuffled
    assert (p[["f1", "f2"]] > 0.05).all()
    pd.testing.assert_frame_equal(table, fastmlem.permutation_test(MLEM(**FAST), X, Y, n_jobs=2, **kw),
                                  check_exact=True)


def test_bootstrap_intervals_and_benjamini_hochberg():
    X, Y = data(n=40, signal=3.0)
    table = fastmlem.permutation_test(MLEM(**FAST), X, Y, n_null=9, n_boot=20, random_state=0)
    assert list(table.columns) == ["target", "feature", "importance", "null_mean", "p_value", "p_adjusted",
                                   "ci_low", "ci_high"]
    assert (table["ci_low"] <= table["ci_high"]).all()
    row = table.set_index("feature").loc["f0"]
    assert row["ci_low"] > 0.1 and row["ci_low"] <= row["importance"] <= row["ci_high"]
    p = np.random.default_rng(0).uniform(size=50) ** 2
    scipy_stats = pytest.importorskip("scipy.stats")
    if hasattr(scipy_stats, "false_discovery_control"):
        np.testing.assert_allclose(studies.benjamini_hochberg(p), scipy_stats.false_discovery_control(p))
    np.testing.assert_allclose(studies.benjamini_hochberg([0.01, 0.04, 0.03, 0.5]), [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_null_shuffles_rows_and_columns_of_precomputed_distances():
    X, Y = data(n=30, signal=3.0)
    D = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    Xd = np.abs(X.to_numpy()[:, None, :] - X.to_numpy()[None, :, :])
    kw = dict(n_null=19, random_state=0)
    pre = fastmlem.permutation_test(MLEM(distance="precomputed", **FAST), Xd, D, **kw)
    assert pre["p_value"].iloc[0] == 1 / 20 and pre["importance"].idxmax() == 0  # a symmetric shuffle: it ran


# ------------------------------------------------------------------------------ Dask
def test_dask_local_cluster_equals_sequential():
    distributed = pytest.importorskip("distributed")
    X, Ys = data(n=30, targets=2)
    kw = dict(random_state=5)
    cv_seq = fastmlem.cross_validate(MLEM(**FAST), X, Ys, cv=3, **kw)
    pt_seq = fastmlem.permutation_test(MLEM(**FAST), X, Ys, n_null=9, n_boot=3, **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        scattered, submitted, scatter, submit = [], [], client.scatter, client.submit
        client.scatter = lambda data, **k: scattered.append(data) or scatter(data, **k)
        client.submit = lambda func, *args, **k: submitted.append(args) or submit(func, *args, **k)
        cv_dask = fastmlem.cross_validate(MLEM(**FAST), X, Ys, cv=3, backend=client, **kw)
        pt_dask = fastmlem.permutation_test(MLEM(**FAST), X, Ys, n_null=9, n_boot=3, backend="dask", **kw)
    assert len(scattered) == 2 * (1 + len(Ys)) and scattered[0] is X  # X and each Y sent once per study
    assert len(submitted) == 2 * 3 + 2 * (1 + 9 + 3)  # one task per target x fold, per target x refit
    assert not any(isinstance(a, (pd.DataFrame, np.ndarray)) and np.size(a) > 30 for args in submitted for a in args)
    pd.testing.assert_frame_equal(cv_seq, cv_dask, check_exact=True)
    pd.testing.assert_frame_equal(pt_seq, pt_dask, check_exact=True)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call,err,match", [
    (lambda X, Y: fastmlem.cross_validate(MLEM(**FAST), X, [Y, Y[:-1]]), ValueError, "target 1 has 29"),
    (lambda X, Y: fastmlem.cross_validate(MLEM(**FAST), X, Y, cv=15), ValueError, "at least 3"),
    (lambda X, Y: fastmlem.cross_validate(MLEM(**FAST), X, Y, cv=[(np.arange(28), np.arange(28, 30))]),
     ValueError, "2 held-out"),
    (lambda X, Y: fastmlem.cross_validate(MLEM(**FAST), X, Y, cv=1), ValueError, ">= 2 folds"),
    (lambda X, Y: fastmlem.permutation_test(MLEM(**FAST), X, Y, n_null=0), ValueError, "n_null"),
    (lambda X, Y: fastmlem.permutation_test(MLEM(**FAST), X, {1: Y}), TypeError, "str"),
    (lambda X, Y: fastmlem.permutation_test(MLEM(**FAST), X, Y, backend="spark"), ValueError, "unknown backend"),
    (lambda X, Y: fastmlem.permutation_test(MLEM(**FAST), X, Y, random_state=-1), ValueError, "random_state"),
    (lambda X, Y: fastmlem.permutation_test(MLEM(**FAST), X, []), ValueError, "no targets"),
])
def test_bad_input_fails_before_any_work(monkeypatch, call, err, match):
    def no_work(*args, **kwargs):
        raise AssertionError("a fit started before the input was checked")
    monkeypatch.setattr(MLEM, "fit", no_work)
    monkeypatch.setattr(MLEM, "estimate_batch_size", no_work)
    X, Y = data()
    with pytest.raises(err, match=match):
        call(X, Y)


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(studies, "_CONNECT_TIMEOUT", "1s")
    monkeypatch.setattr(MLEM, "estimate_batch_size", lambda *a: (_ for _ in ()).throw(AssertionError("work")))
    X, Y = data()
    with pytest.raises(ConnectionError, match="could not reach a Dask scheduler at 'tcp://127.0.0.1:9'"):
        fastmlem.cross_validate(MLEM(), X, Y, backend="tcp://127.0.0.1:9")


def test_backend_dask_without_client_says_what_to_do():
    distributed = pytest.importorskip("distributed")
    try:
        distributed.Client.current()
        pytest.skip("a dask Client is already running")
    except ValueError:
        pass
    X, Y = data()
    with pytest.raises(ValueError, match="no.*start one"):
        fastmlem.cross_validate(MLEM(**FAST), X, Y, backend="dask")


# ------------------------------------------------------------------------------ CV-friendly estimators
@pytest.mark.parametrize("interactions,form", [(False, "reference"), (True, "reference"), (True, "quadratic")])
def test_constant_feature_warns_and_gets_weight_and_importance_zero(interactions, form):
    X, Y = data(n=30, signal=3.0)
    X = X.assign(flat=1.0)
    with pytest.warns(ConstantFeatureWarning, match="'flat'"):
        model = MLEM(**FAST, interactions=interactions, spd_form=form, random_state=0).fit(X, Y)
    W = model.get_weights().to_numpy()
    if interactions:
        assert np.all(W[3, :] == 0) and np.all(np.nan_to_num(W[:, 3]) == 0)
        assert np.isclose(np.nansum(W ** 2) + np.nansum(np.tril(np.nan_to_num(W), -1) ** 2), 1.0)
    else:
        assert W[3, 0] == 0 and np.isclose(np.linalg.norm(W), 1.0)
    imp = model.score(tidy=True)
    flat = imp["feature"].str.contains("flat")
    assert (imp.loc[flat, "importance"] == 0).all() and (imp.loc[~flat, "importance"] != 0).any()
    X_new, Y_new = data(n=30, seed=1)  # 'flat' varies among new stimuli: weight 0 still gives importance 0
    imp_new = model.score(X_new.assign(flat=np.linspace(0, 1, 30)), Y_new, tidy=True)
    assert (imp_new.loc[imp_new["feature"].str.contains("flat"), "importance"] == 0).all()


def test_constant_features_errors_and_frrsa():
    X, Y = data()
    with pytest.raises(ValueError, match="every feature"):
        MLEM(**FAST).fit(X.assign(f0=0.0, f1=0.0, f2=0.0), Y)
    with pytest.warns(ConstantFeatureWarning, match="'f1'"):
        model = FRRSA(n_outer_splits=2, n_outer_repeats=1, n_inner_splits=2, n_inner_repeats=1).fit(X.assign(f1=3.0), Y)
    assert model.coef_[1] == 0 and model.weights_[1] == 0


def test_feature_constant_within_a_training_fold_finishes_the_loop():
    X, Y = data(n=30, signal=3.0)
    X = X.assign(rare=np.r_[np.zeros(25), np.ones(5)])
    splits = [(np.arange(22), np.arange(22, 30)), (np.arange(5, 30), np.arange(5))]  # 'rare' varies in fold 0's test
    with pytest.warns(ConstantFeatureWarning, match=r"'rare' is constant among the training stimuli of fold\(s\) \[0\]"):
        table = fastmlem.cross_validate(MLEM(**FAST), X, Y, cv=splits, random_state=0)
    rare = table[table["feature"] == "rare"]
    assert (rare.loc[rare["fold"] == 0, "importance"] == 0).all()


def test_spearman_scorer_with_scikit_learn():
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    X, Y = data(n=40, signal=3.0)
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(MLEM(**FAST, random_state=0), X, Y, cv=cv, scoring=fastmlem.spearman_scorer)
    assert scores.shape == (3,) and (scores > 0.3).all()
    train, test = next(cv.split(X))
    model = MLEM(**FAST, random_state=0).fit(X.iloc[train], Y[train])
    assert scores[0] == model.score(X.iloc[test], Y[test], tidy=True)["baseline"].mean()
    search = GridSearchCV(MLEM(**FAST, random_state=0), {"lr": [0.001, 0.1]}, cv=cv,
                          scoring=fastmlem.spearman_scorer).fit(X, Y)
    assert search.best_params_["lr"] in (0.001, 0.1) and np.isfinite(search.best_score_)


# ------------------------------------------------------------------------------ summary, figure, CLI
def test_summary_figure_and_table_export(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from fastmlem import plot
    X, Ys = data(n=30, signal=3.0, targets=3)
    Ys = {f"layer_{i}": Y for i, Y in zip([2, 0, 1], Ys)}  # not in sorted order
    cv = fastmlem.cross_validate(MLEM(**FAST), X, Ys, cv=3, random_state=0)
    test = fastmlem.permutation_test(MLEM(**FAST), X, Ys, n_null=19, n_boot=5, random_state=0)
    summary = studies.summarize(cv, test)
    assert len(summary) == 9 and {"cv_importance", "cv_sd", "test_spearman", "p_value", "ci_low"} <= set(summary)
    assert list(summary["target"].unique()) == list(Ys) and list(summary["feature"].unique()) == list(X.columns)
    first = summary.iloc[0]
    assert first["cv_importance"] == pytest.approx(cv.query("target == 'layer_2' and feature == 'f0'")["importance"].mean())
    assert first["p_value"] == test.query("target == 'layer_2' and feature == 'f0'")["p_value"].item()
    ax = plot.study_importance(summary)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(Ys)
    assert len([t for t in ax.texts if t.get_text() == "*"]) == (summary["p_adjusted"] < 0.05).sum()
    ax = plot.study_importance(studies.summarize(cv))  # fold spread, no marks
    assert not ax.texts
    summary.to_csv(tmp_path / "t.csv", index=False)
    assert pd.read_csv(tmp_path / "t.csv").shape == summary.shape


def test_cli_study(tmp_path, capsys):
    from fastmlem.__main__ import main
    X, Ys = data(n=30, signal=3.0, targets=2)
    X.to_csv(tmp_path / "f.csv", index=False)
    np.savez(tmp_path / "reps.npz", early=Ys[0], late=Ys[1])
    out, fig = tmp_path / "res.csv", tmp_path / "fig.png"
    code = main(["study", str(tmp_path / "f.csv"), str(tmp_path / "reps.npz"), "--cv", "3", "--n-null", "9",
                 "--jobs", "2", "--max-steps", "10", "--out", str(out), "--plot", str(fig), "--quiet"])
    assert code == 0
    table = pd.read_csv(out)
    assert set(table["target"]) == {"early", "late"} and {"cv_importance", "p_value", "p_adjusted"} <= set(table)
    assert (tmp_path / "res_folds.csv").exists() and fig.stat().st_size > 0
    assert main(["study", str(tmp_path / "f.csv"), str(tmp_path / "reps.npz"), "--n-null", "0", "--cv", "2",
                 "--max-steps", "5", "--out", str(out), "--quiet"]) == 0
    assert "p_value" not in pd.read_csv(out)
    np.savez(tmp_path / "bad.npz", a=Ys[0][:20])
    assert main(["study", str(tmp_path / "f.csv"), str(tmp_path / "bad.npz"), "--quiet"]) == 2
    assert "one row per stimulus" in capsys.readouterr().err


def test_cli_demo_cv(capsys):
    from fastmlem.__main__ import main
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["demo", "--cv", "2", "--layers", "layer_3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layer_3" in out and "tense" in out
