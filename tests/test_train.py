"""The runner: run-folder contents, kill -9 and resume, NaN stop, the plateau schedule in a real run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import history

QUICK = ["--recipe", "quick", "--set", "epochs=4", "--deterministic"]


def train_cmd(data_root, out, *extra):
    return [sys.executable, "-m", "alexnet_split.cli", "train", "--data", str(data_root), "--out", str(out), *QUICK,
            *extra]


def env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


def without_timing(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_kill_9_and_resume_equals_an_uninterrupted_run(tmp_path, data_root):
    straight = tmp_path / "straight"
    proc = subprocess.run(train_cmd(data_root, straight), capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    child = subprocess.Popen(train_cmd(data_root, killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=env())
    deadline = time.time() + 600
    state = killed / "state.json"
    while time.time() < deadline and child.poll() is None:
        if state.is_file() and json.loads(state.read_text())["interval"] >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well into epoch 3
    assert child.poll() is None, "the run finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done = json.loads(state.read_text())
    assert 2 <= done["interval"] < 4 and not (killed / "final.json").exists()
    assert len(history(killed)) == done["interval"]

    proc = subprocess.run(train_cmd(data_root, killed), capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {killed} after step {done['step']} (interval {done['interval']} of 4)" in proc.stderr

    assert [float(r["epoch"]) for r in history(killed)] == [1, 2, 3, 4]  # none lost, none repeated
    assert [int(r["step"]) for r in history(killed)] == [22, 44, 66, 88]  # 680 images, batch 32
    assert without_timing(history(killed)) == without_timing(history(straight))
    a, b = (json.loads((r / "final.json").read_text()) for r in (straight, killed))
    for key in ("test_top1", "test_top5", "best_val_accuracy", "best_step", "steps", "lr_drop_steps"):
        assert a[key] == b[key], key
    assert a["test_top1"] > 0.3  # the colours are learnable: the run really trained
    assert sorted(p.name for p in (killed / "ckpt").iterdir()) == ["step_000088.keras"]


def tensorboard_scalars(log_dir) -> dict:
    """{"train" | "validation": the scalar tags} written under `log_dir` (TensorFlow's reader)."""
    import tensorflow as tf

    tags = {}
    for sub in ("train", "validation"):
        for f in (log_dir / sub).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                tags.setdefault(sub, set()).update(v.tag for v in event.summary.value if v.tag.startswith("epoch_"))
    return tags


def test_run_folder_contents(tmp_path, data_root):
    out = tmp_path / "run"
    proc = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "--tensorboard", tmp_path / "tb"),
                          capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layout"] == "paper" and cfg["mode"] == "towers" and cfg["recipe"]["name"] == "quick"
    assert cfg["devices"] == ["/CPU:0", "/CPU:1"] and cfg["backend"] == "tensorflow"
    assert {"tensorflow", "keras", "numpy", "python"} <= set(cfg["versions"]) and cfg["git_commit"]
    assert cfg["split_sizes"] == {"train": 680, "val": 340, "test": 340}
    final = json.loads((out / "final.json").read_text())
    assert {"test_top1", "test_top5", "best_val_accuracy", "best_step", "steps", "steps_to_leave_chance",
            "lr_drop_steps", "train_seconds", "train_images_per_second"} <= set(final)
    assert list(history(out)[0]) == ["step", "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
                                     "val_top5", "lr", "seconds"]
    assert cfg["init"]["kernels"] == "normal(0, 0.01)" and cfg["init"]["biases"]["conv2"] == 1.0
    assert cfg["engine"] == "fit"
    assert tensorboard_scalars(tmp_path / "tb") == {
        "train": {"epoch_loss", "epoch_accuracy", "epoch_top5", "epoch_learning_rate"},
        "validation": {"epoch_loss", "epoch_accuracy", "epoch_top5"}}
    # conv1's kernels, for a study of the paper's Figure 3 without checkpoints: float16, ~70 KB at 96 kernels
    with np.load(out / "conv1.npz") as z:
        assert sorted(z) == ["t0_conv1", "t1_conv1"]
        assert z["t1_conv1"].shape == (11, 11, 3, 48) and z["t1_conv1"].dtype == np.float16
    assert (out / "conv1.npz").stat().st_size < 80_000
    # a finished run is not trained again, and another run's folder is refused
    again = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1"), capture_output=True, text=True, env=env(),
                           timeout=900)
    assert again.returncode == 0 and "resuming" not in again.stderr
    other = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "--mode", "merged"), capture_output=True,
                           text=True, env=env(), timeout=900)
    assert other.returncode == 2 and "holds a different run" in other.stderr


def test_nan_loss_stops_with_a_clear_message(tmp_path, data_root):
    out = tmp_path / "nan"
    proc = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "learning_rate=1e12", "optimizer=\"sgd\""),
                          capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 2
    assert "the training loss became nan at step" in proc.stderr
    assert "Lower the learning rate" in proc.stderr
    assert not (out / "final.json").exists()


def test_runner_drops_the_lr_on_a_plateau_and_then_stops(tmp_path, data_root):
    """The schedule's branches in a real run: the colour-coded data leave chance at once, reach a
    plateau, the lr drops once, and the next plateau ends the run before its step cap."""
    out, patience = tmp_path / "plateau", 20
    proc = subprocess.run(train_cmd(data_root, out, "--set", "epochs=null", "steps=400", "eval_every=10",
                                    f"lr_drop_patience={patience}", "max_lr_drops=1", "learning_rate=0.001"),
                          capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    rows = history(out)
    assert final["steps_to_leave_chance"] is not None and len(final["lr_drop_steps"]) == 1
    drop = final["lr_drop_steps"][0]
    assert final["steps_to_leave_chance"] < drop < final["steps"] < 400
    assert final["stopped_by"] == "plateau after 1 lr drops"
    lrs = {int(r["step"]): float(r["lr"]) for r in rows}  # the lr each interval trained with
    assert all(lr == pytest.approx(1e-3) for s, lr in lrs.items() if s <= drop)
    assert all(lr == pytest.approx(1e-4) for s, lr in lrs.items() if s > drop)
    assert int(rows[-1]["step"]) == final["steps"] and final["steps"] - drop >= patience
