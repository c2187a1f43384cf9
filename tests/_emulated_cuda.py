"""A stand-in for cupy and fastmlem._cuda that runs on the CPU, to test GPU *plumbing* in CI.

``cupy`` here is numpy whose arrays carry ``.data.ptr``; ``fastmlem._cuda`` reads and writes
through those raw pointers with the CPU kernels / numpy twins. This checks what the Python side
of the GPU path does (argument order, dtypes, shapes, workspaces, streams, dispatch, MLEM on
device='cuda'), never the CUDA kernels themselves: those are tested by tests/test_cuda.py on a GPU.
"""
import ctypes
import types

import numpy as np

from fastmlem import _shared
from fastmlem import numpy_backend as nb
from fastmlem import ops

STREAM = 12345  # the fake current stream's handle; every emulated launch checks it


class DeviceArray(np.ndarray):
    """numpy array with cupy's ``.data.ptr``."""

    @property
    def data(self):
        assert self.flags.c_contiguous or self.size == 0, "kernels need C-contiguous arrays"
        return types.SimpleNamespace(ptr=self.ctypes.data if self.size else 0)


def _device(result):
    if isinstance(result, np.ndarray) and not isinstance(result, DeviceArray):
        return result.view(DeviceArray)
    if isinstance(result, tuple):
        return tuple(_device(r) for r in result)
    return result


def _at(ptr, dtype, shape):
    """numpy view of the memory at a raw pointer."""
    dtype, count = np.dtype(dtype), int(np.prod(shape))
    if count == 0:
        return np.empty(shape, dtype)
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(ptr), dtype=dtype).reshape(shape)


class _Stream:
    ptr = STREAM

    def __init__(self, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def synchronize(self):
        pass


def fake_cupy():
    cp = types.ModuleType("cupy")
    for name in ["float64", "float32", "float16", "int64", "int32", "uint8"]:
        setattr(cp, name, getattr(np, name))
    for name in ["empty", "zeros", "ones", "full", "arange", "where", "concatenate", "stack", "triu", "triu_indices",
                 "einsum", "isnan", "isfinite", "ascontiguousarray", "minimum", "maximum", "nan_to_num", "allclose",
                 "abs", "sqrt"]:
        setattr(cp, name, (lambda f: lambda *a, **k: _device(f(*a, **k)))(getattr(np, name)))
    cp.asarray = lambda a, dtype=None: _device(np.array(a, dtype=dtype) if not isinstance(a, np.ndarray)
                                               else np.asarray(a, dtype=dtype))
    cp.asnumpy = lambda a: np.asarray(a).view(np.ndarray)
    cp.ndarray = DeviceArray
    cp.linalg = types.SimpleNamespace(norm=lambda *a, **k: _device(np.linalg.norm(*a, **k)))
    cp.cuda = types.SimpleNamespace(
        get_current_stream=lambda: _Stream(), Stream=_Stream,
        Device=lambda *a: types.SimpleNamespace(mem_info=(2**34, 2**34), use=lambda: None))
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)
    return cp


def _q(m, interactions):
    return m * (m + 1) // 2 if interactions else m


def fake_cuda_module():
    cu = types.ModuleType("fastmlem._cuda")
    cu.METRICS = {"euclidean": 0, "manhattan": 1, "cosine": 2, "norm_diff": 3}
    names = {v: k for k, v in cu.METRICS.items()}

    def on_stream(s):
        assert s == STREAM, "launched on another stream than cupy's current one"

    def rows(X, n, m, pre, i, j, B, inter, fill):
        Xa, ia, ja = _at(X, np.float64, (n, n, m) if pre else (n, m)), _at(i, np.int64, B), _at(j, np.int64, B)
        return (nb.feature_distances_precomputed if pre else nb.feature_distances)(Xa, ia, ja, inter, fill)

    def sample_pairs(n, B, seed, stream, i, j, s):
        on_stream(s)
        _at(i, np.int64, B)[:], _at(j, np.int64, B)[:] = ops.sample_pairs(n, B, seed, stream)

    def feature_distances(X, n, m, pre, i, j, B, inter, fill, F, s):
        on_stream(s)
        _at(F, np.float64, (B, _q(m, inter)))[:] = rows(X, n, m, pre, i, j, B, inter, fill)

    def predict_pairs(X, n, m, pre, inter, fill, w, generate, seed, stream, i, j, B, pred, s):
        on_stream(s)
        if generate:
            _at(i, np.int64, B)[:], _at(j, np.int64, B)[:] = ops.sample_pairs(n, B, seed, stream)
        _at(pred, np.float64, B)[:] = rows(X, n, m, pre, i, j, B, inter, fill) @ _at(w, np.float64, _q(m, inter))

    def features_vjp(X, n, m, pre, inter, fill, i, j, B, g, grad, work, work_bytes, s):
        on_stream(s)
        assert work_bytes == 1000
        _at(grad, np.float64, _q(m, inter))[:] = rows(X, n, m, pre, i, j, B, inter, fill).T @ _at(g, np.float64, B)

    def neural_distances(Y, itemsize, p, i, j, B, metric, out, s):
        on_stream(s)
        ia, ja = _at(i, np.int64, B), _at(j, np.int64, B)
        n = int(max(ia.max(), ja.max())) + 1 if B else 0
        Ya = _at(Y, np.float32 if itemsize == 4 else np.float64, (n, p))
        _at(out, np.float64, B)[:] = nb.neural_distances(Ya, ia, ja, names[metric])

    def lookup_condensed(D, n, i, j, B, out, s):
        on_stream(s)
        _at(out, np.float64, B)[:] = nb.rdm_lookup(_at(D, np.float64, n * (n - 1) // 2), n, _at(i, np.int64, B),
                                                   _at(j, np.int64, B))

    def condensed_from_gram(G, ld, sq, r0, r1, n, metric, out, s):
        """Rows r0:r1 of the condensed RDM from their Gram rows, by the shared definition
        (fastmlem._shared.distances_from_gram), not by a copy of the kernel's formula."""
        on_stream(s)
        if r1 <= r0:
            return
        Ga, sqa, o = _at(G, np.float64, (r1 - r0, ld)), _at(sq, np.float64, n), _at(out, np.float64, n * (n - 1) // 2)
        D = _shared.distances_from_gram(Ga[:, :n], sqa[r0:r1, None], sqa[None, :], names[metric], np)
        for r in range(r0, r1):
            o[_shared.condensed_index(r, n):_shared.condensed_index(r + 1, n)] = D[r - r0, r + 1:]

    def rank_average(x, T, B, out, work, work_bytes, s):
        on_stream(s)
        assert work_bytes == 77 + T * B
        _at(out, np.float64, (T, B))[:] = ops.rank_average(_at(x, np.float64, (T, B)))

    def pearson_rows(x, y, y_per_row, T, B, out, work, work_bytes, s):
        on_stream(s)
        assert work_bytes == 77 + T * B
        ya = _at(y, np.float64, (T, B) if y_per_row else (1, B))
        _at(out, np.float64, T)[:] = nb.pearson(_at(x, np.float64, (T, B)), ya)

    def spearman(x, y, T, B, out, work, work_bytes, s):
        on_stream(s)
        _at(out, np.float64, T)[:] = ops.spearman(_at(x, np.float64, (T, B)), _at(y, np.float64, (T, B)))

    def soft_rank(x, eps, T, B, kl, ranks, perm, block, work, work_bytes, s):
        on_stream(s)
        r, p, b = ops.require_core().soft_rank(_at(x, np.float64, (T, B)), _at(eps, np.float64, T), kl)
        _at(ranks, np.float64, (T, B))[:], _at(perm, np.int32, (T, B))[:] = r, p
        _at(block, np.int64, (T, B))[:] = b + np.arange(T)[:, None] * B  # flat block starts, as the GPU

    def soft_rank_vjp(g, x, ranks, perm, block, eps, T, B, kl, out, work, work_bytes, s):
        on_stream(s)
        starts = _at(block, np.int64, (T, B)) - np.arange(T)[:, None] * B
        _at(out, np.float64, (T, B))[:] = ops.require_core().soft_rank_vjp(
            _at(g, np.float64, (T, B)), _at(x, np.float64, (T, B)), _at(ranks, np.float64, (T, B)),
            _at(perm, np.int32, (T, B)).astype(np.int64), starts, _at(eps, np.float64, T), kl)

    for name, fn in dict(locals()).items():
        if callable(fn) and name not in ("on_stream", "rows"):
            setattr(cu, name, fn)
    cu.fused_supported = lambda m, inter: _q(m, inter) + m * 33 + 32 <= 6144
    cu.features_vjp_workspace = lambda m, inter, B: 1000
    for name in ["rank", "pearson", "spearman", "soft_rank", "soft_rank_vjp"]:
        setattr(cu, name + "_workspace", lambda T, B: 77 + T * B)
    return cu


def install(monkeypatch):
    """Make fastmlem see the emulated cupy and _cuda for one test (undone by monkeypatch)."""
    import sys
    from fastmlem import _backend
    cp, cu = fake_cupy(), fake_cuda_module()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "fastmlem._cuda", cu)
    monkeypatch.setattr(_backend, "_cupy", cp)
    monkeypatch.setattr(_backend, "cuda_core", cu)
    monkeypatch.setattr(_backend, "cuda_available", lambda: True)
    return cp
