"""Large stimulus sets: the fused sampled-pair step and importance (rows of Y gathered per pair, in
Y's own dtype), the blocked condensed RDM, the RDM-or-gathers cost model, float16 and memmap input."""
import numpy as np
import pandas as pd
import pytest

from fastmlem import MLEM, numpy_backend as nb, ops
from test_kernels import neural_rtol
import fastmlem.mlem as mlem_module

DTYPES = [np.float16, np.float32, np.float64]


def _data(n=90, m=4, p=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, (n, m)).astype(float)
    Y = X @ rng.normal(size=(m, p)) * 2 + rng.normal(size=(n, p))
    return X, Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "norm_diff"])
@pytest.mark.parametrize("interactions", [False, True])
def test_fused_step_gathering_rows_equals_the_numpy_twin(dtype, metric, interactions):
    """ops.mlem_step reading Y in place == numpy_backend.mlem_step (same pairs, same targets)."""
    X, Y = _data()
    Y = (Y + 3).astype(dtype)
    q = X.shape[1] * (X.shape[1] + 1) // 2 if interactions else X.shape[1]
    w = np.random.default_rng(1).uniform(0.1, 1, q)
    fused = ops.mlem_step(X, Y, interactions, 0.0, 501, 7, metric=metric)
    twin = nb.mlem_step(X, Y, interactions, 0.0, 501, 7, metric=metric)
    lo_f = lo_t = np.inf
    hi_f = hi_t = -np.inf
    for stream in range(3):
        score_f, grad_f, lo_f, hi_f = fused(stream, w, lo_f, hi_f)
        score_t, grad_t, lo_t, hi_t = twin(stream, w, lo_t, hi_t)
        assert (lo_f, hi_f) == pytest.approx((lo_t, hi_t), rel=1e-12)
        assert score_f == pytest.approx(score_t, abs=1e-10)
        np.testing.assert_allclose(grad_f, grad_t, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", ["euclidean", "norm_diff"])
def test_fused_step_over_threads_in_row_order_equals_the_numpy_twin(dtype, metric):
    """A batch large enough for the step's parallel region (5 chunks of pairs, the targets ranked by
    whichever thread ends last) over rows past a core's cache, taken in row order and put back."""
    X, Y = _data(n=1500, p=400)
    Y = Y.astype(dtype)
    w = np.random.default_rng(1).uniform(0.1, 1, X.shape[1])
    fused = ops.mlem_step(X, Y, False, 0.0, 5000, 7, metric=metric)
    twin = nb.mlem_step(X, Y, False, 0.0, 5000, 7, metric=metric)
    lo_f = lo_t = np.inf
    hi_f = hi_t = -np.inf
    rtol = neural_rtol(Y, metric)  # float32 rows summed in float: the twin's targets differ by ~1e-9
    for stream in range(2):
        score_f, grad_f, lo_f, hi_f = fused(stream, w, lo_f, hi_f)
        score_t, grad_t, lo_t, hi_t = twin(stream, w, lo_t, hi_t)
        assert (lo_f, hi_f) == pytest.approx((lo_t, hi_t), rel=rtol)
        assert score_f == pytest.approx(score_t, abs=10 * rtol)
        np.testing.assert_allclose(grad_f, grad_t, rtol=100 * rtol, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["euclidean", "norm_diff"])
def test_fused_importance_gathering_rows_equals_the_numpy_twin(dtype, metric):
    X, Y = _data(n=70)
    Y = Y.astype(dtype)
    w = np.array([0.6, 0.2, 0.5, 0.1])
    args = (w, False, 0.0, 300, 5, 2**32, 9, 3)
    base, permuted = ops.permutation_importance(X, Y, *args, metric=metric)
    base_t, permuted_t = nb.permutation_importance(X, Y, *args, metric=metric)
    np.testing.assert_allclose(base, base_t, atol=1e-12)
    np.testing.assert_allclose(permuted, permuted_t, atol=1e-12)
    # the same tasks through the condensed RDM give the same numbers
    D = ops.condensed_rdm(Y.astype(np.float64), metric)
    base_d, permuted_d = ops.permutation_importance(X, D, *args)
    np.testing.assert_allclose(base_d, base, atol=1e-9)
    np.testing.assert_allclose(permuted_d, permuted, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "norm_diff"])
def test_blocked_condensed_rdm_equals_pdist(dtype, metric):
    """Row blocks straight into condensed form (tiny blocks here, so many of them), with an offset."""
    rng = np.random.default_rng(2)
    Y = (rng.normal(size=(123, 17)) + 100).astype(dtype)
    got = ops.condensed_rdm(Y, metric, block_bytes=4096)
    want = nb.condensed_rdm(Y.astype(np.float64), metric)
    # float32 Gram blocks for euclidean float16/32 input: error below 1e-6 of the largest distance
    tol = 1e-12 if dtype == np.float64 or metric != "euclidean" else 1e-6
    assert np.abs(got - want).max() <= tol * want.max() + 1e-12


@pytest.mark.parametrize("scale", [1e-30, 1e30, 1e200])
def test_condensed_rdm_is_scale_equivariant(scale):
    Y = np.random.default_rng(3).normal(size=(40, 5))
    if scale > 1e38:
        Y = Y.astype(np.float64)
    got = ops.condensed_rdm(Y * scale) / scale
    np.testing.assert_allclose(got, nb.condensed_rdm(Y), rtol=1e-10)
    got32 = ops.condensed_rdm((Y * min(scale, 1e30)).astype(np.float32)) / min(scale, 1e30)
    np.testing.assert_allclose(got32, nb.condensed_rdm(Y), rtol=1e-5)


def test_all_pairs_and_rdm_lookup():
    i, j = ops.all_pairs(7)
    ii, jj = nb.all_pairs(7)
    np.testing.assert_array_equal(i, ii)
    np.testing.assert_array_equal(j, jj)
    Y = np.random.default_rng(4).normal(size=(7, 3))
    D = ops.condensed_rdm(Y)
    a, b = ops.sample_pairs(7, 50, 1)
    np.testing.assert_allclose(ops.rdm_lookup(D, 7, a, b), nb.rdm_lookup(D, 7, a, b), atol=1e-12)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan"])
def test_rdm_and_gathers_give_the_same_model(monkeypatch, distance):
    X, Y = _data(n=120)
    params = dict(random_state=0, batch_size=600, max_steps=25, distance=distance)
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: True)
    with_rdm = MLEM(**params).fit(X, Y)
    imp_rdm = with_rdm.score()[0]
    assert with_rdm._rdm is not None
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: False)
    gathered = MLEM(**params).fit(X, Y)
    assert gathered._rdm is None
    np.testing.assert_allclose(gathered.history_, with_rdm.history_, atol=1e-9)
    np.testing.assert_allclose(gathered.weights_, with_rdm.weights_, atol=1e-9)
    np.testing.assert_allclose(gathered.score()[0], imp_rdm, atol=1e-9)


def test_rdm_is_built_once_per_fit_and_reused_by_score(monkeypatch):
    calls = []
    real = ops.condensed_rdm
    monkeypatch.setattr(ops, "condensed_rdm", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: True)
    X, Y = _data()
    model = MLEM(random_state=0, batch_size=300, max_steps=5).fit(X, Y)
    first = model.score()[0]
    pd.testing.assert_frame_equal(model.score()[0], first)
    assert len(calls) == 1
    import pickle
    clone = pickle.loads(pickle.dumps(model))  # the RDM is not pickled, and is rebuilt on demand
    assert "_rdm" not in clone.__dict__
    pd.testing.assert_frame_equal(clone.score()[0], first)
    model.fit(X, Y)
    assert len(calls) == 3


def test_cost_model_choices():
    use = mlem_module.use_rdm
    gib = 2**30
    assert use(1000, 768, 4, "euclidean", 200 * 16_000, gib)           # 0.5 M pairs, 3.2 M drawn
    assert not use(10**6, 768, 4, "euclidean", 200 * 16_000, 2**32)    # the RDM cannot fit
    assert not use(20_000, 768, 4, "euclidean", 200 * 16_000, gib)     # 1.6 GB RDM > memory
    assert not use(5_000, 768, 4, "euclidean", 1_000, gib)             # too few pairs drawn to pay off


@pytest.mark.parametrize("gather", [False, True])
def test_float16_representations_are_read_as_they_are(monkeypatch, gather):
    """float16 Y fits exactly like the same values in float32 (half -> float is exact)."""
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: not gather)
    X, Y = _data()
    Y16 = Y.astype(np.float16)
    params = dict(random_state=0, batch_size=400, max_steps=15)
    half = MLEM(**params).fit(X, Y16)
    assert half.Y_.dtype == np.float16
    single = MLEM(**params).fit(X, Y16.astype(np.float32))
    np.testing.assert_array_equal(half.weights_, single.weights_)
    pd.testing.assert_frame_equal(half.score()[0], single.score()[0])


@pytest.mark.parametrize("p", [3, 16, 21])  # scalar tail only; vector path (8 at a time); both
def test_half_to_float_is_exact_for_every_finite_half(p):
    halves = np.arange(2**16, dtype=np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)]
    Y = np.zeros((halves.size + 1, p), dtype=np.float16)
    Y[1:] = halves[:, None]  # row r + 1 repeats half r; row 0 is zero
    k = np.arange(1, halves.size + 1)
    got = ops.neural_distances(Y, k, np.zeros_like(k), "manhattan")
    np.testing.assert_array_equal(got, p * np.abs(halves.astype(np.float64)))  # sums of p equal halves: exact


def test_memmap_representations_fit_without_a_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: False)
    X, Y = _data(n=200, p=16)
    path = tmp_path / "reps.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=Y.shape)
    mm[:] = Y
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=Y.shape)
    params = dict(random_state=0, batch_size=500, max_steps=10)
    model = MLEM(**params).fit(X, ro)
    assert np.shares_memory(model.Y_, ro)  # read in place, never copied whole
    reference = MLEM(**params).fit(X, Y.astype(np.float32))
    np.testing.assert_array_equal(model.weights_, reference.weights_)
    pd.testing.assert_frame_equal(model.score()[0], reference.score()[0])


def test_memmap_of_the_wrong_shape_is_a_clear_error(tmp_path):
    X, Y = _data(n=50)
    path = tmp_path / "reps.f32"
    np.memmap(path, dtype=np.float32, mode="w+", shape=(49, Y.shape[1]))[:] = 1
    with pytest.raises(ValueError, match="50 stimuli but Y has 49 rows"):
        MLEM(max_steps=2).fit(X, np.memmap(path, dtype=np.float32, mode="r", shape=(49, Y.shape[1])))


@pytest.mark.parametrize("scale", [1e-17, 1e-300, 1e155, 1e300])
def test_fit_is_invariant_to_the_scale_of_y(scale):
    X, Y = _data()
    params = dict(random_state=0, batch_size=400, max_steps=20)
    base = MLEM(**params).fit(X, Y)
    scaled = MLEM(**params).fit(X, Y * scale)
    assert np.isfinite(scaled.best_score_)
    np.testing.assert_allclose(scaled.weights_, base.weights_, atol=1e-6)
    np.testing.assert_allclose(scaled.score()[0], base.score()[0], atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_magnitude_by_bits_equals_abs_max(dtype):
    from fastmlem.encoding import _largest_magnitude
    rng = np.random.default_rng(6)
    a = (rng.standard_cauchy(1000) * 10.0 ** rng.integers(-4, 4, 1000)).astype(dtype)
    a[:3] = [-0.0, np.finfo(dtype).tiny / 4, -np.finfo(dtype).max]  # signed zero, subnormal, the extreme
    assert _largest_magnitude(a) == float(np.abs(a.astype(np.float64)).max())
    assert _largest_magnitude(a[3:]) == float(np.abs(a[3:].astype(np.float64)).max())
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[500] = bad
        assert not np.isfinite(_largest_magnitude(b))
    # 2-D (the compiled, threaded pass): contiguous, rows of a wider array, one column, a remainder
    wide = np.tile(a, 3).reshape(30, 100)
    # 300 columns: passes of 256 bytes of lanes, then a remainder; the extreme in lane 0 or the remainder
    in_lane, in_tail = (np.tile(a[3:], 3)[:2700].reshape(9, 300) for _ in range(2))
    in_lane[4, 0] = in_tail[4, 299] = -np.finfo(dtype).max
    for view in (a.reshape(40, 25), wide[:, 7:93], wide[:, 50:51], a[:999].reshape(37, 27), wide[::-1][::-1],
                 in_lane, in_tail):
        assert _largest_magnitude(view) == float(np.abs(view.astype(np.float64)).max())
        for bad in (np.nan, np.inf):
            b = view.copy()
            b[-1, -1] = bad
            assert not np.isfinite(_largest_magnitude(b))


def test_float16_extremes_give_exact_distances():
    """Halves near +-65504 (squared differences ~1.7e10 each, beyond float16's range) are summed in
    float in blocks on the gather path (bounded relative error) and scaled on the RDM path."""
    from scipy.spatial.distance import pdist
    rng = np.random.default_rng(0)
    Y = (rng.choice([-1.0, 1.0], (40, 300)) * rng.uniform(6e4, 65504, (40, 300))).astype(np.float16)
    exact = pdist(Y.astype(np.float64))
    i, j = ops.all_pairs(40)
    np.testing.assert_allclose(ops.neural_distances(Y, i, j), exact, rtol=1e-6)
    np.testing.assert_allclose(ops.condensed_rdm(Y), exact, rtol=1e-5)
    assert np.isfinite(MLEM(random_state=0, batch_size=300, max_steps=5).fit(_data(n=40)[0], Y).weights_).all()


def test_representations_over_2_to_the_31_elements(tmp_path):
    """Row offsets past 2^31 elements (a sparse 4 GiB float16 memmap: only two rows are written)."""
    n, p = 2**21 + 8, 1024
    try:
        Y = np.memmap(tmp_path / "big.f16", dtype=np.float16, mode="w+", shape=(n, p))
    except OSError as error:  # a file system without sparse files
        pytest.skip(f"cannot create a sparse 4 GiB file here: {error}")
    Y[n - 1] = 1.0
    Y[n - 3, :4] = 2.0
    d = ops.neural_distances(Y, [n - 1, n - 1, 0], [0, n - 3, n - 3], "euclidean")
    np.testing.assert_array_equal(d, [32.0, np.sqrt(1020 + 4), 4.0])


def test_largest_magnitude_binding_checks_its_input():
    from fastmlem import _core
    for bad in (np.ones(5), np.ones((2, 3), dtype=np.int32), np.ones((4, 4))[::-1], np.ones((4, 6))[:, ::2]):
        with pytest.raises(ValueError):
            _core.largest_magnitude_bits(bad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gathers_of_a_large_y_in_row_order_equal_the_twin(dtype):
    """Y beyond a core's cache (> 2 MiB as float32/64) and a batch with repeated rows (B >= n): the
    kernel computes the pairs sorted by their lower row and must put each distance back in place."""
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(1500, 400)).astype(dtype)
    i, j = ops.sample_pairs(1500, 6000, 0)
    for metric in ("euclidean", "cosine"):
        np.testing.assert_allclose(ops.neural_distances(Y, i, j, metric), nb.neural_distances(Y, i, j, metric),
                                   rtol=neural_rtol(Y, metric), atol=1e-12)


def test_feature_distances_of_a_large_x_equal_the_twin():
    """X beyond a core's cache (> 2 MiB): rows prefetched, pairs on threads from 8,192 on."""
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, (40000, 8)).astype(float)
    X[rng.random(X.shape) < 0.01] = np.nan
    i, j = ops.sample_pairs(40000, 10000, 2)
    for interactions in (False, True):
        np.testing.assert_array_equal(ops.feature_distances(X, i, j, interactions, 0.5),
                                      nb.feature_distances(X, i, j, interactions, 0.5))
