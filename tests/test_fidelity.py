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
