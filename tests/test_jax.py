"""The same model builds and trains under KERAS_BACKEND=jax (one device), and agrees with TF."""

import numpy as np
import pytest
from conftest import DEVICES, cli, run_check

import alexnet_split as A

pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")

# Every test here starts a process under KERAS_BACKEND=jax.
pytestmark = pytest.mark.slow
JAX = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def test_jax_builds_trains_and_warns_about_devices():
    proc = run_check("jax_backend", "builds_trains_and_warns_about_devices", backend="jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOSS")]
    changed, total = line.split("CHANGED")[1].split("OF")
    assert int(changed) == int(total) > 0  # the step updated every weight


def test_tensorflow_model_loads_under_jax_with_equal_predictions(tmp_path):
    model = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), devices=DEVICES)
    x = np.random.default_rng(1).uniform(0, 255, (3, 67, 67, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    proc = run_check("jax_backend", "loads_a_tensorflow_model", tmp_path, backend="jax")
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
        proc = cli("train", "--recipe", "quick", "--set", "epochs=null", "steps=12", "eval_every=6",
                   "batch_size=64", "--data", data_root, "--out", out, "--engine", engine, env=JAX)
        assert proc.returncode == 0, proc.stderr[-3000:]
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["backend"] == "jax" and cfg["devices"] == [] and cfg["loss"] == "logits"
        runs[cfg["engine"]] = (history(out), json.loads((out / "final.json").read_text()))
    assert sorted(runs) == ["device", "fit"]  # auto picks the device engine under JAX
    (fit_rows, fit_final), (dev_rows, dev_final) = runs["fit"], runs["device"]
    assert [r["step"] for r in fit_rows] == [r["step"] for r in dev_rows] == ["6", "12"]
    for a, b in zip(fit_rows, dev_rows, strict=True):
        for key in ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-6), key
    assert float(fit_rows[-1]["loss"]) < float(fit_rows[0]["loss"])  # it trained
    for key in ("test_top1", "test_top5", "test_top1_centre", "test_top5_centre", "best_val_accuracy", "steps",
                "test_top1_best_val", "test_top5_best_val", "best_val_step"):
        assert fit_final[key] == pytest.approx(dev_final[key], abs=1e-9), key
