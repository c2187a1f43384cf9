"""MLEM estimator: recovery of known weights, reproducibility, sklearn conventions, bad inputs."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from fastmlem import MLEM


def simulate(n=300, m=4, weights=(1.0, 0.5, 0.0, 0.0), noise=0.3, seed=0, interaction=0.0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], n) for k in range(m)}).astype("string")
    codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
    Y = codes * np.sqrt(np.asarray(weights)) * 3
    if interaction:
        Y = np.column_stack([Y, interaction * codes[:, 0] * codes[:, 1] * 3])
    return X, np.column_stack([Y, noise * rng.normal(size=(n, 50))])


def test_recovers_diagonal_weights_and_importances():
    X, Y = simulate()
    model = MLEM(random_state=0, batch_size=4000).fit(X, Y)
    w = model.get_weights()["Weight"]
    assert w["f0"] > w["f1"] > max(w["f2"], w["f3"])
    imp, base = model.score()
    assert imp.shape == (5, 4) and base.shape == (20,) and base.name == "spearman"
    mean = imp.mean()
    assert mean["f0"] > mean["f1"] > 0.01 > abs(mean["f2"])
    tidy = model.score(tidy=True)
    assert list(tidy.columns) == ["feature", "permutation", "importance", "baseline"] and len(tidy) == 20


def test_interactions_spd_and_free():
    X, Y = simulate(interaction=1.0)
    spd = MLEM(interactions=True, random_state=1, batch_size=4000, max_steps=300).fit(X, Y)
    W = spd.get_weights()
    assert W.shape == (4, 4) and np.isnan(W.iloc[0, 1])
    full = np.nan_to_num(W.to_numpy()) + np.tril(np.nan_to_num(W.to_numpy()), -1).T
    assert np.linalg.eigvalsh(full).min() > -1e-12
    imp, _ = spd.score()
    assert "f1 x f0" in imp.columns and len(imp.columns) == 10
    free = MLEM(interactions=True, spd=False, random_state=1, batch_size=4000, max_steps=300).fit(X, Y)
    assert np.isclose(np.linalg.norm(free.weights_), 1.0)


def test_seed_reproducibility_and_clone():
    X, Y = simulate(n=100)
    a = MLEM(random_seed=3, batch_size=1000, max_steps=50).fit(X, Y)
    b = clone(a).fit(X, Y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    pd.testing.assert_frame_equal(a.score()[0], b.score()[0])
    c = MLEM(random_state=4, batch_size=1000, max_steps=50).fit(X, Y)
    assert not np.array_equal(a.weights_, c.weights_)
    assert clone(a).get_params()["random_seed"] == 3


def test_best_weights_are_returned():
    """Replaying the best step with the returned weights gives exactly the best score (the step is
    a deterministic function of the batch, the weights and the running min-max)."""
    from fastmlem import ops
    X, Y = simulate(n=100)
    model = MLEM(random_state=0, batch_size=500, max_steps=40, patience=1000, lr=0.5, weights_from="best").fit(X, Y)
    best = int(np.argmax(model.history_))
    assert model.best_score_ == model.history_[best] and best < model.n_steps_ - 1  # best is not the last
    source = model._training_source()
    step = ops.mlem_step(source.X, source.targets, False, 0.0, model.batch_size_, model._seed(), metric=source.metric)
    lo, hi = np.inf, -np.inf
    for stream in range(best):  # the running min-max of the neural distances does not depend on w
        _, _, lo, hi = step(stream, model.weights_, lo, hi)
    assert step(best, model.weights_, lo, hi)[0] == model.history_[best]


def test_auto_strength_tracks_spearman():
    X, Y = simulate(n=200)
    model = MLEM(random_state=0, batch_size=3000, soft_rank_strength="auto", max_steps=100).fit(X, Y)
    assert model.get_weights()["Weight"].idxmax() == "f0"


def test_inputs_not_modified():
    X, Y = simulate(n=60)
    X0, Y0 = X.copy(), Y.copy()
    MLEM(random_state=0, batch_size=300, max_steps=5).fit(X, Y).score(X, Y)
    pd.testing.assert_frame_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


@pytest.mark.parametrize("distance, twin, imp_atol", [
    ("manhattan", lambda a, b: np.abs(a - b).sum(1), 0.0),
    ("euclidean", lambda a, b: np.sqrt(((a - b) ** 2).sum(1)), 0.0),
    ("norm_diff", lambda a, b: np.abs(np.linalg.norm(a, axis=1) - np.linalg.norm(b, axis=1)), 0.0),
    # the callable's rounding differs from the kernel's: a few tied distances split differently
    ("cosine", lambda a, b: 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), 1e-3),
])
def test_named_distances_give_the_model_of_their_callable(distance, twin, imp_atol):
    """The named distance (condensed RDM, fused C++ step) and the same distance as a callable
    (composed numpy path) fit the same model and give the same importances."""
    X, Y = simulate(n=60)
    kw = dict(random_state=0, batch_size=300, max_steps=30)
    named, call = MLEM(distance=distance, **kw).fit(X, Y), MLEM(distance=twin, **kw).fit(X, Y)
    np.testing.assert_allclose(named.history_, call.history_, atol=1e-12)
    np.testing.assert_allclose(named.weights_, call.weights_, atol=1e-12)
    np.testing.assert_allclose(named.score()[0].to_numpy(), call.score()[0].to_numpy(), atol=imp_atol)


def test_precomputed_manhattan_gives_the_model_of_features():
    X, Y = simulate(n=40)
    codes = X.apply(lambda s: pd.Categorical(s).codes).to_numpy(float)
    Xd = np.abs(codes[:, None, :] - codes[None, :, :])
    D = np.abs(Y[:, None] - Y[None]).sum(-1)
    kw = dict(random_state=0, batch_size=300, max_steps=20)
    pre = MLEM(distance="precomputed", **kw).fit(Xd, D, feature_names=list(X.columns))
    direct = MLEM(distance="manhattan", **kw).fit(X, Y)
    np.testing.assert_allclose(pre.weights_, direct.weights_, atol=1e-12)
    pd.testing.assert_frame_equal(pre.score()[0], direct.score()[0], atol=1e-12)


@pytest.mark.parametrize("interactions", [False, True])
def test_precomputed_gives_the_same_model_as_features(interactions):
    """Per-feature distance matrices + a neural RDM are the same data as features + representations."""
    X, Y = simulate(n=60)
    codes = X.apply(lambda s: pd.Categorical(s).codes).to_numpy(float)
    Xd = np.minimum(np.abs(codes[:, None, :] - codes[None, :, :]), 1.0)
    D = np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    kw = dict(random_state=2, batch_size=400, max_steps=40, n_permutations=3, interactions=interactions)
    direct = MLEM(**kw).fit(X, Y)
    pre = MLEM(distance="precomputed", **kw).fit(Xd, D, feature_names=list(X.columns))
    np.testing.assert_allclose(pre.weights_, direct.weights_, atol=1e-6)
    np.testing.assert_allclose(pre.score()[0].to_numpy(), direct.score()[0].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("make,err,match", [
    (lambda X, Y: (X, Y[:-1]), ValueError, "rows"),
    (lambda X, Y: (X.iloc[:2], Y[:2]), ValueError, "at least 3"),
    (lambda X, Y: (X, np.where(np.arange(Y.size).reshape(Y.shape) == 5, np.nan, Y)), ValueError, "NaN"),
    (lambda X, Y: (pd.DataFrame({"c": ["same"] * len(Y), "d": 1.0}), Y), ValueError, "every feature"),
    (lambda X, Y: (pd.DataFrame(index=range(len(Y))), Y), ValueError, "empty"),
])
def test_bad_inputs(make, err, match):
    X, Y = simulate(n=30)
    with pytest.raises(err, match=match):
        MLEM(batch_size=100, max_steps=2).fit(*make(X, Y))


def test_bad_params_and_unfitted():
    X, Y = simulate(n=30)
    with pytest.raises(ValueError, match="unknown distance"):
        MLEM(distance="chebyshev").fit(X, Y)
    with pytest.raises(RuntimeError, match="fit"):
        MLEM().score()
    rng = np.random.default_rng(0)
    Xd = np.abs(rng.normal(size=(30, 1, 2)) - rng.normal(size=(1, 30, 2)))
    Xd[np.arange(30), np.arange(30)] = 0.0
    asymmetric = rng.random((30, 30))
    np.fill_diagonal(asymmetric, 0.0)
    with pytest.raises(ValueError, match="symmetric"):
        MLEM(distance="precomputed").fit(Xd, asymmetric)
    D = (asymmetric + asymmetric.T) / 2
    with pytest.raises(ValueError, match="zero diagonal.*1 - S"):  # a similarity matrix
        MLEM(distance="precomputed").fit(Xd, 1.0 - D)
    with pytest.raises(ValueError, match="X\\[:, :, k\\] must have a zero diagonal"):
        MLEM(distance="precomputed").fit(Xd + 0.5, D)
    with pytest.raises(ValueError, match="all 0"):
        MLEM(distance="precomputed").fit(Xd, np.zeros((30, 30)))


def test_batch_size_all_uses_every_pair_once():
    X, Y = simulate(n=60)
    model = MLEM(random_state=0, batch_size="all", max_steps=30).fit(X, Y)
    assert model.batch_size_ == 60 * 59 // 2
    # full batch: every step sees the same pairs, so the score history is deterministic
    again = MLEM(random_state=0, batch_size="all", max_steps=30).fit(X, Y)
    np.testing.assert_array_equal(model.history_, again.history_)
    with pytest.raises(ValueError, match="batch_size='all' needs"):
        MLEM(batch_size="all", memory="low", interactions=True).fit(*simulate(n=3000, m=12, weights=[1.0] * 12))


@pytest.mark.parametrize("memory", ["low", "medium", "high"])
def test_memory_setting_gives_the_same_importances(memory):
    X, Y = simulate(n=100)
    model = MLEM(random_state=0, batch_size=500, max_steps=20, memory=memory).fit(X, Y)
    reference = MLEM(random_state=0, batch_size=500, max_steps=20, memory="low").fit(X, Y)
    pd.testing.assert_frame_equal(model.score()[0], reference.score()[0])
    with pytest.raises(ValueError, match="memory must be"):
        MLEM(memory="huge").fit(X, Y)


def test_score_matches_numpy_permutation_importance_twin():
    """MLEM.score (one fused C++ call) == numpy_backend.permutation_importance on the raw Y."""
    from fastmlem import numpy_backend as nb
    X, Y = simulate(n=80)
    model = MLEM(random_state=3, batch_size=400, max_steps=20, n_permutations=2).fit(X, Y)
    imp, base = model.score()
    seed = model._seed()
    b, p = nb.permutation_importance(model.X_, model.Y_, model.weights_, False, 0.0, 400, seed, 2**32, seed + 1, 2)
    np.testing.assert_allclose(base, b, atol=1e-12)
    np.testing.assert_allclose(imp.to_numpy(), (b - p).reshape(-1, 2).T, atol=1e-12)


@pytest.mark.parametrize("interactions", [False, True])
def test_fused_importance_kernel_equals_the_composed_path(interactions):
    X, Y = simulate(n=70)
    model = MLEM(random_state=4, batch_size=300, max_steps=10, n_permutations=3, interactions=interactions).fit(X, Y)
    fused_imp, fused_base = model.score()
    q = len(model._column_names())
    base, permuted = model._permutation_spearman(model._training_source(), 300, q, model._seed(), model._seed() + 1)
    np.testing.assert_allclose(fused_base, base, atol=1e-12)
    np.testing.assert_allclose(fused_imp.to_numpy(), (base - permuted).reshape(q, 3).T, atol=1e-12)


def test_random_permutations_are_permutations():
    from fastmlem import numpy_backend as nb
    P = nb.random_permutations(1000, 3, 7, 2)
    assert (np.sort(P, axis=1) == np.arange(1000)).all() and not (P[0] == P[1]).all()
    np.testing.assert_array_equal(P[1], nb.random_permutations(1000, 1, 7, 3)[0])


def test_score_on_new_stimuli_uses_the_training_encoding():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"num": rng.uniform(0, 100, 150), "cat": rng.choice(["a", "b"], 150)})
    Y = np.column_stack([X.num / 30, (X.cat == "a") * 2.0, rng.normal(size=(150, 4))])
    model = MLEM(random_state=0, batch_size=2000, max_steps=30).fit(X, Y)
    assert model.encoding_[0] == ("numeric", X.num.min(), X.num.max())
    low = (X.num < 20).to_numpy()
    X_low = X[low].reset_index(drop=True)
    from fastmlem.encoding import encode_features
    enc, _ = encode_features(X_low, encoding=model.encoding_)
    np.testing.assert_allclose(enc[:, 0], (X_low.num - X.num.min()) / (X.num.max() - X.num.min()))
    model.score(X_low, Y[low])  # runs on the training scale
    only_a = (X.cat == "a").to_numpy()
    imp, _ = model.score(X[only_a], Y[only_a])  # 'cat' constant among these stimuli: allowed
    assert imp["cat"].abs().max() < 1e-12
    new_level = X.iloc[:30].assign(cat=["c"] * 10 + ["a"] * 20)
    assert len(np.unique(encode_features(new_level, encoding=model.encoding_)[0][:, 1])) == 2


@pytest.mark.parametrize("make, match", [
    (lambda X, Y: MLEM(batch_size=300).fit(X, Y, feature_names=["p", "q"]), "feature names"),
    (lambda X, Y: MLEM(batch_size=300).fit(X, np.ones_like(Y)), "same for every stimulus"),
    (lambda X, Y: MLEM(batch_size=300, distance=lambda a, b: np.abs(a - b)).fit(X, Y), "one value per pair"),
    (lambda X, Y: MLEM(batch_size_min=1000, batch_size_max=500).fit(X, Y), "batch_size_max"),
    (lambda X, Y: MLEM(n_trials=1).fit(X, Y), "n_trials"),
    (lambda X, Y: MLEM(device="cuda:x").fit(X, Y), "device|cupy|CUDA"),
])
def test_more_bad_inputs(make, match):
    X, Y = simulate(n=60)
    with pytest.raises((ValueError, ImportError), match=match):
        make(X, Y)


def test_free_weights_with_one_column_are_positive():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (40, 1)).astype(float)
    Y = 3 * X + rng.normal(scale=0.1, size=(40, 1))
    for seed in range(4):
        model = MLEM(spd=False, random_state=seed, batch_size=300, max_steps=20).fit(X, Y)
        assert model.weights_[0] == 1.0 and model.best_score_ > 0.5


def test_random_state_objects_draw_one_seed_for_fit_and_score():
    """A RandomState or Generator gives the model of the integer seed it draws once, fit and score alike."""
    X, Y = simulate(n=60)
    kw = dict(batch_size=300, max_steps=5)
    for state, drawn in [(np.random.RandomState(0), np.random.RandomState(0).randint(2**31)),
                         (np.random.default_rng(1), np.random.default_rng(1).integers(2**63))]:
        a, b = MLEM(random_state=state, **kw).fit(X, Y), MLEM(random_state=int(drawn), **kw).fit(X, Y)
        np.testing.assert_array_equal(a.weights_, b.weights_)
        pd.testing.assert_frame_equal(a.score()[0], b.score()[0])


def test_fused_step_checks_its_arguments():
    from fastmlem import numpy_backend as nb, ops
    X = np.random.default_rng(0).integers(0, 2, (20, 3)).astype(float)
    D = nb.condensed_rdm(np.random.default_rng(1).normal(size=(20, 4)))
    with pytest.raises(ValueError, match="batch_size"):
        ops.mlem_step(X, D, False, 0.0, 0, 0)
    with pytest.raises(ValueError, match="w must have shape"):
        ops.mlem_step(X, D, False, 0.0, 50, 0)(0, np.ones(1), np.inf, -np.inf)


def test_weights_from_average_is_the_mean_of_the_last_steps():
    """'average' = the renormalised mean of the weights of the last patience + 1 steps; the steps'
    weights are read from 'last' fits stopped after each of those steps (same seed, same path)."""
    X, Y = simulate(n=100)
    kw = dict(random_state=0, batch_size=500, patience=3, lr=0.5)
    avg = MLEM(max_steps=300, **kw).fit(X, Y)
    s = avg.n_steps_
    assert s < 300  # it stopped early: the window is the best step and the 3 after it
    steps = [MLEM(max_steps=k, weights_from="last", **kw).fit(X, Y).weights_ for k in range(s - 3, s + 1)]
    mean = np.mean(steps, axis=0)
    np.testing.assert_allclose(avg.weights_, mean / np.linalg.norm(mean), rtol=1e-12)
    assert np.array_equal(steps[-1], MLEM(max_steps=300, weights_from="last", **kw).fit(X, Y).weights_)
    best = MLEM(max_steps=300, weights_from="best", **kw).fit(X, Y).weights_
    assert not np.allclose(avg.weights_, best) and not np.allclose(avg.weights_, steps[-1])
