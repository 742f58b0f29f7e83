"""The init options (paper / caffe / fan_in) and the step-0 scale measurement."""

import keras
import numpy as np
import pytest
from conftest import SMALL_INPUT

import alexnet_split as A
from alexnet_split import config, initstudy, models


def kernels_and_biases(model):
    out = {}
    for layer in model.layers:
        arrays = {w.path.rsplit("/", 1)[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
        if "kernel" in arrays:
            out[layer.name] = (arrays["kernel"], arrays["bias"])
    return out


def test_fan_in_init_scales_with_each_kernels_real_fan_in():
    keras.utils.set_random_seed(0)
    model = A.build_model("paper", "towers", 17, input_shape=SMALL_INPUT["paper"], init="fan_in")
    found = kernels_and_biases(model)
    assert found["t1_conv2"][0].shape == (5, 5, 48, 128)  # same-tower: half the merged fan-in
    for name, (kernel, bias) in found.items():
        fan_in = np.prod(kernel.shape[:-1])
        # He where a ReLU layer reads ReLU outputs; the pixel-reading conv1 and the classifier keep 0.01
        expected = 0.01 if name in ("fc8", "t0_conv1", "t1_conv1") else np.sqrt(2.0 / fan_in)
        assert abs(kernel.std() / expected - 1) < 0.1, (name, kernel.std(), expected)
        assert not bias.any(), name


def test_caffe_init_is_the_paper_init_with_biases_0_1():
    keras.utils.set_random_seed(0)
    found = kernels_and_biases(A.build_model("paper", "merged", 17, input_shape=SMALL_INPUT["paper"], init="caffe"))
    for name, (kernel, bias) in found.items():
        assert abs(kernel.std() - 0.01) < 0.0005
        expected = 0.1 if name.split("_", 1)[-1] in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_allclose(bias, expected, err_msg=name)
    assert models.init_summary("paper", init="caffe")["biases"]["fc7"] == pytest.approx(0.1)
    assert models.init_summary("paper", init="fan_in")["scheme"] == "fan_in"


def test_init_is_a_recipe_key_checked_by_value():
    assert config.get_recipe("paper").init == "paper"
    assert config.get_recipe("paper", init="fan_in").init == "fan_in"
    with pytest.raises(ValueError, match=r"init must be .* got 'he'"):
        config.get_recipe("paper", init="he")
    with pytest.raises(ValueError, match=r"init must be one of .* got 'he'"):
        A.build_model("paper", "towers", 17, input_shape=SMALL_INPUT["paper"], init="he")


def test_step0_stats_rows():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, *SMALL_INPUT["paper"])).astype("float32")
    labels = np.arange(8) % 17
    towers = initstudy.step0_stats(x, labels, "paper", "towers", "paper")
    merged = initstudy.step0_stats(x, labels, "paper", "merged", "paper")
    assert [r["layer"] for r in towers] == list(initstudy.LAYERS)
    fan = {r["layer"]: (r["fan_in"], m["fan_in"]) for r, m in zip(towers, merged, strict=True)}
    assert fan["conv2"] == (5 * 5 * 48, 5 * 5 * 96) and fan["conv4"] == (3 * 3 * 192, 3 * 3 * 384)
    assert fan["conv3"] == (3 * 3 * 256, 3 * 3 * 256)  # a cross layer reads both towers
    for r in towers + merged:
        assert np.isfinite(r["activation_std"]) and r["activation_std"] > 0, r
        assert np.isfinite(r["gradient_std"]) and r["gradient_std"] > 0, r
        assert abs(r["kernel_std"] - 0.01) < 0.002, r
    md = initstudy.markdown(towers + merged + initstudy.step0_stats(x, labels, "paper", "half", "paper"), "test")
    assert "| paper | conv2 | 1,200 / 2,400 |" in md
