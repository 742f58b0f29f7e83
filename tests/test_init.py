"""The built initialisation and dropout, read from the model (Sections 4.2 and 5)."""

import keras
import numpy as np
import pytest
from conftest import SMALL_INPUT

import alexnet_split as A
from alexnet_split import models, spec

BIAS_ONE = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # Section 5


def blocks(model):
    """{row name (conv1 .. fc8): [(kernel, bias) of each tower's block]}."""
    out = {}
    for layer in model.layers:
        arrays = {w.path.rsplit("/", 1)[-1]: keras.ops.convert_to_numpy(w) for w in layer.weights}
        if "kernel" in arrays:
            out.setdefault(layer.name.split("_", 1)[-1], []).append((arrays["kernel"], arrays["bias"]))
    return out


@pytest.mark.parametrize("mode", spec.MODES)
@pytest.mark.parametrize("bias_fill", [None, 0.1])
def test_paper_init_weights_normal_001_and_the_papers_biases(mode, bias_fill):
    keras.utils.set_random_seed(0)
    model = A.build_model("paper", mode, 17, input_shape=SMALL_INPUT["paper"], bias_fill=bias_fill)
    found = blocks(model)
    assert sorted(found) == sorted(["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"])
    for name, towers in found.items():
        assert len(towers) == (2 if mode == "towers" and name != "fc8" else 1)
        for kernel, bias in towers:
            assert abs(kernel.std() - 0.01) < 0.0005 and abs(kernel.mean()) < 0.0005, (name, kernel.std())
            expected = (1.0 if bias_fill is None else bias_fill) if name in BIAS_ONE else 0.0
            np.testing.assert_array_equal(bias, np.full_like(bias, expected), err_msg=name)
    # what config.json records is what was built
    recorded = models.init_summary("paper", bias_fill)
    assert recorded["weights"] == "normal(0, 0.01)"
    assert {k: np.float32(v) for k, v in recorded["biases"].items()} == {n: t[0][1][0] for n, t in found.items()}


def test_seed_layout_keeps_keras_defaults():
    model = A.build_model("seed", "merged", 17, input_shape=SMALL_INPUT["seed"])
    kernel, bias = blocks(model)["conv3"][0]
    limit = np.sqrt(6 / (3 * 3 * 256 + 3 * 3 * 384))  # glorot_uniform
    assert np.abs(kernel).max() <= limit and kernel.std() > 0.5 * limit / np.sqrt(3) and not bias.any()
    assert {k: v for k, v in models.init_summary("seed").items() if k != "recipe_init"} == {
        "scheme": "keras", "weights": "glorot_uniform", "biases": "zeros"}


def test_dropout_half_of_fc6_and_fc7_in_training_none_at_inference():
    """Section 4.2: fc6 and fc7 outputs are zeroed with probability 0.5 in training (Keras
    scales the kept ones by 2), and the whole net is deterministic at inference."""
    keras.utils.set_random_seed(0)
    model = A.build_model("paper", "towers", 17, input_shape=SMALL_INPUT["paper"])
    x = np.random.default_rng(0).uniform(0, 255, (16, *SMALL_INPUT["paper"])).astype("float32")
    fc6 = keras.Model(model.input, [model.get_layer(f"t{k}_fc6").output for k in (0, 1)])(x, training=False)
    for name, block_input in (("t0_fc6", x), ("t1_fc6", x), ("t0_fc7", fc6), ("t1_fc7", fc6)):
        if name.endswith("fc6"):
            block = keras.Model(model.input, model.get_layer(name).output)
        else:  # fc7 alone, on fixed fc6 outputs, so that fc6's own dropout does not enter
            block = model.get_layer(name)
        infer = keras.ops.convert_to_numpy(block(block_input, training=False))
        np.testing.assert_array_equal(infer, keras.ops.convert_to_numpy(block(block_input, training=False)))
        active = infer > 0
        assert active.mean() > 0.5  # biases of 1: ReLU keeps most units
        train_a = keras.ops.convert_to_numpy(block(block_input, training=True))
        train_b = keras.ops.convert_to_numpy(block(block_input, training=True))
        assert not np.array_equal(train_a, train_b)
        kept = train_a != 0
        assert not (kept & ~active).any()
        assert 0.47 < kept[active].mean() < 0.53, (name, kept[active].mean())
        np.testing.assert_allclose(train_a[kept], 2 * infer[kept], rtol=1e-5)
    probs = [keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(*probs)
    assert not np.array_equal(keras.ops.convert_to_numpy(model(x, training=True)), probs[0])


def test_the_seed_layout_refuses_an_init_it_would_ignore_and_says_so_in_its_summary():
    """The seed layout keeps Keras's defaults: a paper-layout init or bias_fill is an error, not
    silently dropped, and a run's config.json says the recipe's init was not used."""
    for kw in ({"init": "fan_in"}, {"bias_fill": 0.1}):
        with pytest.raises(ValueError, match="the seed layout keeps Keras's default initialisation"):
            A.build_model("seed", "towers", num_classes=5, input_shape=SMALL_INPUT["seed"], **kw)
    summary = models.init_summary("seed", None, "paper")
    assert summary["scheme"] == "keras" and summary["recipe_init"].startswith("'paper' not used")
