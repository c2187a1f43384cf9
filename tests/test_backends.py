"""One backend interface: the compiled CPU backend (ops), the CUDA backend (cuda_ops) and the numpy
oracle (numpy_backend) export the same kernels with the same parameters."""
import inspect

import pytest

from fastmlem import _backend, numpy_backend, ops

KERNELS = ("sample_pairs", "all_pairs", "feature_distances", "feature_distances_precomputed", "neural_distances",
           "condensed_rdm", "rdm_lookup", "rank_average", "spearman", "permutation_spearman", "soft_rank",
           "soft_rank_vjp", "rank_loss_grad", "mlem_step", "permutation_importance")


def _parameters(module, name):
    return list(inspect.signature(getattr(module, name)).parameters)


@pytest.mark.parametrize("name", KERNELS)
def test_the_three_backends_export_the_same_kernels(name):
    from fastmlem import cuda_ops  # importable without cupy; calls need it
    expected = _parameters(ops, name)
    assert _parameters(numpy_backend, name) == expected
    assert _parameters(cuda_ops, name) == expected


@pytest.mark.parametrize("name", ["kendall_tau_a"])
def test_cpu_only_kernels_have_a_numpy_twin(name):
    assert _parameters(numpy_backend, name) == _parameters(ops, name)


def test_metric_names_come_from_the_compiled_module():
    assert _backend.METRICS == tuple(_backend.core.METRICS) == ("euclidean", "manhattan", "cosine", "norm_diff")
    assert ops.METRICS == _backend.METRICS
    assert numpy_backend.METRICS == _backend.METRICS  # the oracle implements every compiled metric
