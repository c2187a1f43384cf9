"""CUDA kernels (fastmlem.cuda_ops, fastmlem._cuda) against the CPU kernels and numpy twins.

Every GPU test takes the ``cp`` fixture, which skips when cupy or fastmlem._cuda is missing or no
GPU is visible; the CPU-only machines of CI run only the import test.
"""
import numpy as np
import pytest
from scipy.stats import rankdata

from fastmlem import _backend
from fastmlem import cuda_ops as co
from fastmlem import numpy_backend as nb
from fastmlem import ops


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    pytest.importorskip("fastmlem._cuda")
    if not _backend.cuda_available():
        pytest.skip("no CUDA device visible")
    return cupy


def test_import_without_gpu_is_clean_and_errors_are_clear():
    import fastmlem  # noqa: F401  never fails because CUDA or cupy is absent
    assert isinstance(_backend.cuda_available(), bool)
    if _backend._cupy is None or _backend.cuda_core is None:
        with pytest.raises(ImportError, match="cupy|CUDA module"):
            co.sample_pairs(10, 5, 0)


# ------------------------------------------------------------------------ pairs, features ---
@pytest.mark.parametrize("n,size,seed,stream", [(3, 10, 0, 0), (1000, 5000, 42, 7), (2**20 + 3, 100_003, 2**63 + 5, 1)])
def test_sample_pairs_bit_identical_to_cpu(cp, n, size, seed, stream):
    i, j = co.sample_pairs(n, size, seed, stream)
    ti, tj = ops.sample_pairs(n, size, seed, stream)
    assert i.dtype == cp.int64 and isinstance(i, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(i), ti)
    np.testing.assert_array_equal(cp.asnumpy(j), tj)


def _features(rng, n=57, m=5):
    X = rng.integers(0, 3, size=(n, m)).astype(float)
    X[:, -1] = rng.random(n) * 1.5            # numeric, clipped above 1
    X[rng.random(n) < 0.2, 1] = np.nan         # missing values
    return X


@pytest.mark.parametrize("interactions", [False, True])
def test_feature_distances_match_cpu(cp, interactions):
    rng = np.random.default_rng(0)
    X = _features(rng)
    i, j = ops.sample_pairs(57, 999, 1)
    for fill in (0.0, 0.5):
        got = co.feature_distances(cp.asarray(X), cp.asarray(i), cp.asarray(j), interactions, fill)
        np.testing.assert_array_equal(cp.asnumpy(got), ops.feature_distances(X, i, j, interactions, fill))
    Xp = rng.random((20, 20, 3)) * 1.4 - 0.2
    Xp[0, 1, 2] = np.nan
    i, j = ops.sample_pairs(20, 300, 2)
    got = co.feature_distances_precomputed(cp.asarray(Xp), cp.asarray(i), cp.asarray(j), interactions, 0.25)
    np.testing.assert_array_equal(cp.asnumpy(got), nb.feature_distances_precomputed(Xp, i, j, interactions, 0.25))
    with pytest.raises(IndexError):
        co.feature_distances(cp.asarray(X), cp.asarray([0, 57]), cp.asarray([1, 2]))


@pytest.mark.parametrize("m,interactions", [(1, False), (5, False), (5, True), (17, True), (200, False), (80, True)])
def test_fused_prediction_and_backward_match_unfused(cp, m, interactions):
    rng = np.random.default_rng(m)
    n, B = 41, 3001
    X = rng.integers(0, 2, size=(n, m)).astype(float)
    X[rng.random((n, m)) < 0.05] = np.nan
    q = m * (m + 1) // 2 if interactions else m
    w, g = rng.random(q), rng.normal(size=B)
    i, j, pred = co.sample_predict(cp.asarray(X), cp.asarray(w), B, 9, 3, interactions, 0.5)
    ti, tj = ops.sample_pairs(n, B, 9, 3)
    np.testing.assert_array_equal(cp.asnumpy(i), ti)
    np.testing.assert_array_equal(cp.asnumpy(j), tj)
    F = ops.feature_distances(X, ti, tj, interactions, 0.5)
    np.testing.assert_allclose(cp.asnumpy(pred), F @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(co.predict(cp.asarray(X), cp.asarray(w), i, j, interactions, 0.5)), F @ w,
                               rtol=1e-12, atol=1e-12)
    grad = co.features_vjp(cp.asarray(X), i, j, cp.asarray(g), interactions, 0.5)
    np.testing.assert_allclose(cp.asnumpy(grad), F.T @ g, rtol=1e-10, atol=1e-10)
    again = co.features_vjp(cp.asarray(X), i, j, cp.asarray(g), interactions, 0.5)
    np.testing.assert_array_equal(cp.asnumpy(again), cp.asnumpy(grad))  # deterministic reduction


def test_fused_prediction_precomputed_features(cp):
    rng = np.random.default_rng(11)
    Xp = rng.random((30, 30, 4))
    w = rng.random(10)
    i, j = ops.sample_pairs(30, 500, 0)
    F = nb.feature_distances_precomputed(Xp, i, j, True)
    got = co.predict(cp.asarray(Xp), cp.asarray(w), cp.asarray(i), cp.asarray(j), True)
    np.testing.assert_allclose(cp.asnumpy(got), F @ w, rtol=1e-12)


# ----------------------------------------------------------------------- neural distances ---
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 3, 16, 130, 1000])
def test_neural_distances_match_twin(cp, dtype, p):
    rng = np.random.default_rng(p)
    Y = rng.normal(size=(50, p)).astype(dtype)
    Y[7] = 0.0  # cosine of a zero row counts as distance 1
    i, j = ops.sample_pairs(50, 2000, 5)
    i[:3], j[:3] = 7, [7, 8, 9]
    for metric in nb.METRICS:
        got = co.neural_distances(cp.asarray(Y), cp.asarray(i), cp.asarray(j), metric)
        np.testing.assert_allclose(cp.asnumpy(got), nb.neural_distances(Y, i, j, metric), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="metric"):
        co.neural_distances(cp.asarray(Y), cp.asarray(i), cp.asarray(j), "chebyshev")


def test_condensed_rdm_and_lookups(cp):
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(101, 37))
    Y[5] = 0.0
    for metric in nb.METRICS:
        want = nb.condensed_rdm(Y, metric)
        got = cp.asnumpy(co.condensed_rdm(cp.asarray(Y), metric, block_bytes=8 * 101 * 7))  # several row blocks
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    D = nb.condensed_rdm(Y)
    i, j = ops.sample_pairs(101, 1000, 4)
    got = co.rdm_lookup(cp.asarray(D), 101, cp.asarray(i), cp.asarray(j))
    np.testing.assert_array_equal(cp.asnumpy(got), nb.rdm_lookup(D, 101, i, j))


# ---------------------------------------------------------------------- ranks, Spearman ---
@pytest.mark.parametrize("shape", [(3,), (1, 1), (6, 101), (100, 300), (3, 5000), (2, 70_001), (1_000_000,)])
def test_rank_average_matches_scipy(cp, shape):
    rng = np.random.default_rng(sum(shape))
    x = np.round(rng.normal(size=shape) * 4)  # many ties
    np.testing.assert_array_equal(cp.asnumpy(co.rank_average(cp.asarray(x))), rankdata(x, axis=-1))


def test_rank_average_adversarial_values(cp):
    x = np.array([0.0, -0.0, -1e300, 1e300, -np.inf, np.inf, 2.5, -2.5, 0.0, 5e-324])
    np.testing.assert_array_equal(cp.asnumpy(co.rank_average(cp.asarray(x))), rankdata(x))
    np.testing.assert_array_equal(cp.asnumpy(co.rank_average(cp.ones(1_000_001))), np.full(1_000_001, 500_001.0))
    with pytest.raises(ValueError, match="NaN"):
        co.rank_average(cp.asarray([1.0, np.nan]))


@pytest.mark.parametrize("shape", [(3,), (20, 300), (200, 64), (2, 100_000), (1_000_000,)])
def test_spearman_matches_cpu(cp, shape):
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = rng.normal(size=shape)
    y = x + rng.normal(size=shape)
    x[..., ::3] = np.round(x[..., ::3])
    got = cp.asnumpy(co.spearman(cp.asarray(x), cp.asarray(y)))
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, ops.spearman(x, y), atol=1e-12)
    assert float(co.spearman(cp.ones(5), cp.arange(5.0))) == 0.0


def test_pearson_and_permutation_spearman(cp):
    rng = np.random.default_rng(12)
    T, B, K = 7, 513, 3
    pred, y = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    permuted = np.round(rng.normal(size=(K, T, B)), 1)
    base, perm = co.permutation_spearman(cp.asarray(pred), cp.asarray(permuted), cp.asarray(y))
    np.testing.assert_allclose(cp.asnumpy(base), ops.spearman(pred, y), atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(perm), [ops.spearman(p, y) for p in permuted], atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(co.pearson(cp.asarray(pred), cp.asarray(y[0]))), nb.pearson(pred, y[0][None]),
                               atol=1e-12)


# ----------------------------------------------------------------------------- soft rank ---
@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("strength", [1.0, 0.05, "auto"])
def test_soft_rank_and_vjp_match_twin_batched(cp, reg, strength):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, 1537)) * 30
    x[:, ::5] = np.round(x[:, ::5])      # ties
    x[3] = 2.0                           # a constant row
    x[4, :700] = np.arange(700.0)        # an exact arithmetic run (pools under strength 1)
    g = rng.normal(size=x.shape)
    r, state = co.soft_rank(cp.asarray(x), strength, reg)
    grad = cp.asnumpy(co.soft_rank_vjp(state, cp.asarray(g)))
    r = cp.asnumpy(r)
    for t in range(x.shape[0]):
        eps = nb.soft_rank_strengths(x[t:t + 1], strength)[0]
        rr, st = nb.soft_rank(x[t], eps, reg)
        np.testing.assert_allclose(r[t], rr, rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(grad[t], nb.soft_rank_vjp(st, g[t]), rtol=1e-9, atol=1e-9)


def test_soft_rank_small_and_errors(cp):
    r, _ = co.soft_rank(cp.asarray([3.0, 1.0, 2.0]), 1e-6)
    np.testing.assert_allclose(cp.asnumpy(r), [3, 1, 2])
    r, _ = co.soft_rank(cp.asarray([-0.0, 0.0, -3.0, 7.0]), 1e-9)
    np.testing.assert_allclose(cp.asnumpy(r), [2.5, 2.5, 1, 4], atol=1e-6)
    r, _ = co.soft_rank(cp.asarray([4.0]), 1.0, "kl")
    np.testing.assert_allclose(cp.asnumpy(r), [1.0])
    with pytest.raises(ValueError, match="finite"):
        co.soft_rank(cp.asarray([1.0, np.nan]))
    with pytest.raises(ValueError, match="regularization"):
        co.soft_rank(cp.ones(3), 1.0, "l1")


@pytest.mark.parametrize("reg", ["l2", "kl"])
def test_soft_rank_one_long_vector_matches_cpu(cp, reg):
    rng = np.random.default_rng(13)
    x = rng.normal(size=1_000_000)
    x[::7] = np.round(x[::7], 2)         # ties
    g = rng.normal(size=x.size)
    for strength in ("auto", 1.0):
        r, state = co.soft_rank(cp.asarray(x), strength, reg)
        want, cpu_state = ops.soft_rank(x, strength, reg)
        np.testing.assert_allclose(cp.asnumpy(r), want, rtol=1e-9, atol=1e-7)
        np.testing.assert_allclose(cp.asnumpy(co.soft_rank_vjp(state, cp.asarray(g))), ops.soft_rank_vjp(cpu_state, g),
                                   rtol=1e-7, atol=1e-7)
    x = rng.permutation(1_000_000).astype(float)
    r, _ = co.soft_rank(cp.asarray(x), 0.5)  # gaps of 1 / 0.5 exceed the rank spacing: hard ranks
    np.testing.assert_allclose(cp.asnumpy(r), rankdata(x))


@pytest.mark.parametrize("strength", [1.0, "auto"])
@pytest.mark.parametrize("interactions", [False, True])
def test_rank_loss_grad_matches_twin(cp, strength, interactions):
    rng = np.random.default_rng(10)
    n, m, B = 60, 4, 2000
    X = rng.random((n, m))
    i, j = ops.sample_pairs(n, B, 1)
    F = ops.feature_distances(X, i, j, interactions)
    w = rng.random(F.shape[1])
    y = F @ rng.random(F.shape[1]) + 0.05 * rng.random(B)
    want = nb.rank_loss_grad(F, w, y, strength)
    score, grad = co.rank_loss_grad(cp.asarray(F), cp.asarray(w), cp.asarray(y), strength)
    assert np.isclose(float(score), want[0], atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(grad), want[1], atol=1e-10)


def test_kernels_run_on_the_current_stream(cp):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(4, 3000))
    with cp.cuda.Stream(non_blocking=True) as s:
        xs = cp.asarray(x)
        r = co.rank_average(xs)
        sr, state = co.soft_rank(xs, "auto")
        grad = co.soft_rank_vjp(state, xs)
        s.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(r), rankdata(x, axis=1))
    np.testing.assert_allclose(cp.asnumpy(sr), ops.soft_rank(x, "auto")[0], atol=1e-9)
    np.testing.assert_allclose(cp.asnumpy(grad), ops.soft_rank_vjp(ops.soft_rank(x, "auto")[1], x), atol=1e-9)


@pytest.mark.parametrize("interactions,strength", [(False, 1.0), (True, "auto")])
def test_mlem_step_matches_cpu_fused_step(cp, interactions, strength):
    rng = np.random.default_rng(15)
    n, m = 80, 4
    X = rng.integers(0, 3, size=(n, m)).astype(float)
    D = nb.condensed_rdm(rng.normal(size=(n, 10)))
    q = m * (m + 1) // 2 if interactions else m
    w = rng.random(q)
    cpu = ops.mlem_step(X, D, interactions, 0.0, 3000, 7, strength)
    gpu = co.mlem_step(cp.asarray(X), cp.asarray(D), interactions, 0.0, 3000, 7, strength)
    lo, hi = np.inf, -np.inf
    for stream in range(3):
        want = cpu(stream, w, lo, hi)
        got = gpu(stream, cp.asarray(w), lo, hi)
        assert np.isclose(float(got[0]), want[0], atol=1e-12)
        np.testing.assert_allclose(cp.asnumpy(got[1]), want[1], atol=1e-10)
        assert float(got[2]) == want[2] and float(got[3]) == want[3]
        lo, hi = want[2], want[3]
