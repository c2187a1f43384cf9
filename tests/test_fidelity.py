"""Fidelity to the paper and to the reference package: the paper's SPD quadratic form
(spd_form='quadratic'), the authors' weight error and its floor, the 'auto' soft-rank strength,
the shared neural RDM definition (CPU == emulated GPU), and drop-in details."""
import warnings

import numpy as np
import pytest

from fastmlem import MLEM, _shared
from fastmlem import numpy_backend as nb
from fastmlem import simulate as sim


def _noiseless_precomputed(n=64, m=5, seed=0):
    """Per-feature distances d (n, n, m) of binary features and neural distances ||d||_G =
    sqrt(d' G d) (n, n) for a dense unit-Frobenius SPD G (m, m)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, m)).astype(float)
    A = rng.standard_normal((m, m))
    G = A @ A.T
    G /= np.linalg.norm(G)
    d = np.abs(X[:, None, :] - X[None, :, :])
    return d, np.sqrt(np.einsum("ija,ab,ijb->ij", d, G, d)), G


# ------------------------------------------------------------------ 2. the paper's quadratic form ---
def test_quadratic_weights_vjp_matches_finite_differences():
    rng = np.random.default_rng(1)
    m = 5
    p, g = rng.standard_normal(m * (m + 1) // 2), rng.standard_normal(m * (m + 1) // 2)
    f = lambda v: g @ _shared.weights(v, m, "spd_quadratic")  # noqa: E731
    num = np.array([(f(p + 1e-6 * e) - f(p - 1e-6 * e)) / 2e-6 for e in np.eye(p.size)])
    np.testing.assert_allclose(_shared.weights_vjp(p, m, "spd_quadratic", g), num, atol=1e-7)
    # the predicted quadratic form is the SPD matrix itself
    W = sim.quadratic_form(_shared.weights(p, m, "spd_quadratic"), m)
    assert np.linalg.eigvalsh(W).min() > 0
    np.testing.assert_allclose(sim.coefficients(W), _shared.weights(p, m, "spd_quadratic"), atol=1e-12)


def test_reference_form_cannot_represent_the_simulation_ground_truths():
    """The reference predicts d'Sd with S = (W + diag W)/2, W SPD: W = 2S - diag S must be SPD."""
    for seed in range(10):
        G = sim.random_spd(16, np.random.default_rng(seed))
        assert np.linalg.eigvalsh(2 * G - np.diag(np.diag(G))).min() < 0


def test_quadratic_form_recovers_a_dense_spd_ground_truth_exactly():
    d, D, G = _noiseless_precomputed()
    assert np.linalg.eigvalsh(2 * G - np.diag(np.diag(G))).min() < 0  # not representable by default
    errors, scores = {}, {}
    for form in ("reference", "quadratic"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = MLEM(interactions=True, distance="precomputed", spd_form=form, batch_size="all",
                         max_steps=1000, patience=1000, random_state=0).fit(d, D)
        errors[form], scores[form] = sim.weight_error(model.weights_, G), model.best_score_
    assert errors["quadratic"] < 0.02 and scores["quadratic"] > 0.9999
    assert errors["reference"] > 0.15 and scores["reference"] < 0.99
    # get_weights shows the SPD quadratic form itself
    W = model.get_weights().to_numpy()
    W = np.where(np.isnan(W), W.T, W)
    np.testing.assert_allclose(W / np.linalg.norm(W), G, atol=0.02)


def test_spd_form_is_checked():
    with pytest.raises(ValueError, match="spd_form"):
        MLEM(interactions=True, spd_form="paper").fit(np.eye(4)[:, :2] + [[0, 0], [1, 1], [0, 1], [1, 0]],
                                                      np.arange(8.0).reshape(4, 2))


# ------------------------------------------------------------- 3. the authors' error and floor ---
def test_authors_error_of_a_perfect_recovery_is_a_floor_that_differs_by_method():
    G = sim.random_spd(16, np.random.default_rng(0))
    c = sim.coefficients(G)
    for method in ("MLEM", "FR-RSA-I"):
        assert sim.weight_error(c, G, method, "invariant") < 1e-12
        assert sim.weight_error(3.7 * c, G, method, "authors") == pytest.approx(
            sim.perfect_recovery_error(G, method), abs=1e-12)  # scale-free
    # by hand: MLEM's flat vector doubles G's off-diagonals, FR-RSA-I's are doubled twice after
    # the coefficients get unit norm
    a, b = np.triu_indices(16, 1)
    assert sim.perfect_recovery_error(G, "MLEM") == pytest.approx(np.linalg.norm(G[a, b]), rel=1e-12)
    floors = np.array([[sim.perfect_recovery_error(sim.random_spd(16, np.random.default_rng(s), gt), meth)
                        for meth in ("MLEM", "FR-RSA-I")] for gt in sim.GROUND_TRUTHS for s in range(20)])
    wishart, sklearn_gt = floors[:20].mean(0), floors[20:].mean(0)
    np.testing.assert_allclose(wishart, [0.48, 1.11], atol=0.03)
    np.testing.assert_allclose(sklearn_gt, [0.62, 1.25], atol=0.03)


def test_runner_records_both_errors_on_the_same_fits():
    res = sim.run(noise_levels=(0.0,), seeds=(0,), n_stimuli=48, n_features=4, n_dims=16, max_steps=30,
                  verbose=False, methods=("MLEM", "FR-RSA-I"))
    assert {"frobenius", "frobenius_authors", "floor_authors"} <= set(res.columns)
    assert (res.frobenius_authors != res.frobenius).all()
    assert sim.mlem_wins(res, "authors").shape[0] == 1
    with pytest.raises(ValueError, match="error"):
        sim.mlem_wins(res, "l2")


# ------------------------------------------------------- 4. 'auto' soft-rank strength = Spearman ---
def _typical_vectors(B, seed=0):
    rng = np.random.default_rng(seed)
    return {"normal": rng.standard_normal(B),
            "heavy-tailed": rng.standard_cauchy(B),
            "many ties": np.round(rng.standard_normal(B) * 2) / 2,
            "categorical sum": rng.integers(0, 2, (B, 6)) @ rng.uniform(0.1, 1.0, 6),
            "squared distances": rng.chisquare(3, B) ** 2}


@pytest.mark.parametrize("B", [500, 20_000])
def test_auto_soft_ranks_correlate_with_hard_ranks(B):
    from scipy.stats import rankdata
    from fastmlem import ops
    for name, x in _typical_vectors(B).items():
        hard = rankdata(x)
        soft = ops.soft_rank(x, "auto")[0]
        assert np.corrcoef(soft, hard)[0, 1] >= 0.999, name
        # the former rule (range / B) pooled the bulk of the values into a few blocks
        old = ops.soft_rank(x, (x.max() - x.min()) / B)[0]
        if name in ("normal", "heavy-tailed"):
            assert np.corrcoef(old, hard)[0, 1] < 0.99, name


def test_auto_gradient_stays_informative_on_tied_predictions():
    """Exact ranks have a zero gradient on categorical predictions (identical rows tie); the
    'auto' strength pools neighbouring levels just enough to keep a gradient."""
    from fastmlem import ops
    rng = np.random.default_rng(3)
    F = rng.integers(0, 2, (4000, 5)).astype(float)
    w = rng.uniform(0.2, 1.0, 5)
    y = F @ np.array([1.0, 0.5, 0.25, 0.1, 0.0]) + 0.3 * rng.standard_normal(4000)
    _, g_exact = ops.rank_loss_grad(F, w, y, 1e-9)
    r, g_auto = ops.rank_loss_grad(F, w, y, "auto")
    assert np.abs(g_exact).max() < 1e-6 * np.abs(g_auto).max()
    assert np.linalg.norm(g_auto) > 0
    # and the loss is (close to) exact Spearman
    from scipy.stats import spearmanr
    assert r == pytest.approx(spearmanr(F @ w, y)[0], abs=0.01)
    _, state = ops.soft_rank(rng.standard_normal(20_000), "auto")
    starts = np.asarray(state.block_start)[0]
    assert 0.05 < 1 - len(np.unique(starts)) / starts.size  # a fair share of values pooled


def test_compiled_auto_rule_is_the_numpy_rule():
    from fastmlem import ops
    core = ops.require_core()
    cases = [np.zeros(5), np.array([1.0]), np.array([2.0, 1.0]), np.arange(50.0), np.linspace(0, 1, 7) ** 3]
    cases += list(_typical_vectors(3000, seed=4).values()) + list(_typical_vectors(101, seed=5).values())
    for x in cases:
        assert core.auto_strength(x) == pytest.approx(_shared.auto_strength(x), rel=1e-12, abs=0)


@pytest.mark.parametrize("interactions", [False, True])
def test_fused_step_under_auto_equals_the_numpy_objective(interactions):
    """ops.mlem_step (C++, its own 'auto' rule) == the objective composed from the numpy twins,
    with the strength from the numpy definition of the rule."""
    from fastmlem import ops
    rng = np.random.default_rng(6)
    n, m, B = 61, 4, 900
    X = rng.integers(0, 3, (n, m)).astype(float) / 2
    D = nb.condensed_rdm(rng.normal(size=(n, 5)))
    q = m * (m + 1) // 2 if interactions else m
    w = rng.uniform(0.1, 1, q)
    step = ops.mlem_step(X, D, interactions, 0.0, B, seed=3, strength="auto")
    lo, hi = np.inf, -np.inf
    for stream in range(3):
        score, grad, lo, hi = step(stream, w, lo, hi)
        i, j = nb.sample_pairs(n, B, 3, stream)
        F = nb.feature_distances(X, i, j, interactions, 0.0)
        y = nb.rdm_lookup(D, n, i, j)
        y = ((y - lo) / (hi - lo + 1e-8)) ** 2
        pred = nb.predict(F, w)
        rx, state = nb.soft_rank(pred, _shared.auto_strength(pred))
        ry, _ = nb.soft_rank(y, _shared.auto_strength(y))
        r, g = _shared.pearson_grad(rx, ry)
        assert score == pytest.approx(r, abs=1e-12)
        np.testing.assert_allclose(grad, F.T @ nb.soft_rank_vjp(state, g), rtol=1e-8, atol=1e-10)


# ---------------------------------------------------- 5. one neural RDM definition, CPU == GPU ---
def _offset_with_duplicates(n=200, p=64, seed=0):
    Y = np.random.default_rng(seed).standard_normal((n, p)) + 1000.0
    Y[7] = Y[3]
    Y[50] = Y[3]
    return Y


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cpu_rdm_is_accurate_under_an_offset(metric):
    from fastmlem.ops import condensed_rdm as _condensed_rdm
    Y = _offset_with_duplicates()
    D = _condensed_rdm(Y, metric)
    want = nb.condensed_rdm(Y, metric)  # the oracle: direct differences
    np.testing.assert_allclose(D, want, rtol=0, atol=1e-12 if metric == "euclidean" else 1e-14)
    n = len(Y)
    dup = nb.rdm_lookup(D, n, np.array([3, 3, 7]), np.array([7, 50, 50]))
    if metric == "euclidean":
        assert (dup == 0).all()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("block_bytes", [2**30, 8 * 200 * 7])  # one block; several row blocks
def test_emulated_gpu_rdm_equals_the_cpu_and_the_oracle(monkeypatch, metric, block_bytes):
    from _emulated_cuda import install
    from fastmlem import cuda_ops
    from fastmlem.ops import condensed_rdm as _condensed_rdm
    cp = install(monkeypatch)
    Y = _offset_with_duplicates()
    gpu = cp.asnumpy(cuda_ops.condensed_rdm(cp.asarray(Y), metric, block_bytes=block_bytes))
    np.testing.assert_allclose(gpu, nb.condensed_rdm(Y, metric), rtol=0, atol=1e-12 if metric == "euclidean" else 1e-14)
    np.testing.assert_allclose(gpu, _condensed_rdm(Y, metric), rtol=0, atol=1e-13)
    if metric == "euclidean":
        assert (nb.rdm_lookup(gpu, len(Y), np.array([3, 3, 7]), np.array([7, 50, 50])) == 0).all()


def test_mlem_on_the_emulated_gpu_gives_the_cpu_answer_on_offset_data(monkeypatch):
    from _emulated_cuda import install
    rng = np.random.default_rng(2)
    X = rng.integers(0, 2, (80, 3)).astype(float)
    Y = X @ rng.standard_normal((3, 10)) + 0.3 * rng.standard_normal((80, 10)) + 1000.0
    Y[5] = Y[4]
    X[5] = X[4]
    kw = dict(random_state=0, batch_size=500, max_steps=40, interactions=True)
    cpu = MLEM(**kw).fit(X, Y)
    cp = install(monkeypatch)
    gpu = MLEM(device="cuda", **kw).fit(X, cp.asarray(Y))
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, rtol=1e-9, atol=1e-12)
    assert gpu.best_score_ == pytest.approx(cpu.best_score_, abs=1e-12)


# ------------------------------------------------------------------------- 1. drop-in details ---
def _small_problem(n=120, seed=0):
    import pandas as pd
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{k}": rng.choice(["A", "B"], n) for k in range(3)})
    Y = (X.to_numpy() == "A") @ rng.standard_normal((3, 8)) + 0.5 * rng.standard_normal((n, 8))
    return X, Y


def test_reference_test_script_runs_with_only_the_import_changed():
    """The reference repository's test.py, with ``from fastmlem import MLEM``."""
    import pandas as pd
    mlem = MLEM(batch_size=32, max_steps=5, verbose=False)
    X = pd.DataFrame({i: np.random.choice(["A", "B"], 1024) for i in range(10)})
    Y = pd.DataFrame({i: np.random.randn(1024) for i in range(32)})
    mlem.fit(X, Y)
    fi, s = mlem.score(warning_threshold=1)
    assert fi.shape == (5, 10) and s.shape == (50,)


def test_memory_auto_and_the_reference_attribute_names():
    X, Y = _small_problem()
    model = MLEM(memory="auto", random_state=0, batch_size=300, max_steps=10)
    assert model.feature_names is None and model.batch_size_fit_ is None
    model.fit(X, Y)
    fi, _ = model.score()
    auto = fi.to_numpy()
    np.testing.assert_array_equal(auto, MLEM(memory="medium", random_state=0, batch_size=300, max_steps=10)
                                  .fit(X, Y).score()[0].to_numpy())
    assert model.feature_names == ["f0", "f1", "f2"]
    assert model.batch_size_fit_ == model.batch_size_ == 300
    for name in ("model_", "rng_"):
        with pytest.raises(AttributeError, match="fastmlem"):
            getattr(model, name)
    with pytest.raises(ValueError, match="memory"):
        MLEM(memory="huge").fit(X, Y)


def test_torch_inputs_with_grad_and_a_torch_distance_callable():
    torch = pytest.importorskip("torch")
    X, Y = _small_problem()
    kw = dict(random_state=0, batch_size=300, max_steps=10)
    want = MLEM(**kw).fit(X, Y).weights_
    Yt = torch.tensor(Y, requires_grad=True)
    got = MLEM(**kw).fit(torch.tensor((X.to_numpy() == "A").astype(float), requires_grad=True), Yt).weights_
    np.testing.assert_allclose(got, want, rtol=1e-12)
    seen = []

    def torch_euclidean(a, b):
        seen.append((type(a), type(b)))
        return torch.linalg.norm(a - b, dim=1)
    # torch inputs -> the callable gets torch tensors (and may return one with grad)
    got = MLEM(distance=torch_euclidean, **kw).fit(X, Yt).weights_
    assert set(seen) == {(torch.Tensor, torch.Tensor)}
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # numpy inputs, a callable written with torch (the reference README's kind)
    got = MLEM(distance=lambda a, b: torch.linalg.norm(a - b, dim=1), **kw).fit(X, Y).weights_
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # a numpy callable still gets numpy arrays
    got = MLEM(distance=lambda a, b: np.linalg.norm(a - b, axis=1), **kw).fit(X, Y).weights_
    np.testing.assert_allclose(got, want, rtol=1e-9)
