"""fastmlem: fast, correct Metric Learning Encoding Models and representational similarity tools.

Main entry points (imported lazily, so that pure-Python parts work even before the compiled
core is built):

- :class:`fastmlem.MLEM`: metric learning encoding model with permutation feature importance.
- :mod:`fastmlem.ops`: array-level kernels (numpy in -> numpy out, cupy in -> cupy out).
- :mod:`fastmlem.numpy_backend`: the plain numpy/scipy twins of every kernel (test oracles).
- :func:`fastmlem.cross_validate`, :func:`fastmlem.permutation_test`, :func:`fastmlem.spearman_scorer`:
  studies (targets x folds, null refits) on threads or a Dask cluster (:mod:`fastmlem.studies`).
- :mod:`fastmlem.similarity`, :mod:`fastmlem.align`, :mod:`fastmlem.simulate`,
  :mod:`fastmlem.datasets`, :mod:`fastmlem.plot`: tools built on top.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:  # the one version number is pyproject.toml's; CMake's project() gets it from scikit-build-core
    __version__ = version("fastmlem")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "MLEM": ("fastmlem.mlem", "MLEM"),
    "FRRSA": ("fastmlem.frrsa", "FRRSA"),
    "BarycentricAlignment": ("fastmlem.align", "BarycentricAlignment"),
    "cross_validate": ("fastmlem.studies", "cross_validate"),
    "permutation_test": ("fastmlem.studies", "permutation_test"),
    "spearman_scorer": ("fastmlem.studies", "spearman_scorer"),
}
_SUBMODULES = {"ops", "numpy_backend", "encoding", "similarity", "align", "simulate",
               "datasets", "plot", "frrsa", "mlem", "studies"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
    elif name in _SUBMODULES:
        value = import_module(f"fastmlem.{name}")
    else:
        raise AttributeError(f"module 'fastmlem' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
