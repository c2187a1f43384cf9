"""Classic FR-RSA: ridge path against numpy least squares, recovery of known weights, CV, errors."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from fastmlem import FRRSA
from fastmlem.frrsa import _pairs_within, _ridge_path


def squared_euclidean(A, B):
    return ((A - B) ** 2).sum(1)


def data(n=90, weights=(0.7, 0.5, 0.2, 0.0), noise=0.05, seed=0):
    """Binary features; Y whose squared distances are sum_k w_k d_k (+ noise dims)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, len(weights))).astype(float)
    Y = np.column_stack([X * np.sqrt(weights), noise * rng.normal(size=(n, 10))])
    return pd.DataFrame(X, columns=[f"f{k}" for k in range(len(weights))]), Y, np.asarray(weights)


def test_ridge_path_endpoints():
    rng = np.random.default_rng(0)
    F, y = rng.normal(size=(200, 5)), rng.normal(size=200)
    coefs, icpts = _ridge_path(F, y, [1.0, 0.5, 0.1], nonnegative=False)
    ols = np.linalg.lstsq(np.c_[F, np.ones(200)], y, rcond=None)[0]
    np.testing.assert_allclose(coefs[0], ols[:5], atol=1e-10)
    assert icpts[0] == pytest.approx(ols[5], abs=1e-10)
    norms = np.linalg.norm(coefs, axis=1)
    np.testing.assert_allclose(norms[1:] / norms[0], [0.5, 0.1], rtol=1e-6)
    nonneg, _ = _ridge_path(F, y, [1.0], nonnegative=True)
    assert (nonneg >= 0).all()


def test_nonnegative_least_squares_end_matches_scipy_nnls():
    """Fraction 1 of the non-negative path is NNLS on the centred columns (scipy.optimize.nnls)."""
    from scipy.optimize import nnls
    rng = np.random.default_rng(3)
    F = rng.normal(size=(300, 6))
    y = F @ np.array([1.0, -0.8, 0.5, -0.2, 0.0, 0.3]) + 0.1 * rng.normal(size=300)  # active constraints
    coefs, icpts = _ridge_path(F, y, [1.0], nonnegative=True)
    want = nnls(F - F.mean(0), y - y.mean())[0]
    assert (want == 0).sum() >= 2
    np.testing.assert_allclose(coefs[0], want, atol=1e-6)
    assert icpts[0] == pytest.approx(y.mean() - want @ F.mean(0), abs=1e-6)


def test_pairs_within_selects_pairs_of_member_stimuli():
    i, j = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3])
    np.testing.assert_array_equal(_pairs_within(np.array([0, 1, 3]), 4, i, j), [0, 2])


@pytest.mark.parametrize("nonnegative", [False, True])
def test_recovers_known_diagonal_weights(nonnegative):
    X, Y, w = data()
    model = FRRSA(distance=squared_euclidean, nonnegative=nonnegative, n_outer_repeats=2, n_inner_repeats=1,
                  random_state=0).fit(X, Y)
    np.testing.assert_allclose(model.weights_, w / np.linalg.norm(w), atol=0.03)
    assert model.cv_score_ > 0.95 and model.cv_scores_.shape == (10,) and model.fractions_.shape == (10,)
    assert model.get_weights().shape == (4, 1)
    imp, base = model.score()
    assert imp.shape == (5, 4) and imp.mean().idxmax() == "f0" and abs(imp.mean()["f3"]) < 0.01


def test_interactions_and_spearman_scoring_and_clone():
    X, Y, _ = data(n=60)
    model = FRRSA(interactions=True, scoring="spearman", n_outer_repeats=1, n_inner_repeats=1,
                  random_state=1).fit(X, Y)
    assert model.get_weights().shape == (4, 4) and model.coef_.shape == (10,)
    twin = clone(model).fit(X, Y)
    np.testing.assert_array_equal(model.coef_, twin.coef_)


@pytest.mark.parametrize("params, match", [
    (dict(fractions=[0.0, 0.5]), "fractions must be"),
    (dict(fractions=[]), "fractions must be"),
    (dict(scoring="kendall"), "scoring must be"),
    (dict(n_outer_splits=1), "n_outer_splits must be"),
    (dict(n_inner_splits=20), "too few"),
    (dict(distance="chebyshev"), "unknown distance"),
])
def test_bad_parameters(params, match):
    X, Y, _ = data(n=40)
    with pytest.raises(ValueError, match=match):
        FRRSA(**params).fit(X, Y)


def test_score_before_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        FRRSA().score()


def test_constant_column_within_folds_and_too_many_outer_folds():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"rare": np.r_[np.ones(2), np.zeros(18)], "common": rng.integers(0, 2, 20)})
    Y = rng.normal(size=(20, 5)) + X.to_numpy() @ np.ones((2, 5))
    model = FRRSA(nonnegative=True, n_outer_repeats=2, n_inner_repeats=2, random_state=0).fit(X, Y)
    assert np.isfinite(model.coef_).all()
    with pytest.raises(ValueError, match="too few"):
        FRRSA(n_outer_splits=10, n_inner_splits=2).fit(X.iloc[:10], Y[:10])
