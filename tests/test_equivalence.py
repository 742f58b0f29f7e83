"""The two-tower model is a grouped-convolution network (Caffe's bvlc_alexnet `group: 2`).

The reference below is written independently of the library, with plain Keras layers on one
device: ``Conv2D(groups=2)`` where a tower reads only itself (conv2, conv4, conv5), full layers
where the towers cross (conv1 reads the image, conv3, fc6, fc7, fc8), and TensorFlow's own
``tf.nn.local_response_normalization`` applied to each group's channels.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import DEVICES
from keras import layers

import alexnet_split as A

SIZE = 67  # smallest input the paper net accepts; keeps the test fast
MEAN = np.array([123.68, 116.78, 103.94], "float32")


def grouped_lrn(x, groups=2):
    parts = tf.split(x, groups, axis=-1)
    return tf.concat([tf.nn.local_response_normalization(p, 2, 2.0, 1e-4, 0.75) for p in parts], -1)


def reference(classes):
    inp = keras.Input((SIZE, SIZE, 3))
    x = layers.Lambda(lambda t: t - MEAN)(inp)
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, 2)(layers.Lambda(grouped_lrn)(x))
    x = layers.Conv2D(256, 5, padding="same", groups=2, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, 2)(layers.Lambda(grouped_lrn)(x))
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=2, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=2, activation="relu", name="conv5")(x)
    x = layers.Flatten()(layers.MaxPooling2D(3, 2)(x))
    x = layers.Dense(4096, activation="relu", name="fc6")(x)
    x = layers.Dense(4096, activation="relu", name="fc7")(x)
    out = layers.Dense(classes, activation="softmax", name="fc8")(x)
    return keras.Model(inp, out)


def tower_slices(towers_model):
    """(tower variable, reference layer, weight index, output-channel slice) for every weight."""
    pairs = []
    for name in ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]:
        for k in range(2):
            block = towers_model.get_layer(f"t{k}_{name}")
            sub = block.conv if name.startswith("conv") else block.dense
            width = sub.kernel.shape[-1]
            for i, v in enumerate((sub.kernel, sub.bias)):
                pairs.append((v, name, i, slice(k * width, (k + 1) * width)))
    fc8 = towers_model.get_layer("fc8").dense
    pairs += [(fc8.kernel, "fc8", 0, slice(None)), (fc8.bias, "fc8", 1, slice(None))]
    return pairs


@pytest.fixture(scope="module")
def models():
    classes = 17
    keras.utils.set_random_seed(3)
    ref = reference(classes)
    towers = A.build_model("paper", "towers", classes, input_shape=(SIZE, SIZE, 3), devices=DEVICES)
    for var, name, i, sl in tower_slices(towers):
        var.assign(ref.get_layer(name).get_weights()[i][..., sl])
    # Glorot weights and 0-255 inputs saturate nothing but give every layer a real signal.
    x = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 5, 9, 16], classes)
    return ref, towers, x, y


def close(a, b, tol=1e-5):
    """|a - b| <= tol * max|b|: float32 sums in a different order (split vs grouped conv)."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1e-30)
    err = float(np.abs(a - b).max()) / scale
    print(f"relative error {err:.2e}")
    assert err <= tol, f"relative error {err:.2e} > {tol}"
    return err


def test_reference_really_uses_groups_and_both_towers_are_placed(models):
    ref, towers, _, _ = models
    assert ref.get_layer("conv2").groups == 2 and ref.get_layer("conv3").groups == 1
    assert towers.get_layer("t1_conv4").conv.kernel.value.device.endswith("CPU:1")
    assert towers.count_params() == ref.count_params()


def test_outputs_equal(models):
    ref, towers, x, _ = models
    p_ref = ref(x, training=False).numpy()
    p_towers = np.asarray(towers(x, training=False))
    assert p_ref.std() > 1e-3  # not a constant output
    close(p_towers, p_ref)


def test_gradients_equal(models):
    ref, towers, x, y = models
    loss = keras.losses.CategoricalCrossentropy()
    with tf.GradientTape() as tape:
        l_ref = loss(y, ref(x, training=False))
    g_ref = dict(zip([id(v) for v in ref.trainable_variables], tape.gradient(l_ref, ref.trainable_variables),
                     strict=False))
    with tf.GradientTape() as tape:
        l_towers = loss(y, towers(x, training=False))
    tv = towers.trainable_variables
    g_towers = dict(zip([id(v) for v in tv], tape.gradient(l_towers, tv), strict=False))
    close(l_towers, l_ref)
    checked = 0
    for var, name, i, sl in tower_slices(towers):
        ref_var = ref.get_layer(name).trainable_variables[i]
        g = g_ref[id(ref_var)].numpy()[..., sl]
        assert np.abs(g).max() > 0, f"{name}: zero reference gradient"
        close(g_towers[id(var)], g)
        checked += 1
    assert checked == len(tv) == 30


def test_library_grouped_model_matches_the_independent_reference(models):
    """build_grouped_model (the benchmark's one-device baseline, with LRN(groups=2))."""
    from alexnet_split.models import build_grouped_model

    ref, _, x, _ = models
    grouped = build_grouped_model("paper", 17, input_shape=(SIZE, SIZE, 3))
    for name in ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]:
        grouped.get_layer(name).set_weights(ref.get_layer(name).get_weights())
    assert grouped.get_layer("conv4").groups == 2 and grouped.count_params() == ref.count_params()
    close(np.asarray(grouped(x, training=False)), ref(x, training=False).numpy())


@pytest.mark.parametrize("optimizer", ["sgd", "paper_sgd", "adam"])
def test_placed_training_matches_stock_keras(optimizer):
    """PlacedModel's step (tf.gradients, per-device updates, fused SGD momentum, the paper's
    decay inside it) is the same arithmetic as Keras's own train_step and the optimizer's own
    update_step, within float32 rounding."""
    x = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 17, 17)
    results = []
    for placed in (True, False):
        keras.utils.set_random_seed(1)
        model = A.build_model("paper", "towers", 17, input_shape=(SIZE, SIZE, 3), devices=DEVICES)
        if not placed:
            model = keras.Model(model.inputs, model.outputs)  # stock train_step and optimizer
        opt = {"sgd": lambda: keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4),
               # a large l2, so that a decay missing on one side would exceed the tolerance
               "paper_sgd": lambda: A.PaperSGD(0.01, momentum=0.9, l2=0.5),
               "adam": lambda: keras.optimizers.Adam(1e-4)}[optimizer]()
        model.compile(opt, "categorical_crossentropy", jit_compile=False)
        for _ in range(3):
            model.train_on_batch(x, y)
        results.append([np.asarray(v) for v in model.trainable_variables + model.optimizer.variables[2:]])
    assert not isinstance(model, A.PlacedModel)
    for a, b in zip(*results, strict=False):
        close(a, b)


@pytest.mark.parametrize("beta, groups", [(0.75, 1), (0.5, 1), (0.75, 2)])
def test_lrn_hand_written_gradient_matches_tensorflow(beta, groups):
    """The LRN's closed-form input gradient equals the gradient of tf.nn.lrn, per group."""
    from alexnet_split.layers import LRN

    x = tf.constant(np.random.default_rng(3).normal(0, 30, (2, 5, 5, 12)).astype("float32"))
    g = tf.constant(np.random.default_rng(4).normal(0, 1, (2, 5, 5, 12)).astype("float32"))
    layer = LRN(beta=beta, groups=groups)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = layer(x)
        ref = tf.concat([tf.nn.local_response_normalization(part, depth_radius=2, bias=2.0, alpha=1e-4, beta=beta)
                         for part in tf.split(x, groups, axis=-1)], axis=-1)
        lo, lr = tf.reduce_sum(ours * g), tf.reduce_sum(ref * g)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    d_ours, d_ref = tape.gradient(lo, x).numpy(), tape.gradient(lr, x).numpy()
    assert np.abs(d_ref).max() > 0.1 and not np.allclose(d_ref, g.numpy() * 2 ** -beta, rtol=1e-2)  # LRN bites
    np.testing.assert_allclose(d_ours, d_ref, rtol=1e-4, atol=1e-6)
