"""One dispatch point: which array module and which compiled module serve an array.

numpy arrays go to the C++ module ``fastmlem._core``; cupy arrays go to ``fastmlem._cuda``
(built only when a CUDA compiler was found at build time).  Asking for the GPU without cupy or
without the CUDA module raises an error that says what to install.
"""
from __future__ import annotations

import numpy as np

try:  # the compiled CPU core
    from . import _core as core
except ImportError as exc:  # pragma: no cover - only when the package was not built
    core = None
    _core_error = exc
else:
    _core_error = None

# Neural metrics, named once in C++ (csrc/pair_math.hpp) and read from the compiled module.
METRICS = tuple(core.METRICS) if core is not None else ()

try:  # optional GPU stack
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA driver error raised at import
    _cupy = None

try:
    from . import _cuda as cuda_core
except ImportError:
    cuda_core = None


def require_core():
    """Return the compiled CPU module, or raise a clear error if the package was not built."""
    if core is None:
        raise ImportError(
            "fastmlem's compiled core (fastmlem._core) is missing: install the package with "
            "`pip install .` (it builds the C++ extension) instead of importing it from the "
            f"source tree. Original error: {_core_error}")
    return core


def is_cupy(a) -> bool:
    """True when ``a`` is a cupy array."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def get_array_module(*arrays):
    """numpy, or cupy when any argument is a cupy array."""
    return _cupy if any(is_cupy(a) for a in arrays) else np


def cuda_available() -> bool:
    """True when cupy imports, a GPU is visible and fastmlem._cuda was built."""
    if _cupy is None or cuda_core is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def require_cuda():
    """Return (cupy, fastmlem._cuda) or raise an error saying what is missing."""
    if _cupy is None:
        raise ImportError("GPU support needs cupy: `pip install fastmlem[cuda]` "
                          "(or the cupy-cudaXXx wheel matching your CUDA driver).")
    if cuda_core is None:
        raise ImportError("fastmlem was built without its CUDA module (fastmlem._cuda): reinstall "
                          "on a machine with the CUDA toolkit (nvcc) on PATH, e.g. "
                          "`FASTMLEM_CUDA=ON pip install --no-binary fastmlem fastmlem`.")
    return _cupy, cuda_core


def to_numpy(a):
    """Host copy of a numpy or cupy array (no copy for numpy)."""
    return _cupy.asnumpy(a) if is_cupy(a) else np.asarray(a)
