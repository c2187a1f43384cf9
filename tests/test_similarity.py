"""Tests for fastmlem.similarity: values against independent n x n / scipy / sklearn formulas,
identities, declared invariances, finite-difference gradients, errors, and score optimisation."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import orthogonal_procrustes, subspace_angles
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from fastmlem import similarity
from fastmlem.similarity import cv_folds, get, ids

REQUIRED = ["cka", "cka-debiased", "cka-rbf", "cka-rbf-sigma=0.5", "nbs", "procrustes-angular",
            "procrustes-euclidean", "cca", "svcca", "shape-alpha=0.5", "shape-alpha=1",
            "shape-alpha=0", "linreg-r2", "ridge-r2", "ridge-pearson", "ridge-pearson-lambda=2",
            "linreg-r2-cv", "ridge-r2-cv", "ridge-pearson-cv", "rsa-euclidean-pearson",
            "rsa-correlation-spearman", "rsa-cosine-kendall-tau-a", "rsa-euclidean-cosine", "ensd"]
EXTRA_GRAD = ["shape-alpha=0-score", "shape-alpha=0.3-angular", "cka-rbf-sigma=0.7",
              "ridge-r2-lambda=3-cv=3", "ridge-pearson-lambda=0.5-cv=4"]


def data(n=40, p=6, q=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + rng.normal(size=p)
    Y = X[:, :min(p, q)] @ rng.standard_normal((min(p, q), q)) + rng.standard_normal((n, q))
    return X, Y + rng.normal(size=q)


def H(n):
    return np.eye(n) - 1.0 / n


# ----------------------------------------------------------------------------------- registry
def test_required_ids_parse_and_ids_round_trip():
    for i in REQUIRED:
        get(i)
    for i in ids():
        m = get(i)
        assert m.id == i and get(m.id).id == i
        assert m.kind in ("score", "distance", "dimensionality")
        assert m.higher_is_better == (m.kind != "distance")
        assert isinstance(m.invariances, frozenset)
        assert m.invariances <= set(similarity.INVARIANCES)
    assert len(ids()) == len(set(ids()))


def test_grammar_details():
    assert get("Procrustes").id == "procrustes-angular"
    assert get("cka-rbf-sigma=0.5").params == {"sigma": 0.5}
    assert get("cka-rbf").params == {"sigma": 1.0}
    m = get("ridge-r2-lambda=1e-3-cv=3")
    assert m.params == {"lambda": 1e-3} and m.cv == 3 and m.id == "ridge-r2-lambda=0.001-cv=3"
    assert get("ridge-pearson-cv").cv == 5 and get("ridge-pearson").cv is None
    assert get("shape-alpha=0.3").form == "angular" and get("shape-alpha=0.3").kind == "distance"
    assert get("shape-alpha=0.3-score").kind == "score"
    assert get("ensd").kind == "dimensionality" and get("ensd").identity_value is None
    assert get("rsa-cosine-kendall-tau-a").differentiable is False
    assert "svcca-var=0.99" not in similarity.differentiable_ids()
    assert "cka" in similarity.differentiable_ids()


@pytest.mark.parametrize("bad, match", [
    ("ckaa", "Did you mean 'cka'"),
    ("procrustes-angualr", "procrustes-angular"),
    ("ridge-r3", "ridge-r2"),
    ("cka-sigma=1", "unknown parameter"),
    ("shape-alpha=1.5", "alpha must be"),
    ("ridge-r2-lambda=-1", "lambda must be"),
    ("cka-cv", "no cross-validated form"),
    ("ridge-r2-cv=1", "folds >= 2"),
    ("nbs-euclidean", "no 'euclidean' form"),
    ("cka-", "ends with"),
])
def test_bad_ids(bad, match):
    with pytest.raises(ValueError, match=match):
        get(bad)
    with pytest.raises(TypeError):
        get(3)


# ------------------------------------------------------------------------- values vs oracles
def test_linear_and_debiased_cka_match_nxn_kernels():
    X, Y = data()
    n = len(X)
    K, L = H(n) @ X @ X.T @ H(n), H(n) @ Y @ Y.T @ H(n)
    assert get("cka")(X, Y) == pytest.approx(np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L),
                                             rel=1e-12)

    def hsic_u(K, L):  # Song et al. (2012), on uncentred kernels, explicit n x n
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        return (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))

    Kx, Ly = X @ X.T, Y @ Y.T
    expected = hsic_u(Kx, Ly) / math.sqrt(hsic_u(Kx, Kx) * hsic_u(Ly, Ly))
    assert get("cka-debiased")(X, Y) == pytest.approx(expected, rel=1e-10)


def test_rbf_cka_matches_nxn():
    X, Y = data(n=30)
    sigma = 0.7

    def kernel(Z):
        d2 = pdist(Z, "sqeuclidean")
        D = np.zeros((len(Z),) * 2)
        D[np.triu_indices(len(Z), 1)] = d2
        D = D + D.T
        return H(len(Z)) @ np.exp(-D / (2 * sigma ** 2 * np.median(d2))) @ H(len(Z))

    K, L = kernel(X), kernel(Y)
    expected = np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L)
    assert get(f"cka-rbf-sigma={sigma}")(X, Y) == pytest.approx(expected, rel=1e-10)


def test_nbs_and_procrustes_match_nxn_and_explicit_rotation():
    X, Y = data(n=25, p=6, q=4)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)

    def sqrt_kernel(Z):  # (ZZᵀ)^1/2, n x n, numerically-zero eigenvalues dropped
        lam, V = np.linalg.eigh(Z @ Z.T)
        lam = np.where(lam > 1e-10 * lam[-1], lam, 0.0)
        return (V * np.sqrt(lam)) @ V.T

    # n x n route: ||XᵀY||_* = ||(XXᵀ)^1/2 (YYᵀ)^1/2||_*
    nuc = np.linalg.svd(sqrt_kernel(Xc) @ sqrt_kernel(Yc), compute_uv=False).sum()
    nbs = nuc / np.linalg.norm(Xc) / np.linalg.norm(Yc)
    assert get("nbs")(X, Y) == pytest.approx(nbs, rel=1e-8)
    assert get("procrustes-angular")(X, Y) == pytest.approx(math.acos(nbs), rel=1e-8)
    Xn, Yn = Xc / np.linalg.norm(Xc), np.hstack([Yc, np.zeros((25, 2))]) / np.linalg.norm(Yc)
    R = orthogonal_procrustes(Yn, Xn)[0]
    assert get("procrustes-euclidean")(X, Y) == pytest.approx(np.linalg.norm(Xn - Yn @ R), rel=1e-8)
    assert get("shape-alpha=1-angular")(X, Y) == pytest.approx(math.acos(nbs), rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_shape_metric_matches_explicit_partial_whitening(alpha):
    X, Y = data(n=50, p=5, q=5)

    def whiten(Z):
        Z = Z - Z.mean(0)
        C = Z.T @ Z
        C = C / np.trace(C) * C.shape[0]
        lam, V = np.linalg.eigh(C)
        return Z @ (alpha * np.eye(len(C)) + (1 - alpha) * V @ np.diag(lam ** -0.5) @ V.T)

    A, B = whiten(X), whiten(Y)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    R = orthogonal_procrustes(B, A)[0]
    angle = math.acos(np.clip(np.sum(A * (B @ R)), -1, 1))
    assert get(f"shape-alpha={alpha}")(X, Y) == pytest.approx(angle, rel=1e-8)
    assert get(f"shape-alpha={alpha}-euclidean")(X, Y) == pytest.approx(np.linalg.norm(A - B @ R),
                                                                        rel=1e-8)


def test_cca_and_svcca_match_principal_angles():
    X, Y = data(n=60, p=6, q=4)
    rho = np.cos(subspace_angles(X - X.mean(0), Y - Y.mean(0)))
    assert get("cca")(X, Y) == pytest.approx(rho.mean(), rel=1e-8)
    assert get("shape-alpha=0-score")(X, Y) == pytest.approx(rho.sum() / math.sqrt(24), rel=1e-8)

    def top(Z, var):
        Z = Z - Z.mean(0)
        U, s, _ = np.linalg.svd(Z, full_matrices=False)
        k = int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), var) + 1)
        return U[:, :k] * s[:k]

    A, B = top(X, 0.9), top(Y, 0.9)
    expected = np.cos(subspace_angles(A, B)).mean()
    assert get("svcca-var=0.9")(X, Y) == pytest.approx(expected, rel=1e-8)


def test_ensd_matches_kernel_formula_and_participation_ratio():
    X, Y = data()
    n = len(X)
    K, L = H(n) @ X @ X.T @ H(n), H(n) @ Y @ Y.T @ H(n)
    expected = np.trace(K) * np.trace(L) * np.trace(K @ L) / (np.trace(K @ K) * np.trace(L @ L))
    assert get("ensd")(X, Y) == pytest.approx(expected, rel=1e-10)
    assert get("ensd")(X, X) == pytest.approx(np.trace(K) ** 2 / np.trace(K @ K), rel=1e-10)


@pytest.mark.parametrize("family, lam", [("linreg", 0.0), ("ridge", 2.5)])
@pytest.mark.parametrize("cv", [None, 4])
def test_regression_matches_sklearn(family, lam, cv):
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import cross_val_predict

    X, Y = data(n=48, p=4, q=6)
    est = LinearRegression() if family == "linreg" else Ridge(alpha=lam)
    if cv is None:
        pred = est.fit(Y, X).predict(Y)
    else:
        pred = cross_val_predict(est, Y, X, cv=cv_folds(len(X), cv))
    suffix = ("" if family == "linreg" else f"-lambda={lam}") + ("" if cv is None else f"-cv={cv}")
    r2 = r2_score(X, pred, multioutput="variance_weighted")
    assert get(f"{family}-r2{suffix}")(X, Y) == pytest.approx(r2, rel=1e-9)
    r = np.mean([pearsonr(X[:, j], pred[:, j])[0] for j in range(X.shape[1])])
    assert get(f"{family}-pearson{suffix}")(X, Y) == pytest.approx(r, rel=1e-9)


def test_cv_folds_are_deterministic_partitions():
    folds = cv_folds(23, 5)
    assert len(folds) == 5
    tests = np.concatenate([t for _, t in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(23))
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == 23
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, cv_folds(23, 5)))
    with pytest.raises(ValueError, match="at least 10 stimuli"):
        get("ridge-r2-cv")(*data(n=9))


@pytest.mark.parametrize("rdm, metric", [("euclidean", "euclidean"), ("correlation", "correlation"),
                                          ("cosine", "cosine")])
def test_rsa_matches_scipy(rdm, metric):
    X, Y = data(n=15)
    a, b = pdist(X, metric), pdist(Y, metric)
    assert get(f"rsa-{rdm}-pearson")(X, Y) == pytest.approx(pearsonr(a, b)[0], rel=1e-9)
    assert get(f"rsa-{rdm}-spearman")(X, Y) == pytest.approx(spearmanr(a, b)[0], rel=1e-9)
    cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert get(f"rsa-{rdm}-cosine")(X, Y) == pytest.approx(cosine, rel=1e-9)
    i, j = np.triu_indices(a.size, 1)
    tau_a = np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size
    assert get(f"rsa-{rdm}-kendall-tau-a")(X, Y) == pytest.approx(tau_a, rel=1e-9)


@pytest.mark.parametrize("rdm, metric", [("euclidean", "euclidean"), ("correlation", "correlation"),
                                          ("cosine", "cosine")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rsa_pair_moments_in_blocks_match_scipy(rdm, metric, dtype):
    """The Pearson / cosine values come from Gram row blocks (here many small ones) without the
    (n, n) RDMs: moments equal those of scipy's condensed distances."""
    from fastmlem.similarity._rsa import pair_moments

    X, Y = data(n=37, seed=3)
    X, Y = X.astype(dtype), Y.astype(dtype)
    a, b = pdist(X.astype(np.float64), metric), pdist(Y.astype(np.float64), metric)
    want = [a.size, a.mean(), b.mean(), ((a - a.mean()) ** 2).sum(), ((b - b.mean()) ** 2).sum(),
            ((a - a.mean()) * (b - b.mean())).sum()]
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for block_bytes in (1, 37 * 8 * 5, 2**24):  # one row, 5 rows (uneven), all rows per block
        np.testing.assert_allclose(pair_moments(X, Y, rdm, block_bytes), want, rtol=tol)
    value, _ = get(f"rsa-{rdm}-pearson").value_and_grad(X, Y)  # the full-RDM route
    assert get(f"rsa-{rdm}-pearson")(X, Y) == pytest.approx(value, rel=tol)
    assert get(f"rsa-{rdm}-cosine")(X, Y) == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=tol)


@pytest.mark.parametrize("rdm, metric", [("euclidean", "euclidean"), ("correlation", "correlation"),
                                          ("cosine", "cosine")])
def test_rsa_condensed_rdm_in_blocks_matches_scipy_with_exact_ties(rdm, metric):
    """The rank comparisons read the RDM's upper triangle built from Gram row blocks: equal to
    scipy's pdist in any block size, duplicated stimuli exactly 0 apart, and the distances that
    duplicates make equal exactly tied (scipy's differ by rounding: rounded to 12 digits here)."""
    from fastmlem.similarity._rsa import condensed_rdm

    rng = np.random.default_rng(22)
    X = rng.integers(-3, 4, (30, 5)).astype(float) + 10.0 if rdm == "euclidean" else rng.normal(size=(30, 5))
    X[20:] = X[:10]  # duplicated stimuli
    want = pdist(X, metric)
    duplicates = np.flatnonzero(np.all(np.equal(*(X[i] for i in np.triu_indices(30, 1))), axis=1))
    assert duplicates.size == 10
    for block_bytes in (1, 30 * 8 * 7, 2**24):
        got = condensed_rdm(X, rdm, "X", block_bytes)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * want.max())
        assert np.all(got[duplicates] == 0)
    Y = rng.normal(size=(30, 4))
    a, b = np.round(want, 12), pdist(Y, metric)
    k, l = np.triu_indices(a.size, 1)
    tau_a = np.sum(np.sign(a[k] - a[l]) * np.sign(b[k] - b[l])) / k.size
    assert get(f"rsa-{rdm}-kendall-tau-a")(X, Y) == pytest.approx(tau_a, rel=1e-12)
    assert get(f"rsa-{rdm}-spearman")(X, Y) == pytest.approx(spearmanr(a, b)[0], rel=1e-12)


def test_rsa_of_an_rdm_without_variation_raises():
    X = np.eye(12)  # a simplex: every pair of stimuli sqrt(2) apart
    Y = data(n=12, seed=4)[0]
    for args in ((X, Y), (Y, X)):
        with pytest.raises(ValueError, match="no variation"):
            get("rsa-euclidean-pearson")(*args)
    assert get("rsa-euclidean-cosine")(X, Y) > 0  # cosine of a constant RDM is defined


def test_kendall_tau_a_with_ties():
    X = np.repeat(np.arange(4.0), 3)[:, None] * np.array([[1.0, 0.0]])  # many tied distances
    Y = np.random.default_rng(1).integers(0, 3, (12, 2)).astype(float)
    a, b = pdist(X), pdist(Y)
    i, j = np.triu_indices(a.size, 1)
    tau_a = np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size
    assert get("rsa-euclidean-kendall-tau-a")(X, Y) == pytest.approx(tau_a, rel=1e-9)


# ------------------------------------------------------------------- identities, invariances
@pytest.mark.parametrize("i", ids())
def test_identity(i):
    m = get(i)
    X, _ = data(n=40, p=5)
    if m.identity_value is None:
        return
    tol = 2e-2 if "lambda=" in i else 1e-7  # ridge shrinks even a perfect predictor
    assert m(X, X) == pytest.approx(m.identity_value, abs=tol)


def _transform(kind, Z, rng):
    d = Z.shape[1]
    if kind == "translation":
        return Z + 10 * rng.normal(size=d)
    if kind == "isotropic_scale":
        return Z * rng.uniform(0.2, 5)
    if kind == "permutation":
        return Z[:, rng.permutation(d)]
    if kind == "orthogonal":
        return Z @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    return Z @ (rng.standard_normal((d, d)) + 2 * np.eye(d))  # invertible linear


@pytest.mark.parametrize("i", ids() + ["shape-alpha=0", "shape-alpha=0.3"])
def test_declared_invariances_hold(i):
    m = get(i)
    rng = np.random.default_rng(5)
    X, Y = data(n=40, p=5, q=4)
    base = m(X, Y)
    for kind in m.invariances:
        moved = m(_transform(kind, X, rng), _transform(kind, Y, rng))
        assert moved == pytest.approx(base, rel=1e-7, abs=1e-9), kind


@pytest.mark.parametrize("i, kind", [("cka", "invertible_linear"), ("nbs", "invertible_linear"),
                                     ("ridge-r2-lambda=100", "isotropic_scale"),
                                     ("ridge-pearson", "orthogonal"),
                                     ("rsa-cosine-pearson", "translation"),
                                     ("rsa-correlation-pearson", "orthogonal")])
def test_undeclared_invariances_fail(i, kind):
    m = get(i)
    assert kind not in m.invariances
    rng = np.random.default_rng(2)
    X, Y = data(n=40, p=5, q=4)
    assert abs(m(_transform(kind, X, rng), _transform(kind, Y, rng)) - m(X, Y)) > 1e-4


# ---------------------------------------------------------------------------------- gradients
def _finite_difference(m, X, Y, h=1e-6):
    G = np.zeros_like(Y)
    for idx in np.ndindex(*Y.shape):
        up, down = Y.copy(), Y.copy()
        up[idx] += h
        down[idx] -= h
        G[idx] = (m(X, up) - m(X, down)) / (2 * h)
    return G


@pytest.mark.parametrize("i", similarity.differentiable_ids() + EXTRA_GRAD)
def test_gradient_matches_finite_differences(i):
    m = get(i)
    X, Y = data(n=16, p=4, q=3, seed=3)
    value, G = m.value_and_grad(X, Y)
    assert value == pytest.approx(m(X, Y), rel=1e-12)
    assert G.shape == Y.shape and isinstance(G, np.ndarray)
    F = _finite_difference(m, X, Y)
    assert np.linalg.norm(G - F) / np.linalg.norm(F) < 1e-5


@pytest.mark.parametrize("i", ["linreg-r2-cv", "linreg-pearson-cv", "ridge-r2-lambda=0.5-cv",
                               "linreg-r2"])
@pytest.mark.parametrize("q", [8, 12, 16])
def test_regression_gradient_with_as_many_units_as_training_stimuli(i, q):
    """15 stimuli, 5 folds: 12 training stimuli per fold; q = 12 and 16 reach the min-norm
    (interpolating) regime, where the gradient has a null-space term."""
    m = get(i)
    X, Y = data(n=15, p=3, q=q, seed=7)
    value, G = m.value_and_grad(X, Y)
    F = _finite_difference(m, X, Y)
    assert np.linalg.norm(G - F) <= 1e-6 * max(np.linalg.norm(F), 1e-3)


@pytest.mark.parametrize("i", ["cka", "ensd", "nbs", "procrustes-euclidean", "cka-angular"])
def test_more_units_than_stimuli_uses_nxn_form_with_the_same_values(i):
    """n = 12 < p + q: the (n, n) Gram form (and NBS's (n, n) factor of X) against an explicit
    n x n reference and finite differences."""
    m = get(i)
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((12, 30)), rng.standard_normal((12, 25))
    Xc, Yc = H(12) @ X, H(12) @ Y
    K, L = Xc @ Xc.T, Yc @ Yc.T
    lam, V = np.linalg.eigh(K)
    nbs = np.linalg.svd((V * np.sqrt(np.maximum(lam, 0))).T @ Yc, compute_uv=False).sum()
    nbs /= np.linalg.norm(Xc) * np.linalg.norm(Yc)
    ref = {"cka": np.sum(K * L) / np.linalg.norm(K) / np.linalg.norm(L),
           "ensd": np.trace(K) * np.trace(L) * np.sum(K * L) / np.sum(K * K) / np.sum(L * L),
           "nbs": nbs, "procrustes-euclidean": math.sqrt(2 - 2 * nbs)}
    ref["cka-angular"] = math.acos(ref["cka"])
    assert m(X, Y) == pytest.approx(ref[i], rel=1e-10)
    G = m.grad(X, Y)
    F = _finite_difference(m, X, Y)
    assert np.linalg.norm(G - F) / np.linalg.norm(F) < 1e-5


# ------------------------------------------------------------------------- scale, offset, dtype
SCALES = [1e-300, 1e-30, 1e-8, 1e30, 1e300]


def _ridge_rescaled(i, s):
    """The id whose value at Y * s equals measure i's value at Y (ridge: lambda * s²)."""
    m = get(i)
    if "lambda" not in m.params:
        return m
    lam = m.params["lambda"] * s * s
    if not 0 < lam < float("inf"):
        return None  # (1e-300)² is not a float: 1e-30..1e30 stay covered
    return get(i.replace(f"lambda={m.params['lambda']:g}", f"lambda={lam!r}"))


@pytest.mark.parametrize("i", ids())
def test_values_and_gradients_are_invariant_to_the_scale_of_the_data(i):
    m = get(i)
    X, Y = data(n=24, p=5, q=4, seed=11)
    base = m(X, Y)
    G = m.grad(X, Y) if m.differentiable else None
    for s in SCALES:
        assert m(X * s, Y) == pytest.approx(base, rel=1e-9, abs=1e-12), ("X", s)
        ms = _ridge_rescaled(i, s)
        if ms is None:
            continue
        assert ms(X, Y * s) == pytest.approx(base, rel=1e-9, abs=1e-12), s
        if G is not None:
            Gs = ms.grad(X, Y * s) * s
            assert np.all(np.isfinite(Gs)), s
            np.testing.assert_allclose(Gs, G, rtol=1e-7, atol=1e-9 * np.abs(G).max())


@pytest.mark.parametrize("i", [i for i in ids() if "translation" in get(i).invariances])
def test_large_offsets_cost_no_accuracy(i):
    """X + 1e8: the data themselves keep ~8 digits of their spread; so must the measure."""
    m = get(i)
    X, Y = data(n=24, p=5, q=4, seed=12)
    assert m(X + 1e8, Y) == pytest.approx(m(X, Y), rel=1e-6, abs=1e-7)
    assert m(X, Y - 3e7) == pytest.approx(m(X, Y), rel=1e-6, abs=1e-7)


FLOAT32 = ["cka", "cka-angular", "nbs", "procrustes-angular", "procrustes-euclidean", "ensd",
           "cca", "shape-alpha=0.5", "rsa-euclidean-pearson", "rsa-correlation-cosine",
           "rsa-cosine-spearman"]


@pytest.mark.parametrize("i", FLOAT32)
def test_float32_input_is_computed_in_float32_within_bounds(i):
    """float32 in -> float32 arithmetic (a float32 gradient), values within 2e-5 of float64 at
    every scale float32 can hold, with offsets of 1.5 x each unit's spread (centred through the
    Grams where the measure does so); float64 input stays float64."""
    m = get(i)
    rng = np.random.default_rng(13)
    latent = rng.standard_normal((300, 8))
    X = latent @ rng.standard_normal((8, 40)) + 0.5 * rng.standard_normal((300, 40))
    Y = latent @ rng.standard_normal((8, 30)) + rng.standard_normal((300, 30))
    X, Y = X + 1.5 * X.std(axis=0), Y - 1.5 * Y.std(axis=0)  # offsets the Gram centring takes
    exact = m(X, Y)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    for s in (1e-30, 1.0, 1e30):
        assert m(X32 * np.float32(s), Y32) == pytest.approx(exact, rel=2e-5, abs=2e-6), s
    far = X32 + np.float32(30) * X32.std(axis=0)  # an offset the Grams cannot absorb in float32
    assert m(far, Y32) == pytest.approx(m(far.astype(np.float64), Y32.astype(np.float64)),
                                        rel=2e-5, abs=2e-6)
    if m.differentiable:
        value, G = m.value_and_grad(X32, Y32)
        G64 = m.grad(X, Y)
        assert G.dtype == np.float32 and m.grad(X, Y).dtype == np.float64
        assert np.linalg.norm(G - G64) <= 1e-4 * np.linalg.norm(G64)


@pytest.mark.parametrize("i", ["nbs", "procrustes-angular"])
def test_gradient_from_uncentred_data_equals_the_centred_one(i):
    """NBS / Procrustes form their gradient from the uncentred data (corrected by a rank-one
    term): equal to the gradient of the centred data, in float64 at an offset of 50 x the spread,
    and in float32 at 1.5 x (lazily) and 30 x (centred first)."""
    m = get(i)
    X, Y = data(n=200, p=12, q=9, seed=21)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    value, G = m.value_and_grad(Xc, Yc)
    offset_value, offset_G = m.value_and_grad(Xc + 50 * Xc.std(axis=0), Yc - 50 * Yc.std(axis=0))
    assert offset_value == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(offset_G, G, rtol=0, atol=1e-10 * np.abs(G).max())
    for k in (1.5, 30):
        X32 = (Xc + k * Xc.std(axis=0)).astype(np.float32)
        Y32 = (Yc - k * Yc.std(axis=0)).astype(np.float32)
        G32 = m.grad(X32, Y32)
        assert G32.dtype == np.float32
        np.testing.assert_allclose(G32, G, rtol=0, atol=4e-5 * np.abs(G).max())  # float32 rounding: ~1e-5


def test_ill_conditioned_float32_whitening_falls_back_to_float64():
    """Units 1e3 apart in scale: whitening float32 Grams would lose digits, so CCA redoes the
    work in float64 and matches the float64 result of the same (float32-rounded) data."""
    X, Y = data(n=60, p=5, q=4, seed=20)
    X[:, 0] *= 1e-3
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    m = get("cca")
    value, G = m.value_and_grad(X32, Y32)
    ref, G_ref = m.value_and_grad(X32.astype(np.float64), Y32.astype(np.float64))
    assert value == pytest.approx(ref, rel=1e-7) and G.dtype == np.float64
    np.testing.assert_allclose(G, G_ref, rtol=1e-5, atol=1e-7 * np.abs(G_ref).max())


@pytest.mark.parametrize("i", ["ridge-r2", "cka-debiased", "linreg-pearson-cv", "cka-rbf"])
def test_float32_input_to_float64_measures_is_upcast(i):
    X, Y = data(n=30, seed=14)
    m = get(i)
    assert m(X.astype(np.float32), Y.astype(np.float32)) == pytest.approx(
        m(X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)),
        rel=1e-12)
    assert m.grad(X.astype(np.float32), Y.astype(np.float32)).dtype == np.float64


def test_torch_tensors_and_array_likes_are_read():
    torch = pytest.importorskip("torch")
    X, Y = data(n=20, seed=15)
    for i in ["cka", "procrustes-angular", "ridge-r2-cv", "rsa-euclidean-spearman"]:
        m = get(i)
        tx, ty = torch.tensor(X), torch.tensor(Y, requires_grad=True)
        assert m(tx, ty) == pytest.approx(m(X, Y), rel=1e-12)
        assert m(tx.float(), ty.float()) == pytest.approx(m(X, Y), rel=1e-4)
        if m.differentiable:
            np.testing.assert_allclose(m.grad(tx, ty), m.grad(X, Y), rtol=1e-10)
    assert ty.grad is None  # nothing was written into the tensor


class _ArrayLike:
    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_numpy_like_objects_are_read():
    X, Y = data(n=20, seed=16)
    assert get("nbs")(_ArrayLike(X), _ArrayLike(Y)) == pytest.approx(get("nbs")(X, Y), rel=1e-12)


def test_kendall_tau_a_works_with_old_scipy_results(monkeypatch):
    """scipy < 1.10 returns KendalltauResult(correlation, pvalue), without .statistic."""
    import collections

    import scipy.stats

    old = collections.namedtuple("KendalltauResult", ["correlation", "pvalue"])
    new_kendalltau = scipy.stats.kendalltau
    monkeypatch.setattr(scipy.stats, "kendalltau",
                        lambda *a, **k: old(*tuple(new_kendalltau(*a, **k))[:2]))
    from fastmlem import numpy_backend

    X, Y = data(n=12, seed=17)
    a, b = pdist(X), pdist(Y)
    i, j = np.triu_indices(a.size, 1)
    tau_a = np.sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])) / i.size
    assert numpy_backend.kendall_tau_a(a, b) == pytest.approx(tau_a, rel=1e-9)  # the twin reads scipy's result
    assert get("rsa-euclidean-kendall-tau-a")(X, Y) == pytest.approx(tau_a, rel=1e-9)


@pytest.mark.parametrize("i", ["svcca", "rsa-euclidean-spearman", "rsa-cosine-kendall-tau-a"])
def test_non_differentiable_grad_raises(i):
    X, Y = data()
    with pytest.raises(NotImplementedError, match="not differentiable.*cka"):
        get(i).grad(X, Y)


# ------------------------------------------------------------------------------------- errors
def test_input_errors():
    X, Y = data(n=10)
    m = get("cka")
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        get("cka-debiased")(X[:3], Y[:3])
    with pytest.raises(ValueError, match="10 rows in X and 9 in Y"):
        m(X, Y[:9])
    for bad in (np.nan, np.inf):
        Z = X.copy()
        Z[2, 1] = bad
        with pytest.raises(ValueError, match="NaN"):
            m(Z, Y)
    with pytest.raises(ValueError, match="1-D"):
        m(X[:, 0], Y)
    with pytest.raises(ValueError, match="2-D"):
        m(X, Y[:, :, None])
    with pytest.raises(ValueError, match="same for every stimulus"):
        m(X, np.ones_like(Y))
    with pytest.raises(TypeError, match="real numbers"):
        m(X.astype(str), Y)
    with pytest.raises(ValueError, match="rank"):
        get("cca")(X, np.hstack([Y, Y]))  # more units than stimuli allow
    with pytest.raises(ValueError, match="cosine RDM of Y is undefined"):
        Z = Y.copy()
        Z[0] = 0
        get("rsa-cosine-pearson")(X, Z)


def test_inputs_not_modified_and_dataframes_accepted():
    X, Y = data(n=20)
    X0, Y0 = X.copy(), Y.copy()
    for i in ids():
        m = get(i)
        m(X, Y)
        if m.differentiable:
            m.grad(X, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    assert get("cka")(pd.DataFrame(X), pd.DataFrame(Y)) == pytest.approx(get("cka")(X, Y))
    assert get("cka")(X.astype(np.float32), Y) == pytest.approx(get("cka")(X, Y), rel=1e-6)


# ------------------------------------------------------------------------------- optimisation
def _target(seed=0, n=80):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4)) * np.array([3.0, 1.5, 0.5, 0.2])
    labels = (z[:, 0] > 0).astype(int)
    return z @ rng.standard_normal((4, 12)) + 0.05 * rng.standard_normal((n, 12)), labels


def test_optimize_improves_score_and_records_history():
    X, labels = _target()
    res = similarity.optimize(X, "cka", {"sign": labels}, max_steps=40, random_state=0,
                              record_every=10, n_components=4)
    assert list(res.history.columns) == ["step", "score", "quantity", "component", "value"]
    assert set(res.history["quantity"]) == {"pc_r2", "decoding", "decoding_relative"}
    assert list(res.scores.index) == [0, 10, 20, 30, 40]
    assert res.scores.iloc[-1] > res.scores.iloc[0] + 0.3
    assert res.scores.iloc[-1] == pytest.approx(get("cka")(X, res.Y))
    assert res.pc_r2.shape == (5, 4) and list(res.pc_r2.columns) == ["PC1", "PC2", "PC3", "PC4"]
    assert res.pc_r2.iloc[-1, 0] > 0.8  # the top PC is recovered
    assert res.decoding.columns.tolist() == ["sign"] and res.target_decoding["sign"] > 0.9
    assert res.pcs_captured().iloc[-1] >= 1
    assert res.pc_variance.shape == (4,) and np.all(np.diff(res.pc_variance) <= 0)
    assert res.Y.shape == X.shape and res.n_steps == 40 and not res.reached


def test_optimize_stops_at_stop_score_for_scores_and_distances():
    X, _ = _target()
    res = similarity.optimize(X, "cka", max_steps=500, stop_score=0.8, random_state=1,
                              record_every=50)
    assert res.reached and res.n_steps < 500 and res.scores.iloc[-1] >= 0.8
    res = similarity.optimize(X, "procrustes-angular", max_steps=500, stop_score=0.5,
                              random_state=1, record_every=50)
    assert res.reached and res.scores.iloc[-1] <= 0.5 < res.scores.iloc[0]
    again = similarity.optimize(X, "procrustes-angular", max_steps=500, stop_score=0.5,
                                random_state=1, record_every=50)
    np.testing.assert_array_equal(res.Y, again.Y)


def test_optimize_errors():
    X, labels = _target()
    with pytest.raises(NotImplementedError, match="differentiable"):
        similarity.optimize(X, "rsa-euclidean-spearman", max_steps=1)
    with pytest.raises(ValueError, match="one label per stimulus"):
        similarity.optimize(X, "cka", labels[:-1], max_steps=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        similarity.optimize(X, "cka", np.zeros(len(X)), max_steps=1)


def test_plot_optimization_renders():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    X, labels = _target()
    res = similarity.optimize(X, "nbs", labels, max_steps=20, random_state=0, record_every=5)
    fig = similarity.plot_optimization(res)
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------------------------- cupy
def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        cp.zeros(1)
    except Exception:  # cupy installed but no GPU
        pytest.skip("no GPU visible to cupy")
    X, Y = data(n=30)
    for i in ["cka", "cka-debiased", "cka-rbf", "nbs", "procrustes-euclidean", "shape-alpha=0.3",
              "cca", "ensd", "ridge-r2-cv", "ridge-pearson", "rsa-correlation-pearson",
              "rsa-euclidean-spearman"]:
        m = get(i)
        assert m(cp.asarray(X), cp.asarray(Y)) == pytest.approx(m(X, Y), rel=1e-9)
        if m.differentiable:
            G = m.grad(cp.asarray(X), cp.asarray(Y))
            assert isinstance(G, cp.ndarray)
            np.testing.assert_allclose(cp.asnumpy(G), m.grad(X, Y), rtol=1e-7, atol=1e-10)
