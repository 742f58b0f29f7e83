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


def test_both_engines_compute_the_same_run(tmp_path, data_root):
    """Under JAX, Keras fit on the NumPy pipeline and the device loop train the same seed to the
    same losses, validation and test figures (same batches, same init, same dropout masks), across
    an epoch boundary (10 steps per epoch at batch 64)."""
    import json

    from conftest import history

    runs = {}
    for engine in ("fit", "auto"):
        out = tmp_path / engine
        code = (f"import sys; from alexnet_split import cli; sys.exit(cli.main(['train', '--recipe', 'quick', "
                f"'--set', 'epochs=null', 'steps=12', 'eval_every=6', 'batch_size=64', '--data', '{data_root}', "
                f"'--out', '{out}', '--engine', '{engine}']))")
        proc = run_python(code, backend="jax")
        assert proc.returncode == 0, proc.stderr[-3000:]
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["backend"] == "jax" and cfg["devices"] == [] and cfg["loss"] == "logits"
        runs[cfg["engine"]] = (history(out), json.loads((out / "final.json").read_text()))
    assert sorted(runs) == ["device", "fit"]  # auto picks the device engine under JAX
    (fit_rows, fit_final), (dev_rows, dev_final) = runs["fit"], runs["device"]
    assert [r["step"] for r in fit_rows] == [r["step"] for r in dev_rows] == ["6", "12"]
    for a, b in zip(fit_rows, dev_rows, strict=False):
        for key in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-6), key
    assert float(fit_rows[-1]["loss"]) < float(fit_rows[0]["loss"])  # it trained
    for key in ("test_top1", "test_top5", "test_top1_centre", "test_top5_centre", "best_val_accuracy", "steps"):
        assert fit_final[key] == pytest.approx(dev_final[key], abs=1e-9), key
