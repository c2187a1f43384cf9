"""The GPU path's Python side (dispatch, cuda_ops argument passing, MLEM on device='cuda') on an
emulated cupy + fastmlem._cuda (tests/_emulated_cuda.py), so CI checks it without a GPU. The CUDA
kernels themselves are compared with the CPU in tests/test_cuda.py, on a GPU."""
import numpy as np
import pandas as pd
import pytest

import _emulated_cuda
from fastmlem import MLEM, numpy_backend as nb, ops


@pytest.fixture
def cp(monkeypatch):
    return _emulated_cuda.install(monkeypatch)


def data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{k}": rng.choice(["a", "b"], n) for k in range(3)})
    codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
    return X, np.column_stack([codes * [3, 2, 0.1], rng.normal(size=(n, 5))])


def test_ops_dispatch_cupy_in_cupy_out(cp):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (3, 50)).astype(float), rng.normal(size=(3, 50))
    for got, want in [(ops.rank_average(cp.asarray(x)), ops.rank_average(x)),
                      (ops.spearman(cp.asarray(x), cp.asarray(y)), ops.spearman(x, y)),
                      (ops.soft_rank(cp.asarray(y[0]), "auto")[0], ops.soft_rank(y[0], "auto")[0])]:
        assert isinstance(got, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(got), want, atol=1e-12)
    X = rng.integers(0, 2, (20, 3)).astype(float)
    i, j = ops.sample_pairs(20, 40, 1, 2)
    F = ops.feature_distances(cp.asarray(X), cp.asarray(i), cp.asarray(j), True)
    np.testing.assert_array_equal(cp.asnumpy(F), ops.feature_distances(X, i, j, True))
    score, grad = ops.rank_loss_grad(cp.asarray(F), cp.asarray(np.ones(6)), cp.asarray(y[0, :40]))
    want_score, want_grad = ops.rank_loss_grad(F, np.ones(6), y[0, :40])
    assert float(score) == pytest.approx(want_score) and isinstance(grad, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(grad), want_grad, atol=1e-12)


@pytest.mark.parametrize("params", [dict(), dict(interactions=True), dict(batch_size="all"),
                                    dict(distance="manhattan"), dict(soft_rank_strength="auto"),
                                    dict(interactions=True, spd=False)])
def test_mlem_on_cuda_equals_cpu(cp, params):
    X, Y = data()
    params = dict(random_state=0, max_steps=15, **{"batch_size": 300, **params})
    cpu = MLEM(**params).fit(X, Y)
    gpu = MLEM(device="cuda", **params).fit(X, Y)
    np.testing.assert_allclose(gpu.history_, cpu.history_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(gpu.score()[0], cpu.score()[0], rtol=1e-9, atol=1e-12)


def test_mlem_on_cuda_with_precomputed_distances_equals_cpu(cp):
    X, Y = data(n=40)
    codes = np.column_stack([(X[c] == "a").to_numpy(float) for c in X])
    Xd, D = np.abs(codes[:, None] - codes[None]), np.sqrt(((Y[:, None] - Y[None]) ** 2).sum(-1))
    params = dict(distance="precomputed", random_state=0, max_steps=10, batch_size=200, interactions=True)
    cpu = MLEM(**params).fit(Xd, D)
    gpu = MLEM(device="cuda", **params).fit(Xd, D)
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(gpu.score()[0], cpu.score()[0], rtol=1e-9, atol=1e-12)


def test_mlem_on_cuda_samples_pairs_when_the_rdm_is_too_big(cp, monkeypatch):
    import fastmlem.mlem as mlem_module
    monkeypatch.setattr(mlem_module, "use_rdm", lambda *args: False)
    X, Y = data()
    cpu = MLEM(random_state=1, max_steps=10, batch_size=300).fit(X, Y)
    gpu = MLEM(random_state=1, max_steps=10, batch_size=300, device="cuda:0").fit(X, cp.asarray(Y))
    np.testing.assert_allclose(gpu.history_, cpu.history_, rtol=1e-9, atol=1e-12)


def test_cupy_input_needs_device_cuda(cp):
    X, Y = data()
    with pytest.raises(TypeError, match="device='cuda'"):
        MLEM(max_steps=2, batch_size=300).fit(X, cp.asarray(Y))
    bad = cp.asarray(Y.copy())
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        MLEM(device="cuda", max_steps=2, batch_size=300).fit(X, bad)


def test_predict_ties_identical_rows_exactly():
    """Permuted predictions of identical predictor rows must tie exactly for average ranks."""
    rng = np.random.default_rng(0)
    F = rng.integers(0, 2, (500, 7)).astype(float)
    w = rng.random(7)
    pred = nb.predict(nb.permuted_rows(F, 2, rng.permutation(500)), w)
    G = nb.permuted_rows(F, 2, rng.permutation(500))
    keys = [tuple(r) for r in G]
    first = {}
    for k, v in zip(keys, nb.predict(G, w)):
        assert first.setdefault(k, v) == v
    assert pred.shape == (500,)
