"""Checks of the model under KERAS_BACKEND=jax that tests/test_jax.py runs in a fresh interpreter.

The test process runs Keras on TensorFlow, so each check runs as ``python tests/jax_backend.py CHECK
[ARGS]`` with KERAS_BACKEND=jax set by the caller. A check raises on failure; after one that passes
the script prints ``OK CHECK``.
"""

import sys
import warnings
from pathlib import Path

import keras
import numpy as np

import alexnet_split as A


def builds_trains_and_warns_about_devices():
    """Builds the towers model with devices (warns: placement needs TensorFlow), takes one fit step
    and prints how many weights changed: ``CHANGED n OF total``."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert A.configure_devices() == []
        m = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), devices=["/CPU:0", "/CPU:1"])
    msgs = [str(x.message) for x in w]
    assert any("needs the TensorFlow backend" in s for s in msgs), msgs
    m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 67, 67, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 3], 17)
    before = [w.copy() for w in m.get_weights()]
    h = m.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, m.get_weights(), strict=True))
    print("LOSS", h.history["loss"][0], "CHANGED", changed, "OF", len(before))


def loads_a_tensorflow_model(folder):
    """`folder` holds m.keras saved under TensorFlow, its input x.npy and its predictions p.npy: the
    model loads, predicts the same, and trains."""
    folder = Path(folder)
    x = np.load(folder / "x.npy")
    m = A.load_model(folder / "m.keras")  # registers the package's classes, as a user would load it
    p = np.asarray(m.predict(x, verbose=0))
    ref = np.load(folder / "p.npy")
    print("MAXDIFF", float(np.abs(p - ref).max()), float(ref.std()))
    np.testing.assert_allclose(p, ref, atol=1e-5)
    m.compile("sgd", "categorical_crossentropy")  # the loaded PlacedModel trains on JAX too
    h = m.fit(x, keras.utils.to_categorical([0, 1, 2], 17), verbose=0)
    assert np.isfinite(h.history["loss"][0])


CHECKS = {f.__name__: f for f in (builds_trains_and_warns_about_devices, loads_a_tensorflow_model)}

if __name__ == "__main__":
    assert keras.backend.backend() == "jax", f"run with KERAS_BACKEND=jax, not {keras.backend.backend()}"
    name, *args = sys.argv[1:]
    CHECKS[name](*args)
    print("OK", name, flush=True)
