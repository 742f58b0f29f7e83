"""The same model builds and trains under KERAS_BACKEND=jax (one device), and agrees with TF."""

import numpy as np
import pytest
from conftest import DEVICES, run_python

import alexnet_split as A

pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")


def test_jax_builds_trains_and_warns_about_devices():
    code = """
import warnings, numpy as np, keras, alexnet_split as A
assert keras.backend.backend() == "jax"
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
changed = sum(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
print("LOSS", h.history["loss"][0], "CHANGED", changed, "OF", len(before))
"""
    proc = run_python(code, backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed, total = proc.stdout.split("CHANGED")[1].split("OF")
    assert int(changed) == int(total) > 0  # the step updated every weight


def test_tensorflow_model_loads_under_jax_with_equal_predictions(tmp_path):
    model = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), devices=DEVICES)
    x = np.random.default_rng(1).uniform(0, 255, (3, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    code = f"""
import numpy as np, keras, alexnet_split
m = keras.models.load_model("{tmp_path / 'm.keras'}")
p = np.asarray(m.predict(np.load("{tmp_path / 'x.npy'}"), verbose=0))
ref = np.load("{tmp_path / 'p.npy'}")
print("MAXDIFF", float(np.abs(p - ref).max()), float(ref.std()))
np.testing.assert_allclose(p, ref, atol=1e-5)
m.compile("sgd", "categorical_crossentropy")  # the loaded PlacedModel trains on JAX too
h = m.fit(np.load("{tmp_path / 'x.npy'}"), keras.utils.to_categorical([0, 1, 2], 17), verbose=0)
assert np.isfinite(h.history["loss"][0])
"""
    proc = run_python(code, backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("engine, expected", [("auto", "device"), ("fit", "fit")])
def test_runner_trains_under_jax(tmp_path, data_root, engine, expected):
    """auto picks the device loop under JAX; Keras fit with the NumPy pipeline still works there."""
    import json

    code = f"""
import sys
from alexnet_split import cli
sys.exit(cli.main(["train", "--recipe", "quick", "--set", "epochs=1", "--data", "{data_root}",
                   "--out", "{tmp_path / 'run'}", "--engine", "{engine}"]))
"""
    proc = run_python(code, backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["backend"] == "jax" and cfg["devices"] == [] and "jax" in cfg["versions"]
    assert cfg["engine"] == expected
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["steps"] == (22 if expected == "fit" else 21) and final["test_top1"] >= 0  # short last batch or not
