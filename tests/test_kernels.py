"""The kernel options (alexnet_split.kernels): shifted_lrn, first_max_pool and shared_conv1 against the ops
they replace, on TensorFlow here and on JAX in a fresh interpreter (tests/kernel_checks.py)."""

import kernel_checks as checks
import numpy as np
import pytest
from conftest import run_check

import alexnet_split as A


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("groups", ["1", "2"])
def test_shifted_lrn_equals_the_band_lrn(dtype, groups):
    checks.lrn_shifted_equals_band(dtype, groups)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_first_max_pool_equals_keras_max_pooling_on_ties(dtype):
    checks.first_max_pool_equals_keras(dtype)


def test_parse_kernels():
    checks.parse_kernels_rejects_unknown_names()


@pytest.mark.slow
@pytest.mark.parametrize("options", ["shared_conv1", "shared_conv1+shifted_lrn+first_max_pool"])
def test_shared_conv1_equals_the_towers_model(options):
    checks.shared_conv1_equals_towers(options)


def test_shared_conv1_is_a_no_op_in_merged_and_half_and_refuses_two_devices():
    """merged and half already read the image with one conv: the option leaves them as they are. In
    towers mode it puts every conv1 in one op, so it refuses towers placed on different devices."""
    for mode in ("merged", "half"):
        plain, shared = (A.build_model("paper", mode, 17, input_shape=(67, 67, 3), kernels=k)
                         for k in ("", "shared_conv1"))
        assert ([(layer.name, type(layer)) for layer in shared.layers] ==
                [(layer.name, type(layer)) for layer in plain.layers])
        assert [w.shape for w in shared.weights] == [w.shape for w in plain.weights]
    with pytest.raises(ValueError, match=r"devices=\['/CPU:0', '/CPU:1'\] places the towers on different devices"):
        A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), devices=["/CPU:0", "/CPU:1"],
                      kernels="shared_conv1")
    same = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), devices=["/CPU:0", "/CPU:0"],
                         kernels="shared_conv1")
    assert same.get_layer("conv1").device == "/CPU:0"
    assert np.isfinite(np.asarray(same(np.zeros((1, 67, 67, 3), "float32")))).all()


JAX_CHECKS = {
    "lrn": ["lrn_shifted_equals_band:float32,1", "lrn_shifted_equals_band:float32,2",
            "lrn_shifted_equals_band:bfloat16,1", "lrn_shifted_equals_band:bfloat16,2", "jax_lrn_shifted_keeps_only_x"],
    "pool": ["first_max_pool_equals_keras:float32", "first_max_pool_equals_keras:bfloat16",
             "jax_first_max_pool_has_no_scatter"],
    # all three options together: tests/jax_engine.py trains them against the baseline
    "shared_conv1": ["shared_conv1_equals_towers"],
}


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(JAX_CHECKS))
def test_kernels_under_jax(group):
    """The same checks under KERAS_BACKEND=jax, plus what JAX's traced programs show: the shifted LRN
    keeps only x for its gradient, and first_max_pool's gradient has no scatter."""
    pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")
    proc = run_check("kernel_checks", *JAX_CHECKS[group], backend="jax", env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.split() == [w for c in JAX_CHECKS[group] for w in ("OK", c)], proc.stdout
