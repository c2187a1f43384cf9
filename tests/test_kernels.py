"""Compiled kernels (fastmlem.ops) against their numpy twins (fastmlem.numpy_backend)."""
import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from fastmlem import _shared
from fastmlem import numpy_backend as nb
from fastmlem import ops
from fastmlem._shared import minmax_scaled


@pytest.mark.parametrize("n,size,seed,stream", [(3, 10, 0, 0), (1000, 5000, 42, 7), (2**20 + 3, 1000, 2**63 + 5, 1)])
def test_sample_pairs_matches_twin_and_is_reproducible(n, size, seed, stream):
    i, j = ops.sample_pairs(n, size, seed, stream)
    ti, tj = nb.sample_pairs(n, size, seed, stream)
    np.testing.assert_array_equal(i, ti)
    np.testing.assert_array_equal(j, tj)
    assert i.min() >= 0 and j.max() < n
    i2, _ = ops.sample_pairs(n, size, seed, stream + 1)
    assert size < 20 or not np.array_equal(i, i2)


def test_sample_pairs_is_uniform():
    n = 7
    i, j = ops.sample_pairs(n, 70000, 3)
    for idx in (i, j):
        counts = np.bincount(idx, minlength=n)
        assert np.all(np.abs(counts / 10000 - 1) < 0.05)
    assert abs(np.corrcoef(i, j)[0, 1]) < 0.02


@pytest.mark.parametrize("interactions", [False, True])
def test_feature_distances_match_twin(interactions):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(50, 5)).astype(float)
    X[:, 4] = rng.random(50) * 1.5          # numeric, distances above 1 are clipped
    X[rng.random(50) < 0.2, 1] = np.nan      # missing values
    i, j = nb.sample_pairs(50, 400, 1)
    for fill in (0.0, 0.5):
        got = ops.feature_distances(X, i, j, interactions, fill)
        want = nb.feature_distances(X, i, j, interactions, fill)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert got.shape == (400, 15 if interactions else 5)


@pytest.mark.parametrize("interactions", [False, True])
def test_precomputed_feature_distances_match_twin(interactions):
    rng = np.random.default_rng(1)
    Xd = rng.uniform(-0.5, 1.5, size=(30, 30, 4))   # out-of-range values are clipped to [0, 1]
    Xd[rng.random(Xd.shape) < 0.1] = np.nan
    i, j = nb.sample_pairs(30, 500, 2)
    for fill in (0.0, 0.7):
        got = ops.feature_distances_precomputed(Xd, i, j, interactions, fill)
        np.testing.assert_array_equal(got, nb.feature_distances_precomputed(Xd, i, j, interactions, fill))
    with pytest.raises(ValueError, match="n, n, m"):
        ops.feature_distances_precomputed(Xd[:, :29], i, j)
    with pytest.raises(ValueError, match="feature_distances_precomputed"):
        ops.feature_distances(Xd, i, j)


def test_feature_distances_rejects_bad_indices():
    with pytest.raises(IndexError):
        ops.feature_distances(np.zeros((4, 2)), np.array([0, 4]), np.array([1, 2]))
    with pytest.raises(ValueError):
        ops.feature_distances(np.zeros((4, 2)), np.array([0]), np.array([1, 2]))


def test_rank_average_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(6, 101)).astype(float)
    np.testing.assert_array_equal(ops.rank_average(x), rankdata(x, axis=1))
    np.testing.assert_array_equal(ops.rank_average(np.ones(3)), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("crowded", [0, 8000, 60000])
def test_rank_average_of_long_rows_matches_scipy(crowded):
    """Rows of 65,536+ values sort on keys spread over [min, max]: a crowd of values 2^-40 apart
    shares keys (8,000 of 70,000), and a crowd of 60,000 falls back to float keys (colliding too)."""
    rng = np.random.default_rng(crowded)
    x = rng.normal(size=70_000)
    x[:crowded] = 1.0 + rng.integers(0, 50, crowded) * 2.0**-40
    x[-5:] = [0.0, -0.0, 0.0, -1e6, 1e6]
    np.testing.assert_array_equal(ops.rank_average(x), rankdata(x))
    y = x + rng.normal(size=x.size)
    assert ops.spearman(x, y) == pytest.approx(spearmanr(x, y)[0], abs=1e-13)


def test_spearman_matches_scipy_batched():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 300))
    y = x + rng.normal(size=x.shape)
    x[:, ::3] = np.round(x[:, ::3])  # ties
    got = ops.spearman(x, y)
    want = [spearmanr(a, b)[0] for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(got, nb.spearman(x, y), atol=1e-12)
    assert ops.spearman(np.ones(5), np.arange(5.0)) == 0.0  # constant vector: 0, not NaN


def test_spearman_errors():
    with pytest.raises(ValueError, match="same shape"):
        ops.spearman(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        ops.spearman(np.array([1.0, np.nan, 2.0]), np.ones(3))


def _tau_a_brute(a, b):
    """Kendall's tau-a by its definition: the mean over all pairs k < l of sign(a_k - a_l) sign(b_k - b_l)
    (signs by comparison, so that infinities compare too)."""
    k, l = np.triu_indices(a.size, 1)
    sign = (lambda v: (v[k] > v[l]).astype(int) - (v[k] < v[l]))
    return np.sum(sign(a) * sign(b)) / k.size


@pytest.mark.parametrize("B", [2, 3, 31, 32, 33, 64, 65, 100, 257, 1000])
@pytest.mark.parametrize("levels", [1, 2, 5, 40, None])  # None: continuous (no ties)
def test_kendall_tau_a_counts_pairs_exactly(B, levels):
    """Ties in a, in b and in both; run lengths around the 32-value insertion-sorted blocks."""
    rng = np.random.default_rng(B * 7 + (levels or 0))
    a, b = (rng.normal(size=B) if levels is None else rng.integers(0, levels, B).astype(float) for _ in range(2))
    b = b + 0.5 * a  # correlated, so concordant and discordant counts both matter
    want = _tau_a_brute(a, b)
    assert ops.kendall_tau_a(a, b) == want  # the same integers divided: exactly equal
    assert nb.kendall_tau_a(a, b) == pytest.approx(want, abs=1e-13)


@pytest.mark.parametrize("crowded", [200, 380])
def test_kendall_tau_a_values_that_only_differ_below_the_sort_keys(crowded):
    """Values whose 32-bit sort keys collide, -0.0 == 0.0, and infinities. The keys map [min, max]
    onto 2^32 integers: a crowd of near-equal values plus a wide spread share keys (200 of 400), and
    a crowd of 380 in one top digit falls back to float keys, where 1 + k 2^-40 collide too."""
    rng = np.random.default_rng(5)
    a = 1.0 + rng.integers(0, 6, 400) * 2.0**-40
    a[crowded:] = rng.uniform(0, 1e6, 400 - crowded)
    b = rng.integers(0, 4, 400) * 2.0**-45 + np.where(rng.random(400) < 0.5, a, 1.0)
    assert ops.kendall_tau_a(a, b) == _tau_a_brute(a, b)
    assert ops.kendall_tau_a(-a, b) == _tau_a_brute(-a, b)
    z = np.array([0.0, -0.0, np.inf, -np.inf, 1.0, 0.0, np.inf])
    w = np.array([3.0, 1.0, 2.0, 2.0, -0.0, 0.0, 5.0])
    assert ops.kendall_tau_a(z, w) == _tau_a_brute(z, w)
    big = 2**60 + np.arange(50, dtype=np.int64)  # integers float64 cannot tell apart: ranked exactly
    assert ops.kendall_tau_a(big, -big) == -1.0


def test_kendall_tau_a_batched_and_long_rows_match_scipy():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 30, size=(4, 500)).astype(float)
    y = x + rng.integers(0, 20, size=x.shape)
    np.testing.assert_allclose(ops.kendall_tau_a(x, y), nb.kendall_tau_a(x, y), rtol=0, atol=1e-13)
    assert ops.kendall_tau_a(x, y).shape == (4,)
    # one long row: the merges run in parallel
    a = rng.integers(0, 1000, 300_001).astype(float)
    b = a + rng.normal(scale=300, size=a.size).round()
    assert ops.kendall_tau_a(a, b) == pytest.approx(float(nb.kendall_tau_a(a, b)), abs=1e-12)
    assert ops.kendall_tau_a(np.ones(5), np.arange(5.0)) == 0.0  # every pair tied in x: 0, not NaN
    c = rng.normal(size=300_001)  # ~20 pairs in neighbouring sort keys: any misordering shows
    assert ops.kendall_tau_a(c, c) == 1.0
    assert ops.kendall_tau_a(c - 3, -c) == -1.0


def test_kendall_tau_a_errors():
    with pytest.raises(ValueError, match="same shape"):
        ops.kendall_tau_a(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        ops.kendall_tau_a(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="NaN"):
        ops.kendall_tau_a(np.array([1.0, np.nan, 2.0]), np.ones(3))
    with pytest.raises(ValueError, match="0-d"):
        ops.kendall_tau_a(1.0, 2.0)
    from fastmlem import _backend
    for bad in ((np.ones((2, 3)), np.ones((3, 2))), (np.ones(1), np.ones(1)), (np.array([np.nan, 1]), np.ones(2))):
        with pytest.raises(ValueError):
            _backend.require_core().kendall_tau_a(*bad)  # the binding checks on its own


def test_soft_rank_twin_limits_and_gradient():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    hard, _ = nb.soft_rank(x, 1e-6)
    np.testing.assert_allclose(hard, rankdata(x))
    # very strong regularisation: affine in x, centred on the mean rank
    soft, _ = nb.soft_rank(x * 1e-3, 1.0)
    np.testing.assert_allclose(soft - soft.mean(), (x - x.mean()) * 1e-3, atol=1e-12)
    assert abs(soft.mean() - 20.5) < 1e-9
    for reg in ("l2", "kl"):
        g = rng.normal(size=40)
        r, state = nb.soft_rank(x, 0.5, reg)
        analytic = nb.soft_rank_vjp(state, g)
        eps = 1e-6
        numeric = np.array([(g @ nb.soft_rank(x + eps * e, 0.5, reg)[0] - g @ nb.soft_rank(x - eps * e, 0.5, reg)[0]) / (2 * eps)
                            for e in np.eye(40)])
        np.testing.assert_allclose(analytic, numeric, atol=1e-5)


@pytest.mark.parametrize("kind,m", [("diag", 4), ("free", 6), ("spd", 4)])
def test_weight_parametrisations_gradient(kind, m):
    rng = np.random.default_rng(4)
    q = m * (m + 1) // 2 if kind == "spd" else m
    p = rng.uniform(-1, 1, q)
    g = rng.normal(size=q)
    w = nb.weights(p, m, kind)
    assert np.isclose(np.linalg.norm(w if kind != "spd" else _full(w, m)), 1.0)
    eps = 1e-6
    numeric = np.array([(g @ nb.weights(p + eps * e, m, kind) - g @ nb.weights(p - eps * e, m, kind)) / (2 * eps) for e in np.eye(q)])
    np.testing.assert_allclose(nb.weights_vjp(p, m, kind, g), numeric, atol=1e-7)


def _full(w_tril, m):
    W = np.zeros((m, m))
    W[np.tril_indices(m)] = w_tril
    return W + np.tril(W, -1).T


def test_spd_weights_are_positive_definite():
    m = 5
    W = _full(nb.weights(np.random.default_rng(5).uniform(-1, 1, 15), m, "spd"), m)
    assert np.linalg.eigvalsh(W).min() > 0


def test_rdm_lookup_matches_pdist():
    rng = np.random.default_rng(6)
    Y = rng.normal(size=(30, 8))
    D = nb.condensed_rdm(Y)
    i, j = nb.sample_pairs(30, 200, 0)
    np.testing.assert_allclose(nb.rdm_lookup(D, 30, i, j), nb.neural_distances(Y, i, j), atol=1e-12)


def test_rank_loss_gradient_finite_difference():
    rng = np.random.default_rng(7)
    F = rng.random((60, 3))
    y = F @ np.array([0.2, 0.5, 0.8]) + 0.1 * rng.random(60)
    w = np.array([0.3, 0.3, 0.4])
    for strength in (1.0, 0.05):
        _, g = nb.rank_loss_grad(F, w, y, strength)
        eps = 1e-7
        numeric = [(nb.rank_loss_grad(F, w + eps * e, y, strength)[0] - nb.rank_loss_grad(F, w - eps * e, y, strength)[0]) / (2 * eps) for e in np.eye(3)]
        np.testing.assert_allclose(g, numeric, atol=1e-5)


@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("strength", [1.0, 0.05, "auto"])
def test_soft_rank_matches_twin_batched(reg, strength):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 64))
    x[:, ::5] = np.round(x[:, ::5])  # ties
    r, state = ops.soft_rank(x, strength, reg)
    g = rng.normal(size=x.shape)
    grad = ops.soft_rank_vjp(state, g)
    for t in range(4):
        eps = _shared.auto_strength(x[t]) if strength == "auto" else strength
        rr, st = nb.soft_rank(x[t], eps, reg)
        np.testing.assert_allclose(r[t], rr, atol=1e-10)
        np.testing.assert_allclose(grad[t], nb.soft_rank_vjp(st, g[t]), atol=1e-10)


def test_soft_rank_single_long_vector_and_n3():
    x = np.random.default_rng(9).permutation(100_000).astype(float)
    r, _ = ops.soft_rank(x, 0.5)  # gaps of 1/0.5 exceed the rank spacing 1: no pooling, hard ranks
    np.testing.assert_allclose(r, rankdata(x))
    r3, _ = ops.soft_rank(np.array([3.0, 1.0, 2.0]), 1e-6)
    np.testing.assert_allclose(r3, [3, 1, 2])
    with pytest.raises(ValueError, match="finite"):
        ops.soft_rank(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="regularization"):
        ops.soft_rank(np.ones(3), 1.0, "l1")


def test_sorts_exact_where_float_keys_collide():
    """The radix sorts on float keys, then orders runs of equal float keys by the doubles: values that
    differ only below float precision, beyond float range or in the subnormals must still rank exactly."""
    rng = np.random.default_rng(11)
    close = 1.0 + rng.permutation(300) * 1e-13          # one float key, 300 distinct doubles
    ties = np.repeat(1.0 + np.arange(3) * 1e-12, 40)     # exact ties inside a float collision
    far = np.array([3e38, 3.5e38, 1e39, 1e300, -1e39, -3.5e38, 1e-40, 2e-40, -1e-45, 1e-320, 2e-320])
    x = rng.permutation(np.concatenate([close, ties, far, rng.normal(size=200)]))
    np.testing.assert_array_equal(ops.rank_average(x), rankdata(x))
    np.testing.assert_array_equal(ops.rank_average(-x), rankdata(-x))
    assert ops.spearman(x, np.arange(x.size, dtype=float)) == pytest.approx(spearmanr(x, np.arange(x.size))[0],
                                                                              abs=1e-14)
    scaled = (x - x.min()) / np.ptp(x) * 1e4  # soft rank (sorts descending): same as the twin
    r, state = ops.soft_rank(scaled, 1e-3)
    want, want_state = nb.soft_rank(scaled, 1e-3)
    np.testing.assert_allclose(r, want, atol=1e-9)
    g = rng.normal(size=x.size)
    np.testing.assert_allclose(ops.soft_rank_vjp(state, g), nb.soft_rank_vjp(want_state, g), atol=1e-9)


def test_rank_average_signed_zero_negative_and_huge_values():
    x = np.array([0.0, -0.0, -1e300, 1e300, -np.inf, np.inf, 2.5, -2.5, 0.0, 5e-324])
    np.testing.assert_array_equal(ops.rank_average(x), rankdata(x))
    r, _ = ops.soft_rank(np.array([-0.0, 0.0, -3.0, 7.0]), 1e-9)
    np.testing.assert_allclose(r, [2.5, 2.5, 1, 4], atol=1e-6)


@pytest.mark.parametrize("strength", [1.0, "auto"])
def test_rank_loss_grad_matches_twin(strength):
    rng = np.random.default_rng(10)
    F = rng.random((500, 4))
    y = F @ np.array([0.1, 0.2, 0.3, 0.4]) + 0.05 * rng.random(500)
    w = np.array([0.4, 0.3, 0.2, 0.1])
    got = ops.rank_loss_grad(F, w, y, strength)
    want = nb.rank_loss_grad(F, w, y, strength)
    assert np.isclose(got[0], want[0], atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], atol=1e-10)


@pytest.mark.parametrize("interactions", [False, True])
@pytest.mark.parametrize("strength, regularization", [(1.0, "l2"), ("auto", "l2"), (0.3, "kl")])
def test_fused_mlem_step_equals_the_composed_objective(interactions, strength, regularization):
    """ops.mlem_step (one C++ call) == sample_pairs -> rows -> min-max^2 -> ops.rank_loss_grad."""
    from fastmlem import ops
    rng = np.random.default_rng(5)
    n, m, B = 57, 4, 701
    X = rng.integers(0, 3, (n, m)).astype(float) / 2
    X[3, 1] = np.nan
    D = nb.condensed_rdm(rng.normal(size=(n, 6)))
    q = m * (m + 1) // 2 if interactions else m
    w = rng.uniform(-1, 1, q)
    step = ops.mlem_step(X, D, interactions, 0.25, B, seed=11, strength=strength, regularization=regularization)
    lo, hi = np.inf, -np.inf
    for stream in range(3):
        score, grad, lo_c, hi_c = step(stream, w, lo, hi)
        i, j = ops.sample_pairs(n, B, 11, stream)
        F = ops.feature_distances(X, i, j, interactions, 0.25)
        y = nb.rdm_lookup(D, n, i, j)
        lo, hi = min(lo, y.min()), max(hi, y.max())
        expected_score, expected_grad = ops.rank_loss_grad(F, w, minmax_scaled(y, lo, hi), strength,
                                                           regularization)
        assert (lo_c, hi_c) == (lo, hi)
        assert score == pytest.approx(expected_score, abs=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="condensed RDM"):
        ops.mlem_step(X, D[:-1], False, 0.0, B, 0)


@pytest.mark.parametrize("interactions", [False, True])
def test_fused_mlem_step_with_precomputed_feature_distances(interactions):
    """(n, n, m) per-feature distances go through the same fused step as the composed objective."""
    from fastmlem import ops
    rng = np.random.default_rng(6)
    n, m, B = 40, 3, 500
    Xd = rng.uniform(0, 1.2, (n, n, m))
    D = nb.condensed_rdm(rng.normal(size=(n, 5)))
    w = rng.uniform(0.1, 1, m * (m + 1) // 2 if interactions else m)
    score, grad, lo, hi = ops.mlem_step(Xd, D, interactions, 0.0, B, seed=3)(0, w, np.inf, -np.inf)
    i, j = ops.sample_pairs(n, B, 3, 0)
    y = nb.rdm_lookup(D, n, i, j)
    F = nb.feature_distances_precomputed(Xd, i, j, interactions)
    expected_score, expected_grad = ops.rank_loss_grad(F, w, minmax_scaled(y, lo, hi))
    assert (lo, hi) == (y.min(), y.max())
    assert score == pytest.approx(expected_score, abs=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------- neural distances of sampled pairs ---
def neural_rtol(Y, metric):
    """Float16/32 rows are summed in float for euclidean and manhattan (error bound ~1.1e-6 on the
    squared sum / the sum), in double otherwise."""
    return 1e-6 if np.asarray(Y).dtype.itemsize < 8 and metric in ("euclidean", "manhattan") else 1e-12


def _check_neural(Y, i, j, atol=1e-12):
    for metric in nb.METRICS:
        got = ops.neural_distances(Y, i, j, metric)
        assert got.dtype == np.float64 and got.shape == (len(i),)
        np.testing.assert_allclose(got, nb.neural_distances(Y, i, j, metric), rtol=neural_rtol(Y, metric), atol=atol,
                                   err_msg=metric)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,p,B", [(200, 37, 5000), (3, 5, 1), (3, 1, 50), (40, 20000, 300), (5000, 64, 70_000)])
def test_neural_distances_match_twin(dtype, n, p, B):
    rng = np.random.default_rng(n + p)
    Y = (rng.normal(size=(n, p)) * rng.uniform(0.1, 100, size=(n, 1))).astype(dtype)
    i, j = ops.sample_pairs(n, B, 3)
    _check_neural(Y, i, j)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neural_distances_adversarial(dtype):
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(6, 9)).astype(dtype)
    Y[2] = 0  # zero row: cosine distance 1 to every other row
    i, j = np.array([0, 2, 2, 1, 4, 5, 3]), np.array([0, 2, 3, 1, 4, 2, 3])  # includes i == j pairs
    _check_neural(Y, i, j)
    np.testing.assert_array_equal(ops.neural_distances(Y, i, j, "cosine")[1:3], [0.0, 1.0])
    same = i == j
    for metric in ops.METRICS:  # a stimulus is at distance exactly 0 from itself, as in the RDM
        assert (ops.neural_distances(Y, i, j, metric)[same] == 0).all()
    # empty batch, and integer / float16 inputs (cast to float64)
    assert ops.neural_distances(Y, np.array([], int), np.array([], int)).shape == (0,)
    Yi = rng.integers(-5, 5, size=(6, 9))
    _check_neural(Yi, i, j)
    _check_neural(Yi.astype(np.float16), i, j)


def test_neural_distances_non_contiguous_and_huge_p():
    rng = np.random.default_rng(6)
    big = rng.normal(size=(30, 400)).astype(np.float32)
    i, j = ops.sample_pairs(15, 500, 2)
    for view in (big[::2], big[::2, 50:300], big[:15, ::3], big[:, :15].T, big[::-2], np.asfortranarray(big[:15])):
        _check_neural(view, i, j)
    Y = rng.normal(size=(4, 1_000_000))  # long rows: sums in double, float sums in blocks
    Y[2], Y[3] = 0.0, 1.01  # equal terms: one float sum of all of them would round the same way each time
    i, j = np.array([0, 1, 2, 3, 0]), np.array([1, 2, 3, 0, 0])
    for dtype in (np.float16, np.float32, np.float64):
        _check_neural(Y.astype(dtype), i, j, atol=1e-9)


@pytest.mark.parametrize("dtype,scale", [(np.float32, s) for s in (2.0**-60, 1e-30, 1.0, 1e18, 1e30)]
                         + [(np.float16, 1.0), (np.float16, 2.0**-12)])
def test_float_sums_do_not_depend_on_the_scale(dtype, scale):
    """Euclidean / manhattan sums of float16/32 rows taken in float: a sum that would underflow or
    overflow float is taken again in double, so tiny and huge Y give the twin's distances."""
    rng = np.random.default_rng(8)
    Y = rng.normal(size=(50, 300))
    Y[1] = Y[0] + 1e-3 * rng.normal(size=300)  # a near-duplicate: small squared sum
    Y = (Y * scale).astype(dtype)
    i, j = ops.sample_pairs(50, 2000, 1)
    i[:3], j[:3] = [0, 1, 2], [1, 0, 2]
    for metric in ("euclidean", "manhattan"):
        got, want = ops.neural_distances(Y, i, j, metric), nb.neural_distances(Y, i, j, metric)
        assert np.isfinite(got).all() and (got[:2] > 0).all() and got[2] == 0
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, err_msg=metric)


def test_neural_distances_errors():
    Y = np.zeros((4, 3))
    with pytest.raises(IndexError):
        ops.neural_distances(Y, np.array([0, 4]), np.array([1, 2]))
    with pytest.raises(IndexError):
        ops.neural_distances(Y, np.array([0, -1]), np.array([1, 2]))
    with pytest.raises(ValueError, match="unknown metric"):
        ops.neural_distances(Y, np.array([0]), np.array([1]), "chebyshev")
    with pytest.raises(ValueError, match="unknown metric"):
        ops.neural_distances(Y, np.array([0]), np.array([1]), "precomputed")
    with pytest.raises(ValueError, match=r"\(n, p\)"):
        ops.neural_distances(np.zeros((4, 3, 2)), np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match="same length"):
        ops.neural_distances(Y, np.array([0]), np.array([1, 2]))
    with pytest.raises(TypeError):
        ops.neural_distances(np.array([["a", "b"], ["c", "d"]]), np.array([0]), np.array([1]))


# ------------------------------------------------------------------ batched permutation Spearman ---
def test_permutation_spearman_matches_scipy_with_heavy_ties():
    rng = np.random.default_rng(7)
    T, B = 12, 400
    pred = rng.integers(0, 4, size=(T, B)).astype(float)  # categorical predictions: massive ties
    y = np.round(pred + rng.normal(size=(T, B)), 1)
    y[0] = 1.0  # constant targets: 0, not NaN
    permuted = np.stack([rng.permuted(pred, axis=1) for _ in range(3)])
    base, perm = ops.permutation_spearman(pred, permuted, y)
    assert base.shape == (T,) and perm.shape == (3, T)
    np.testing.assert_allclose(base[1:], [spearmanr(a, b)[0] for a, b in zip(pred[1:], y[1:])], atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(perm[k, 1:], [spearmanr(a, b)[0] for a, b in zip(permuted[k, 1:], y[1:])],
                                   atol=1e-12)
    assert base[0] == 0.0 and (perm[:, 0] == 0.0).all()
    np.testing.assert_allclose(base, nb.spearman(pred, y), atol=1e-12)
    b2, p2 = ops.permutation_spearman(pred, permuted[1], y)  # (T, B) permuted -> (T,)
    np.testing.assert_array_equal(b2, base)
    np.testing.assert_array_equal(p2, perm[1])


def test_permutation_spearman_small_and_errors():
    base, perm = ops.permutation_spearman(np.array([[1.0, 2, 3]]), np.array([[3.0, 2, 1]]), np.array([[1.0, 2, 2]]))
    np.testing.assert_allclose([base[0], perm[0]], [spearmanr([1, 2, 3], [1, 2, 2])[0],
                                                     spearmanr([3, 2, 1], [1, 2, 2])[0]], atol=1e-15)
    with pytest.raises(ValueError, match="need pred"):
        ops.permutation_spearman(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="need pred"):
        ops.permutation_spearman(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        ops.permutation_spearman(np.ones((1, 3)), np.array([[1.0, np.nan, 2]]), np.ones((1, 3)))


@pytest.mark.parametrize("span", [0.3, 1.0, 1.0 + 1e-9, 3.0])
def test_soft_rank_affine_shortcut_matches_pav(span):
    """Scaled range <= 1 takes the one-block shortcut (no sort); it must equal the PAV twin."""
    rng = np.random.default_rng(9)
    x = rng.random(2001)
    x = (x - x.min()) / (x.max() - x.min()) * span
    x[::7] = x[3]  # ties
    g = rng.normal(size=x.size)
    ranks, state = ops.soft_rank(x, 1.0)
    want_ranks, want_state = nb.soft_rank(x, 1.0)
    np.testing.assert_allclose(ranks, want_ranks, atol=1e-9)
    np.testing.assert_allclose(ops.soft_rank_vjp(state, g), nb.soft_rank_vjp(want_state, g), atol=1e-9)
