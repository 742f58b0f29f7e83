"""The device engine (alexnet_split.engine_device) under JAX on CPU: the batch contract with the NumPy
pipeline, its interval, validation and test against Keras, a saturated start, one compilation
per model structure, and kill -9 / resume of a run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import history

pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")


@pytest.mark.slow
@pytest.mark.parametrize("check", ["batches_equal_the_numpy_pipeline",
                                   "the_best_validation_weights_are_tested_not_the_last",
                                   "the_device_engine_divides_the_lr_on_a_plateau",
                                   "interval_equals_stepwise_updates",
                                   "validation_and_test_equal_predict", "a_saturated_start_has_a_loss_and_a_gradient",
                                   "one_compile_per_structure", "all_kernel_options_train_like_the_baseline",
                                   "cross_entropy_is_a_product_without_scatter",
                                   "refused_options_compile_without_them"])
def test_device_engine(check):
    """tests/jax_engine.py's checks, each in a fresh interpreter with KERAS_BACKEND=jax."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("jax_engine.py")), check],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and f"OK {check}" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_kill_9_and_resume_equals_an_uninterrupted_run_on_the_device_engine(tmp_path, data_root):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")

    def cmd(out):
        return [sys.executable, "-m", "alexnet_split.cli", "train", "--data", str(data_root), "--out",
                str(out), "--recipe", "quick", "--set", "epochs=null", "steps=15", "eval_every=5", "batch_size=64"]

    straight = tmp_path / "straight"
    proc = subprocess.run(cmd(straight) + ["--tensorboard", str(tmp_path / "tb")], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = tmp_path / "killed"
    child = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state = killed / "state.json"
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None:
        if state.is_file() and json.loads(state.read_text())["interval"] >= 1:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the run finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done = json.loads(state.read_text())
    assert 1 <= done["interval"] < 3 and not (killed / "final.json").exists()
    proc = subprocess.run(cmd(killed), capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {killed} after step {done['step']}" in proc.stderr

    def rows(run):
        return (run / "history.csv").read_text().splitlines()  # whole rows: the clock is in timing.csv

    assert rows(killed) == rows(straight) and len(rows(straight)) == 4  # header + 3 intervals of 5 steps
    assert rows(straight)[-1].startswith("15,1.5,")  # the resumed run crosses an epoch's reshuffle too
    a, b = (json.loads((r / "final.json").read_text()) for r in (straight, killed))
    for key in ("test_top1", "test_top5", "best_val_accuracy", "best_step", "steps", "test_top1_best_val",
                "test_top5_best_val", "best_val_step"):
        assert a[key] == b[key], key
    # the last commit writes logs only (final.json follows at once): no checkpoint, nor its folder, is left
    assert json.loads((straight / "state.json").read_text())["checkpoint"] is None
    assert not (straight / "ckpt").exists() and not (killed / "ckpt").exists()
    assert {p.parent.name for p in (tmp_path / "tb").rglob("events.out.tfevents.*")} == {"train", "validation"}
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["engine"] == "device" and cfg["steps_per_epoch"] == 10 and cfg["loss"] == "logits"  # 680 // 64
    first, *_, last = history(straight)
    for key in ("loss", "val_loss"):  # it really trained, so equal histories are not two idle runs
        assert float(last[key]) < float(first[key]), key
