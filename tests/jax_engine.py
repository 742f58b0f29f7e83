"""Checks of the device engine (alexnet_split.engine_device) that need KERAS_BACKEND=jax.

The test process runs Keras on TensorFlow, so tests/test_engine_device.py runs each check here in a
fresh interpreter: ``python tests/jax_engine.py CHECK``. A check raises on failure.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import alexnet_split as A  # noqa: E402
from alexnet_split import config, engine_device, pipeline, train  # noqa: E402
from alexnet_split.kernels import KERNELS  # noqa: E402

C = 67  # the smallest input the paper net accepts


def _images(n=24, size=72, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 17


def _model(seed=0, **recipe):
    keras.utils.set_random_seed(seed)
    return train.new_model("paper", "towers", C, None, config.get_recipe("quick", **recipe))


def batches_equal_the_numpy_pipeline():
    """The batch contract: step s gives the same pixels and labels on both engines, across epochs."""
    images, labels = _images(40)
    loop = engine_device.DeviceLoop(_model(), images, labels, images[:8, :C, :C], labels[:8], 8, C, seed=3,
                                    pca_sigma=0.1, interval_steps=2)
    numpy = pipeline.TrainBatches(images, labels, 8, C, 17, seed=3, pca_sigma=0.1)
    assert loop.steps_per_epoch == numpy.batches_per_epoch == 5
    for step in range(12):  # two epoch boundaries
        x, y = (np.asarray(a) for a in loop.batch(step))
        nx, ny = numpy.step(step)
        np.testing.assert_array_equal(x, nx)
        np.testing.assert_array_equal(y, ny.argmax(1))
    # and a scanned interval trains on exactly its own batches: its first loss is the loss of its
    # first step's batch, for the first interval and for one in the second epoch
    state = loop.state()
    for start in (0, 6):
        _, _, losses = loop.train_interval(state, start)
        logits, _ = loop.model.stateless_call(state.trainable, state.non_trainable, numpy.step(start)[0], training=True)
        ref = keras.losses.CategoricalCrossentropy(from_logits=True)(numpy.step(start)[1], logits)
        np.testing.assert_allclose(float(losses[0]), float(ref), rtol=1e-5, err_msg=f"interval from step {start}")


def interval_equals_stepwise_updates():
    """A scanned interval equals the same steps applied one at a time, with batches from the NumPy
    pipeline and Keras's own cross-entropy from logits as the reference."""
    images, labels = _images()
    m = _model(optimizer="sgd", learning_rate=0.01, weight_decay=0.5)
    loop = engine_device.DeviceLoop(m, images, labels, images[:6, :C, :C], labels[:6], 8, C, 0, pca_sigma=0.1,
                                    interval_steps=3)
    numpy = pipeline.TrainBatches(images, labels, 8, C, 17, seed=0, pca_sigma=0.1)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    s0 = loop.state()
    s3, means, losses = loop.train_interval(s0, 0)
    tr, nt, opt = s0
    for step in range(3):
        x, y = numpy.step(step)

        def loss_fn(tr, nt, x=x, y=y):
            logits, nt = m.stateless_call(tr, nt, x, training=True)
            return ce(y, logits), nt

        (loss, nt), g = jax.value_and_grad(loss_fn, has_aux=True)(tr, nt)
        np.testing.assert_allclose(float(loss), float(losses[step]), rtol=1e-4)
        tr, opt = m.optimizer.stateless_apply(opt, g, tr)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() + 1e-12))
                for a, b in zip(s3.trainable, tr, strict=False))
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(s3.trainable, s0.trainable, strict=False))
    assert worst < 1e-4 and moved > 1e-4, (worst, moved)
    assert int(s3.optimizer[0]) == 3  # the optimizer's iteration counter


def validation_and_test_equal_predict():
    """Validation on the device equals Keras predict of the softmax model on the same weights
    (inference mode: no dropout), and the test prediction equals predict on pipeline.crops."""
    images, labels = _images(30)
    m = _model(init="fan_in")  # He-normal weights: logits far enough apart for exact top-k ties
    val_x, val_y = pipeline.crops(images[:10], C)[0], np.arange(10) % 17
    loop = engine_device.DeviceLoop(m, images, labels, val_x, val_y, 8, C, 0, interval_steps=2, eval_batch=4)
    state, _, _ = loop.train_interval(loop.state(), 0)  # moved weights, dropout state advanced
    val = loop.evaluate(state)
    loop.write_back(state)
    probs = np.asarray(A.with_softmax(m).predict(val_x.astype(np.float32), verbose=0), np.float64)
    np.testing.assert_allclose(val["val_loss"], np.mean(-np.log(probs[np.arange(10), val_y])), rtol=1e-4)
    np.testing.assert_allclose([val["val_accuracy"], val["val_top5"]],
                               [pipeline.topk_accuracy(probs, val_y, 1), pipeline.topk_accuracy(probs, val_y, 5)],
                               rtol=1e-6)
    for ten in (False, True):  # 7 images pad to 8
        np.testing.assert_allclose(loop.predict(loop.state(), images[:7], ten),
                                   pipeline.predict_crops(A.with_softmax(m), images[:7], C, ten=ten), atol=1e-5)


def a_saturated_start_has_a_loss_and_a_gradient():
    """Biases of 30 saturate the softmax: the loss from logits is far above the clipped loss's
    ceiling -ln(1e-7) = 16.12, and fc8 still gets a gradient."""
    images, labels = _images(16)
    m = _model(bias_fill=30.0)
    loop = engine_device.DeviceLoop(m, images, labels, images[:4, :C, :C], labels[:4], 8, C, 0, interval_steps=1)
    state = loop.state()
    _, means, losses = loop.train_interval(state, 0)
    assert float(losses[0]) > 16.2, float(losses[0])
    x, y = (np.asarray(a) for a in loop.batch(0))
    fc8 = [i for i, v in enumerate(m.trainable_variables) if v.path.startswith("fc8/")]

    def loss(tr):
        logits, _ = m.stateless_call(tr, state.non_trainable, x, training=True)
        return engine_device.cross_entropy(logits, y).mean()

    grads = jax.grad(loss)(state.trainable)
    assert all(float(np.abs(np.asarray(grads[i])).max()) > 0 for i in fc8), "fc8 has no gradient"
    # the control: the clipped loss on probabilities is stuck under its ceiling
    probs = jax.nn.softmax(m.stateless_call(state.trainable, state.non_trainable, x, training=False)[0])
    clipped = keras.losses.categorical_crossentropy(jax.nn.one_hot(y, 17), probs)
    assert float(np.max(clipped)) <= 16.2


def one_compile_per_structure():
    """Loops of the same structure share their compiled code, whatever the seed or the init."""
    images, labels = _images(40)
    args = (images, labels, images[:4, :C, :C], labels[:4], 8, C)
    first = engine_device.DeviceLoop(_model(), *args, 0)
    assert engine_device.DeviceLoop(_model(seed=5), *args, 5).programs is first.programs
    assert engine_device.DeviceLoop(_model(init="fan_in"), *args, 5).programs is first.programs
    # compile() builds every program a run calls, with its real shapes, and the run uses those
    seconds = first.compile(test_count=7, ten_crop=True)
    assert set(seconds) == {"train_interval", "evaluate", "predict", "predict_10crop"}, seconds
    compiled = engine_device.executables()
    assert len(compiled) == 4
    other = engine_device.DeviceLoop(_model(seed=7), *args, 7)
    assert max(other.compile(test_count=7, ten_crop=True).values()) < 0.05  # nothing left to compile
    state, _, _ = other.train_interval(other.state(), 0)
    other.evaluate(state)
    for ten in (False, True):
        other.predict(state, images[:7], ten)
    assert engine_device.executables() == compiled, [k[1] for k in set(engine_device.executables()) - set(compiled)]


def cross_entropy_is_a_product_without_scatter():
    """The loss picks the label's log-probability with a one-hot product: the values and gradient
    of take_along_axis's pick, and no scatter in the gradient (deterministic on GPU)."""
    logits = jax.random.normal(jax.random.key(0), (8, 17)) * 5
    labels = jnp.arange(8) % 17

    def picked(z):
        return -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), labels[:, None], axis=-1)[:, 0]

    np.testing.assert_array_equal(engine_device.cross_entropy(logits, labels), picked(logits))
    grad = jax.grad(lambda z: engine_device.cross_entropy(z, labels).sum())
    np.testing.assert_allclose(grad(logits), jax.grad(lambda z: picked(z).sum())(logits), rtol=1e-6, atol=1e-7)
    assert "scatter" not in jax.jit(grad).lower(logits).as_text()
    assert "scatter" in jax.jit(jax.grad(lambda z: picked(z).sum())).lower(logits).as_text()  # the control


def refused_options_compile_without_them():
    """A program XLA will not compile with the deterministic options (on GPU: a select-and-scatter)
    is compiled without them, and the loop says which; here an option XLA does not know stands in."""
    from alexnet_split import jax_setup

    jax_setup.compiler_options = lambda backend: {"xla_no_such_option": True}
    key = ("a structure",)
    exe, notes = engine_device.compile_executable(jax.jit(lambda x: x * 2), (key, "evaluate"), (jnp.ones(3),))
    np.testing.assert_array_equal(exe(jnp.ones(3)), [2, 2, 2])
    assert notes == {"options": {}, "refused": {"xla_no_such_option": True}}, notes
    assert engine_device.refused_programs(key) == ["evaluate"]


def all_kernel_options_train_like_the_baseline():
    """The three kernel options together (config.Recipe.kernels) train on the device engine, in float32
    and in bf16: the same initial weights for a seed as today's ops, an interval's losses and weights
    within rounding of theirs, and a compiled program of their own (the model's config differs)."""
    images, labels = _images(40)
    args = (images, labels, images[:4, :C, :C], labels[:4], 8, C, 0)
    # tolerances: the losses', and the distance between the two runs' weights after the interval over
    # the distance the weights moved (float32: ~6e-7 when this was written, 4e-3 with tower 0's conv1
    # output fed to both towers; bf16: ~4e-3)
    for precision, rtol, apart_rtol in (("float32", 1e-5, 1e-5), ("mixed_bfloat16", 1e-3, 5e-2)):
        loops = {}
        for kernels in ("", ",".join(KERNELS)):
            keras.config.set_dtype_policy(precision)
            # plain SGD: an update proportional to the gradient (Adam's ~lr-sized steps amplify rounding)
            model = _model(kernels=kernels, optimizer="sgd", learning_rate=0.01)
            loops[kernels] = engine_device.DeviceLoop(model, *args, interval_steps=2)
            keras.config.set_dtype_policy("float32")
        base, ours = loops.values()
        assert ours.programs is not base.programs
        s0 = ours.state()
        assert all(np.array_equal(a, b) for a, b in zip(s0.trainable, base.state().trainable, strict=True))
        (s2, _, losses), (b2, _, base_losses) = ours.train_interval(s0, 0), base.train_interval(base.state(), 0)
        assert np.isfinite(np.asarray(losses)).all()
        np.testing.assert_allclose(np.asarray(losses), np.asarray(base_losses), rtol=rtol, err_msg=precision)
        moved, apart = (np.sqrt(sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
                                    for a, b in zip(s2.trainable, other, strict=True)))
                        for other in (s0.trainable, b2.trainable))
        assert moved > 1e-3 and apart < apart_rtol * moved, (precision, moved, apart)


def the_best_validation_weights_are_tested_not_the_last():
    """The device engine keeps the state of the interval with the best validation accuracy (the
    second of three, by forcing the recorded accuracies), and its predict tests exactly those."""
    import tempfile
    from pathlib import Path

    images, labels = _images()
    recipe = config.get_recipe("quick", batch_size=4, init="fan_in", learning_rate=1e-3)
    model = _model(init="fan_in", learning_rate=1e-3, batch_size=4)
    split = train.Split(images, labels, images[:, 2:2 + C, 2:2 + C], labels, images, labels, "", "", {})
    run = train.Run(Path(tempfile.mkdtemp()), train._new_state(recipe), 3, 2, 6)
    forced, seen, record = iter([0.5, 0.9, 0.3]), [], run.record

    def record_forcing_val(metrics, lr, seconds):
        return record({**metrics, "val_accuracy": next(forced)}, lr, seconds)

    run.record = record_forcing_val
    real_keep = run.keep_if_best

    def keep_and_see(weights):
        seen.append([np.asarray(w).copy() for w in weights()])  # the state this interval validated
        return real_keep(weights)

    run.keep_if_best = keep_and_see
    _, predict = engine_device.run(model, run, split, recipe, C, 0, verbose=0)
    assert run.best_weights_step == run.schedule.best_step == 4, run.best_weights_step
    for kept, at_best in zip(run.best_weights, seen[1], strict=True):
        np.testing.assert_array_equal(np.asarray(kept), at_best)
    last, best = predict(images, False), predict(images, False, run.best_weights)
    assert not np.allclose(last, best, atol=1e-4)
    n = len(model.trainable_variables)
    logits, _ = model.stateless_call(seen[1][:n], seen[1][n:], split.val_x.astype(np.float32), training=False)
    np.testing.assert_allclose(best, np.asarray(jax.nn.softmax(logits.astype(jnp.float32))), atol=1e-5)
    final = train._test_best_val(predict, split, False, run)
    assert final["best_val_step"] == 4 and final["test_top1_best_val"] == pipeline.topk_accuracy(best, labels, 1)


def the_device_engine_divides_the_lr_on_a_plateau():
    """Section 5's drop on the device engine: a validation accuracy that stops improving (forced
    here) for lr_drop_patience steps divides the learning rate the next interval trains with by 10."""
    import tempfile
    from pathlib import Path

    images, labels = _images()
    recipe = config.get_recipe("quick", batch_size=4, lr_drop_patience=4, max_lr_drops=1, learning_rate=1e-3)
    model = _model(batch_size=4, lr_drop_patience=4, max_lr_drops=1, learning_rate=1e-3)
    split = train.Split(images, labels, images[:, 2:2 + C, 2:2 + C], labels, images, labels, "", "", {})
    run = train.Run(Path(tempfile.mkdtemp()), train._new_state(recipe), 4, 2, 6)
    record = run.record
    run.record = lambda metrics, lr, seconds: record({**metrics, "val_accuracy": 0.5}, lr, seconds)
    engine_device.run(model, run, split, recipe, C, 0, verbose=0)
    assert run.schedule.drop_steps == [6], run.schedule.drop_steps
    lrs = [round(row["lr"], 9) for row in run.state["history"]]  # the optimizer's rate after each interval
    assert lrs == [1e-3, 1e-3, 1e-3, 1e-4], lrs


CHECKS = {f.__name__: f for f in (batches_equal_the_numpy_pipeline, the_device_engine_divides_the_lr_on_a_plateau,
                                  the_best_validation_weights_are_tested_not_the_last, interval_equals_stepwise_updates,
                                  validation_and_test_equal_predict, a_saturated_start_has_a_loss_and_a_gradient,
                                  one_compile_per_structure, all_kernel_options_train_like_the_baseline,
                                  cross_entropy_is_a_product_without_scatter, refused_options_compile_without_them)}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        CHECKS[name]()
        print("OK", name, flush=True)
