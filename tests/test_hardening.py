"""Bad inputs at the edges: errors that say what to do, never an abort, a read past a buffer, a
hang or a wrong answer. Cases that used to crash the interpreter run in a subprocess."""
import numpy as np
import pandas as pd
import pytest

from fastmlem import FRRSA, MLEM, numpy_backend as nb, ops
from _isolated import run_cases, run_isolated

SETUP = """
import numpy as np, pandas as pd, warnings
warnings.simplefilter("ignore")
from fastmlem import MLEM, FRRSA, ops, numpy_backend as nb, _core
rng = np.random.default_rng(0)
X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], 60) for k in range(3)})
Y = rng.normal(size=(60, 5))
Xe = rng.integers(0, 2, (20, 3)).astype(float)
D = nb.condensed_rdm(rng.normal(size=(20, 4)))
"""


def data(n=60, m=3, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], n) for k in range(m)})
    codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
    return X, np.column_stack([codes * [3.0, 2.0, 1.0][:m], rng.normal(size=(n, 5))])


# ------------------------------------------------------------- 1. no exception escapes a region
OVERSIZED = [
    ("MLEM(batch_size=100, max_steps=30, random_state=0).fit(X, Y).score(batch_size=2**40)", "MemoryError",
     "1,099,511,627,776 pairs"),
    ("MLEM(batch_size=100, max_steps=30, random_state=0).fit(X, Y).score(batch_size=10**12)", "MemoryError", "GiB"),
    ("MLEM(batch_size=2**40, max_steps=3).fit(X, Y)", "MemoryError", "training batch"),
    ("FRRSA(batch_size=2**40, n_outer_repeats=1, n_inner_repeats=1).fit(X, Y).score()", "MemoryError", "GiB"),
    ("ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, -1, 0, 0, 1, 2)", "ValueError", "batch_size"),
    ("ops.permutation_importance(Xe, D, np.ones(3), False, 0.0, 2**40, 0, 0, 1, 2)", "MemoryError", "GiB"),
    # straight to C++, past the Python checks: the allocation fails inside the OpenMP region and
    # comes out as MemoryError (it used to call std::terminate)
    ("_core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, 2**40, 0, 0, 1, 6, 2)", "MemoryError", ""),
]


@pytest.fixture(scope="module")
def oversized_outcomes():
    return run_cases(SETUP, [code for code, _, _ in OVERSIZED])


@pytest.mark.parametrize("k", range(len(OVERSIZED)))
def test_oversized_batches_raise_instead_of_aborting(k, oversized_outcomes):
    code, error, match = OVERSIZED[k]
    assert oversized_outcomes[k][:2] == ("raised", error) and match in oversized_outcomes[k][2], \
        (code, oversized_outcomes[k])


# ----------------------------------------------------------------------- 2. binding checks
BINDING_SETUP = SETUP + """
x = rng.normal(size=30); g = rng.normal(size=30)
r, st = ops.soft_rank(x, 0.05)
r2, st2 = ops.soft_rank(rng.normal(size=(2, 30)), 0.05)
"""
BINDING = [
    ("ops.soft_rank_vjp(st, g[:5])", "ValueError", "shape of the soft ranks"),
    ("ops.soft_rank_vjp(st, np.float64(1.0))", "ValueError", "got ()"),
    ("ops.soft_rank_vjp(st, np.zeros(0))", "ValueError", "shape"),
    ("ops.soft_rank_vjp(st2, g)", "ValueError", "(2, 30)"),
    ("st.perm[0, 0] = 10**9; ops.soft_rank_vjp(st, g)", "IndexError", "not a permutation"),
    ("st.perm[0, 0] = st.perm[0, 1]; ops.soft_rank_vjp(st, g)", "IndexError", "not a permutation"),
    ("st.block_start[0, 3] = 7; ops.soft_rank_vjp(st, g)", "IndexError", "block"),
    ("_core.soft_rank_vjp(g[None, :5], st.x, st.ranks, st.perm, st.block_start, st.eps, False)", "ValueError",
     "g must have shape (1, 30)"),
    ("_core.soft_rank_vjp(g[None], st.x, st.ranks, st.perm, st.block_start, st.eps[:0], False)", "ValueError", "eps"),
    ("_core.soft_rank(x[None], np.ones(2), False)", "ValueError", "eps"),
    ("_core.soft_rank(x, np.ones(1), False)", "ValueError", "2-D"),
    ("_core.rank_average(np.float64(1.0))", "ValueError", "0-d"),
    ("_core.spearman(np.ones(3), np.ones(4))", "ValueError", "y must have shape"),
    ("_core.permutation_spearman(np.ones((2, 5)), np.ones((1, 3, 5)), np.ones((2, 5)))", "ValueError", "permuted"),
    ("_core.feature_distances(Xe, np.array([0, 20]), np.array([1, 2]), False, 0.0)", "IndexError", "[0, 20)"),
    ("_core.feature_distances(Xe, np.array([-1]), np.array([1]), False, 0.0)", "IndexError", "out of range"),
    ("_core.feature_distances(Xe, np.array([0]), np.array([1, 2]), False, 0.0)", "ValueError", "same length"),
    ("_core.feature_distances(np.ones((4, 3, 2)), np.array([0]), np.array([1]), False, 0.0)", "ValueError", "(n, n, m)"),
    ("_core.neural_distances(np.ones((5, 3)), 5, np.array([0]), np.array([5]), 'euclidean')", "IndexError", "[0, 5)"),
    ("_core.neural_distances(np.ones((5, 6))[:, ::2], 5, np.array([0]), np.array([1]), 'euclidean')", "ValueError",
     "column stride"),
    ("_core.MlemStep(Xe, D[:-1], 'euclidean', False, 0.0, 10, 0, 1.0, False)", "ValueError", "condensed"),
    ("_core.MlemStep(Xe, D, 'euclidean', False, 0.0, 0, 0, 1.0, False)", "ValueError", "batch_size"),
    ("_core.MlemStep(Xe, D, 'euclidean', False, 0.0, 10, 0, 1.0, False).step(0, np.ones(2), np.inf, -np.inf)", "ValueError",
     "w must have shape (3,)"),
    ("_core.MlemStep(Xe, D, 'euclidean', False, 0.0, 10, 0, 1.0, False).step(0, np.array([1, np.nan, 1]), np.inf, -np.inf)",
     "ValueError", "finite"),
    ("_core.permutation_importance(Xe, D, 'euclidean', np.ones(2), False, 0.0, 10, 0, 0, 1, 6, 2)", "ValueError", "w"),
    ("_core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, 10, 0, 0, 1, 7, 2)", "ValueError", "n_tasks"),
    ("_core.permutation_importance(Xe, D, 'euclidean', np.ones(3), False, 0.0, 10, 0, 0, 1, 6, 0)", "ValueError", "n_permutations"),
    ("_core.sample_pairs(0, 10, 0, 0)", "ValueError", "n must be >= 1"),
    ("_core.sample_pairs(5, -1, 0, 0)", "ValueError", "size"),
]


@pytest.fixture(scope="module")
def binding_outcomes():
    return run_cases(BINDING_SETUP, [code for code, _, _ in BINDING])


@pytest.mark.parametrize("k", range(len(BINDING)))
def test_bindings_check_shapes_and_indices(k, binding_outcomes):
    code, error, match = BINDING[k]
    assert binding_outcomes[k][:2] == ("raised", error) and match in binding_outcomes[k][2], \
        (code, binding_outcomes[k])


# ---------------------------------------------------------------------------- 3. no hangs
def test_estimate_batch_size_terminates_and_checks_factor():
    X, _ = data()
    rc, out, err = run_isolated(SETUP + "print(MLEM(factor=1.001, threshold=0.05).estimate_batch_size(X))", 120)
    assert rc == 0, f"hung or crashed: {rc} {err[-1000:]}"
    assert int(out.split()[-1]) > 256
    for factor in (1.0, 0.5, np.inf, np.nan):
        with pytest.raises(ValueError, match="factor must be a finite number > 1"):
            MLEM(factor=factor).estimate_batch_size(X)


# -------------------------------------------------------------- 4. one validation path
@pytest.mark.parametrize("params, match", [
    (dict(lr=np.inf), "lr must be a finite number > 0"),
    (dict(lr=0), "lr must be"),
    (dict(weight_decay=np.inf), "weight_decay must be a finite number >= 0"),
    (dict(weight_decay=np.nan), "weight_decay"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(threshold=np.nan), "threshold"),
    (dict(factor=0.5), "factor"),
    (dict(batch_size_min=0), "batch_size_min must be an integer >= 3"),
    (dict(batch_size_min=1000, batch_size_max=500), "batch_size_max \\(500\\) must be >= batch_size_min"),
    (dict(batch_size_max=2.5), "batch_size_max must be an integer"),
    (dict(batch_size=2), "batch_size must be an integer >= 3"),
    (dict(batch_size="some"), "batch_size"),
    (dict(random_state=-1), "random_state must be None, a non-negative integer, a numpy RandomState"),
    (dict(random_seed="0"), "random_seed must be None"),
    (dict(nan_to_num=np.nan), "nan_to_num must be a finite number"),
    (dict(interactions="yes"), "interactions must be True or False"),
    (dict(spd=2), "spd must be True or False"),
    (dict(n_permutations=0), "n_permutations"),
    (dict(max_steps=1.5), "max_steps"),
    (dict(patience=0), "patience"),
    (dict(n_trials=1), "n_trials must be an integer >= 2"),
    (dict(corr_warning_threshold=-1), "corr_warning_threshold"),
    (dict(soft_rank_strength=0), "soft_rank_strength"),
    (dict(soft_rank_strength="max"), "soft_rank_strength"),
    (dict(soft_rank_regularization="l1"), "soft_rank_regularization must be one of \\('l2', 'kl'\\)"),
    (dict(memory="huge"), "memory must be"),
    (dict(distance="chebyshev"), "unknown distance"),
])
def test_mlem_parameters_are_checked_with_their_names(params, match):
    X, Y = data()
    with pytest.raises(ValueError, match=match):
        MLEM(**{"batch_size": 100, "max_steps": 3, **params}).fit(X, Y)
    if "batch_size" not in params:  # the batch-size search checks the same parameters
        with pytest.raises(ValueError, match=match):
            MLEM(**params).estimate_batch_size(X)


def test_best_known_params_still_fit():
    X, Y = data()
    MLEM(batch_size=np.int64(100), max_steps=3, random_state=np.uint32(1), interactions=np.True_,
         lr=np.float32(0.1), factor=1.5, weight_decay=0).fit(X, Y)


@pytest.mark.parametrize("params, match", [
    (dict(nonnegative="no"), "nonnegative must be True or False"),
    (dict(random_state=-1), "random_state must be None, a non-negative integer"),
    (dict(batch_size=1), "batch_size must be an integer >= 3"),
    (dict(batch_size="all"), "batch_size"),
    (dict(nan_to_num=np.inf), "nan_to_num"),
    (dict(fractions=["a"]), "fractions"),
    (dict(max_pairs=0), "max_pairs"),
    (dict(n_outer_splits=1), "n_outer_splits"),
    (dict(scoring="kendall"), "scoring"),
])
def test_frrsa_parameters_are_checked_with_their_names(params, match):
    X, Y = data()
    with pytest.raises(ValueError, match=match):
        FRRSA(**params).fit(X, Y)


def test_score_arguments_are_checked():
    X, Y = data()
    model = MLEM(batch_size=100, max_steps=3).fit(X, Y)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 3"):
        model.score(batch_size=0)
    with pytest.raises(ValueError, match="warning_threshold"):
        model.score(warning_threshold=np.nan)


# ---------------------------------------------------------------- 5. callable distances
def test_infinite_callable_distance_is_rejected():
    X, Y = data()
    inf_far = lambda a, b: np.where(np.arange(len(a)) % 7 == 0, np.inf, np.abs(a - b).sum(1))  # noqa: E731
    with pytest.raises(ValueError, match="distance callable returned infinite values"):
        MLEM(distance=inf_far, batch_size=100, max_steps=3).fit(X, Y)


# -------------------------------------------------------------------------------- 6. kernels
@pytest.mark.parametrize("bad", ["y2", "w", "F"])
def test_rank_loss_grad_checks_shapes(bad):
    rng = np.random.default_rng(0)
    F, w, y = rng.random((50, 3)), np.ones(3), rng.random(50)
    args = {"y2": (F, w, y[:, None]), "w": (F, w[:2], y), "F": (F[:, :, None], w, y)}[bad]
    with pytest.raises(ValueError, match="need F \\(B, q\\), w \\(q,\\) and y \\(B,\\)"):
        ops.rank_loss_grad(*args)


def test_rank_average_is_exact_for_large_integers():
    x = np.array([[2**60 + 3, 2**60 + 1, 2**60 + 2, 2**60 + 1, -2**62, 2**63 - 1]], dtype=np.int64)
    want = nb.rank_average(x)
    np.testing.assert_array_equal(ops.rank_average(x), want)
    np.testing.assert_array_equal(want, [[5, 2.5, 4, 2.5, 1, 6]])
    u = np.array([2**64 - 1, 2**64 - 2, 0], dtype=np.uint64)
    np.testing.assert_array_equal(ops.rank_average(u), [3, 2, 1])
    assert ops.spearman(x[0], np.arange(6)) == pytest.approx(nb.spearman(x[0], np.arange(6)), abs=1e-15)
    base, _ = ops.permutation_spearman(x, x[None], np.arange(6.0)[None])
    assert base[0] == pytest.approx(nb.spearman(x[0], np.arange(6.0)), abs=1e-15)


@pytest.mark.parametrize("n", [2**32 - 1, 2**32, 2**40, 2**63 - 1])
def test_sample_pairs_reaches_every_index_for_huge_n(n):
    i, j = ops.sample_pairs(n, 20000, 7, 3)
    ti, tj = nb.sample_pairs(n, 20000, 7, 3)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(j, tj)
    for idx in (i, j):
        assert idx.min() >= 0 and idx.max() < n
        assert abs(idx.mean() / n - 0.5) < 0.01  # uniform over [0, n), not [0, 2**32)


def test_sample_pairs_stream_unchanged_below_2_to_the_32():
    """n < 2**32 keeps the one-draw stream (high 32 bits -> i, low -> j), pinned here."""
    h = nb.random_bits(11, 2, 5)
    i, j = ops.sample_pairs(1000, 5, 11, 2)
    np.testing.assert_array_equal(i, ((h >> np.uint64(32)) * np.uint64(1000)) >> np.uint64(32))
    np.testing.assert_array_equal(j, ((h & np.uint64(2**32 - 1)) * np.uint64(1000)) >> np.uint64(32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fused_step_rejects_non_finite_weights(bad):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, (20, 3)).astype(float)
    D = nb.condensed_rdm(rng.normal(size=(20, 4)))
    step = ops.mlem_step(X, D, False, 0.0, 50, 0)
    with pytest.raises(ValueError, match="must be finite"):
        step(0, np.array([1.0, bad, 1.0]), np.inf, -np.inf)
    with pytest.raises(ValueError, match="must be finite"):
        ops.permutation_importance(X, D, np.array([1.0, bad, 1.0]), False, 0.0, 50, 0, 0, 1, 2)


@pytest.mark.parametrize("regularization", ["l2", "kl"])
@pytest.mark.parametrize("value", [0.0, 0.3, 7.0])
def test_constant_prediction_against_constant_target_scores_zero(regularization, value):
    for B in (3, 10, 257):
        F, w = np.full((B, 2), value), np.array([0.6, 0.8])
        for y in (np.zeros(B), np.full(B, 0.5)):
            for strength in (1.0, "auto", 0.01):
                assert ops.rank_loss_grad(F, w, y, strength, regularization)[0] == 0.0
                assert nb.rank_loss_grad(F, w, y, strength, regularization)[0] == 0.0
    assert nb.pearson(np.full(10, 0.1), np.arange(10.0)) == 0.0


def test_fused_step_scores_constant_targets_zero():
    n = 3000  # no pair i == i in the 20 pairs of seed 0, stream 0: every predictor row and distance is alike
    assert not np.any(np.equal(*ops.sample_pairs(n, 20, 0, 0)))
    X = np.repeat(np.arange(float(n))[:, None], 3, axis=1)  # |x_i - x_j| clips to 1: F rows all ones
    for regularization in ("l2", "kl"):
        for strength in (1.0, "auto"):
            step = ops.mlem_step(X, np.full(n * (n - 1) // 2, 2.0), False, 0.0, 20, 0, strength, regularization)
            score, grad, _, _ = step(0, np.array([0.3, 0.5, 0.7]), np.inf, -np.inf)
            assert score == 0.0 and not grad.any()


def test_fused_and_composed_importances_identical_with_interactions():
    """Weights whose column sums collide: the C++ kernel and the oracle must split ties alike."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], 70) for k in range(4)})
    Y = rng.normal(size=(70, 5))
    model = MLEM(random_state=4, batch_size=300, max_steps=3, n_permutations=3, interactions=True).fit(X, Y)
    model.weights_ = np.array([0.1, 0.7, 0.3, 0.1, 0.1, 0.7, 0.2, 0.7, 0.1, 0.2])
    fused, base = model.score(warning_threshold=1.0)
    b, p = model._permutation_spearman(model._training_source(), 300, 10, model._seed(), model._seed() + 1)
    np.testing.assert_array_equal(base, b)
    np.testing.assert_array_equal(fused.to_numpy(), (b - p).reshape(10, 3).T)


def test_predict_sums_columns_in_order():
    rng = np.random.default_rng(1)
    F, w = rng.random((100, 20)), rng.random(20)
    want = np.zeros(100)
    for c in range(20):
        want = want + F[:, c] * w[c]
    np.testing.assert_array_equal(nb.predict(F, w), want)


# --------------------------------------------------------------------------------- 7. FR-RSA
@pytest.mark.parametrize("scale", [1e-150, 1.0, 1e150, 1e154, 1e160])
def test_frrsa_is_scale_invariant(scale):
    X, Y = data()
    kw = dict(n_outer_repeats=1, n_inner_repeats=1, random_state=0)
    ref = FRRSA(**kw).fit(X, Y)
    big = FRRSA(**kw).fit(X, Y * scale)
    assert np.isfinite(big.weights_).all()
    np.testing.assert_allclose(big.weights_, ref.weights_, atol=1e-9)
    np.testing.assert_allclose(big.coef_ / scale, ref.coef_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(big.cv_scores_, ref.cv_scores_, atol=1e-9)
