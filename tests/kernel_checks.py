"""Checks of the kernel options (alexnet_split.kernels) on whichever backend KERAS_BACKEND names.

tests/test_kernels.py calls them in its own process (TensorFlow) and runs them in a fresh interpreter
under JAX: ``python tests/kernel_checks.py CHECK[:ARG,...] ...`` with KERAS_BACKEND=jax. The checks
named ``jax_*`` inspect JAX's traced programs. A check raises on failure; after one that passes the
script prints ``OK CHECK``.
"""

import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import ops

import alexnet_split as A
from alexnet_split import kernels, train
from alexnet_split.layers import LRN, FirstMaxPooling2D

BACKEND = keras.backend.backend()
C = 67  # the smallest input the paper net accepts


def _np(t):
    return np.asarray(ops.convert_to_numpy(ops.cast(t, "float32")), np.float64)


def _vjp(f, x, g):
    """(f(x), dL/dx for upstream gradient g), on the running backend."""
    if BACKEND == "jax":
        import jax

        def vjp(x, g):
            y, back = jax.vjp(f, x)
            return y, back(g)[0]

        return jax.jit(vjp)(x, g)  # one compiled program, not one per op
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return y, tape.gradient(y, x, output_gradients=g)


def _relu_maps(shape, seed, scale=30.0):
    """Post-ReLU feature maps: a quarter zeros, magnitudes where alpha * sum(a^2) moves the LRN."""
    return np.maximum(np.random.default_rng(seed).normal(scale / 2, scale, shape), 0).astype("float32")


def lrn_shifted_equals_band(dtype="float32", groups="1"):
    """Values and input gradients (random upstream) of LRN(impl="shifted") equal the band LRN's: in
    float32 tightly, in bf16 (both read and write bf16) as close to the float32 reference of the same
    bf16 inputs as the band LRN is, within bf16's rounding; the shifted one's output stays bf16."""
    groups = int(groups)
    x = _relu_maps((2, 7, 7, 24), seed=groups)
    g = np.random.default_rng(9).normal(0, 1, x.shape).astype("float32")
    policy = "float32" if dtype == "float32" else "mixed_bfloat16"
    xd, gd = ops.convert_to_tensor(x, dtype), ops.convert_to_tensor(g, dtype)
    ref_y, ref_dx = (_np(t) for t in _vjp(LRN(groups=groups), ops.cast(xd, "float32"), ops.cast(gd, "float32")))
    band_y, band_dx = (_np(t) for t in _vjp(LRN(groups=groups, dtype=policy), xd, gd))
    shifted = LRN(groups=groups, impl="shifted", dtype=policy)
    y, dx = _vjp(shifted, xd, gd)
    assert [keras.backend.standardize_dtype(t.dtype) for t in (y, dx)] == [dtype, dtype], (y.dtype, dx.dtype)
    if dtype == "float32":
        np.testing.assert_allclose(_np(y), band_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_np(dx), band_dx, rtol=1e-5, atol=1e-6 * np.abs(band_dx).max())
        return
    for ours, band, ref in ((_np(y), band_y, ref_y), (_np(dx), band_dx, ref_dx)):
        tol = 2 ** -7 * np.abs(ref).max()  # bf16 keeps 8 significant bits
        assert np.abs(band - ref).max() <= tol and np.abs(ours - ref).max() <= tol, \
            (np.abs(band - ref).max(), np.abs(ours - ref).max(), tol)
        np.testing.assert_allclose(ours, ref, rtol=2 ** -7, atol=2 ** -8 * np.abs(ref).max())


def jax_lrn_shifted_keeps_only_x():
    """The shifted LRN's backward pass keeps x (bf16) and nothing else, where the band LRN keeps four
    float32 tensors of x's size (x, s, s^-beta, y) and the band matrix: the residuals of jax.vjp."""
    import jax

    x = ops.convert_to_tensor(_relu_maps((2, 5, 5, 24), seed=0), "bfloat16")
    saved = {}
    for impl in LRN.IMPLS:
        _, back = jax.vjp(LRN(groups=2, impl=impl, dtype="mixed_bfloat16"), x)
        saved[impl] = [(leaf.shape, str(leaf.dtype)) for leaf in jax.tree_util.tree_leaves(back)]
    assert saved["shifted"] == [(x.shape, "bfloat16")], saved["shifted"]
    assert saved["band"].count((x.shape, "float32")) == 4, saved["band"]


# (pool, stride, size): the paper's 3/2 (odd and even maps), the seed's 2/2, and other overlaps and gaps
POOLS = ((3, 2, 13), (3, 2, 14), (2, 2, 9), (2, 2, 8), (3, 1, 7), (2, 3, 11))


def first_max_pool_equals_keras(dtype="float32"):
    """FirstMaxPooling2D's values and gradients are exactly MaxPooling2D's, on inputs full of ties
    (ReLU zeros, small integers repeated in a window): the first maximum in row-major order gets it."""
    policy = "float32" if dtype == "float32" else "mixed_bfloat16"
    rng = np.random.default_rng(3)
    for pool, stride, size in POOLS:
        x = ops.convert_to_tensor(np.maximum(rng.integers(-3, 4, (2, size, size, 5)), 0).astype("float32"), dtype)
        stock, ours = (cls(pool, stride, dtype=policy) for cls in (keras.layers.MaxPooling2D, FirstMaxPooling2D))
        y0 = stock(x)
        g = ops.convert_to_tensor(rng.normal(0, 1, y0.shape).astype("float32"), dtype)
        (y0, dx0), (y1, dx1) = _vjp(stock, x, g), _vjp(ours, x, g)
        assert keras.backend.standardize_dtype(dx1.dtype) == dtype, dx1.dtype
        for a, b, what in ((y1, y0, "value"), (dx1, dx0, "gradient")):
            np.testing.assert_array_equal(_np(a), _np(b), err_msg=f"{what}, pool {pool} stride {stride} size {size}")
    try:
        FirstMaxPooling2D(3, 2, padding="same")
    except ValueError as e:
        assert "padding='valid'" in str(e) and "'same'" in str(e), e
    else:
        raise AssertionError("padding='same' was accepted")


def jax_first_max_pool_has_no_scatter():
    """The gradient of first_max_pool traces to no scatter primitive; the stock max-pool's gradient
    traces to select_and_scatter_add (atomic adds on a GPU)."""
    import jax

    x = ops.convert_to_tensor(_relu_maps((2, 13, 13, 8), seed=1), "bfloat16")
    found = {}
    for name, pool in (("stock", keras.layers.MaxPooling2D(3, 2, dtype="mixed_bfloat16")),
                       ("first", FirstMaxPooling2D(3, 2, dtype="mixed_bfloat16"))):
        jaxpr = jax.make_jaxpr(jax.grad(lambda v, pool=pool: ops.sum(ops.cast(pool(v), "float32"))))(x)
        # the printed program names every primitive, those of nested jaxprs (pjit, custom_vjp) too
        found[name] = sorted({word for word in str(jaxpr).replace("[", " ").split() if "scatter" in word})
    assert found["stock"] and not found["first"], found


def _grads(model, x, r):
    """Gradients of sum(logits * r) with respect to the model's trainable weights (inference mode)."""
    if BACKEND == "jax":
        import jax

        nontrainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            logits, _ = model.stateless_call(trainable, nontrainable, x, training=False)
            return ops.sum(logits * r)

        return [np.asarray(g) for g in jax.jit(jax.grad(loss))([v.value for v in model.trainable_variables])]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=False) * r)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def _logits(model, x):
    """The model's logits in inference mode (on JAX as one compiled program)."""
    if BACKEND == "jax":
        import jax

        call = jax.jit(lambda tv, nv, x: model.stateless_call(tv, nv, x, training=False)[0])
        return np.asarray(call([v.value for v in model.trainable_variables],
                               [v.value for v in model.non_trainable_variables], x))
    return np.asarray(model(x, training=False))


def shared_conv1_equals_towers(options="shared_conv1"):
    """With the baseline's weights, the towers model with kernel `options` ('+'-separated) computes the
    baseline's logits and weight gradients; it has its parameter count, initialises to its weights
    for the same seed, saves and loads, and keeps conv1.npz's t0_conv1/t1_conv1 (11x11x3x48)."""
    keras.utils.set_random_seed(0)
    base = A.build_model("paper", "towers", 17, input_shape=(C, C, 3), logits=True)
    keras.utils.set_random_seed(0)
    model = A.build_model("paper", "towers", 17, input_shape=(C, C, 3), logits=True, kernels=options.split("+"))
    assert model.count_params() == base.count_params()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), base.get_weights(), strict=True))
    assert A.tower_layer_names(model) == A.tower_layer_names(base)
    if "shared_conv1" in options:
        assert model.get_layer("conv1").__class__.__name__ == "SharedConv"
    rng = np.random.default_rng(0)
    base.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in base.get_weights()])  # biases != 0
    model.set_weights(base.get_weights())
    x = rng.uniform(0, 255, (4, C, C, 3)).astype("float32")
    r = rng.normal(0, 1, (4, 17)).astype("float32")
    logits = _logits(model, x)
    np.testing.assert_allclose(logits, _logits(base, x), rtol=1e-4,
                               atol=1e-5 * np.abs(logits).max())
    for ours, theirs, v in zip(_grads(model, x, r), _grads(base, x, r), base.trainable_variables, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max() + 1e-12, err_msg=v.path)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m.keras")
        loaded = keras.models.load_model(Path(tmp) / "m.keras")
        np.testing.assert_array_equal(_logits(loaded, x), logits)
        train.save_conv1(loaded, Path(tmp) / "conv1.npz")
        with np.load(Path(tmp) / "conv1.npz") as z:
            assert {k: z[k].shape for k in z.files} == {"t0_conv1": (11, 11, 3, 48), "t1_conv1": (11, 11, 3, 48)}


def parse_kernels_rejects_unknown_names():
    """parse_kernels: KERNELS order, each once; an unknown name repeats the value and lists the choices."""
    assert kernels.parse_kernels("") == kernels.parse_kernels(None) == ()
    assert kernels.parse_kernels("shared_conv1, first_max_pool,shared_conv1") == ("first_max_pool", "shared_conv1")
    assert kernels.parse_kernels(["shifted_lrn"]) == ("shifted_lrn",)
    try:
        kernels.parse_kernels("shifted_lrn,fast")
    except ValueError as e:
        assert "'shifted_lrn,fast'" in str(e) and "shifted_lrn, first_max_pool, shared_conv1" in str(e), e
    else:
        raise AssertionError("an unknown kernel was accepted")


CHECKS = {f.__name__: f for f in (lrn_shifted_equals_band, jax_lrn_shifted_keeps_only_x, first_max_pool_equals_keras,
                                  jax_first_max_pool_has_no_scatter, shared_conv1_equals_towers,
                                  parse_kernels_rejects_unknown_names)}

if __name__ == "__main__":
    for arg in sys.argv[1:]:
        name, _, args = arg.partition(":")
        CHECKS[name](*(args.split(",") if args else ()))
        print("OK", arg, flush=True)
