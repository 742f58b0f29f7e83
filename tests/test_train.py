"""The runner: run-folder contents, kill -9 and resume, NaN stop, the plateau schedule in a real run."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import history

from alexnet_split import data

QUICK = ["--recipe", "quick", "--set", "epochs=4", "--deterministic"]


def train_cmd(data_root, out, *extra):
    return [sys.executable, "-m", "alexnet_split.cli", "train", "--data", str(data_root), "--out", str(out), *QUICK,
            *extra]


def env():
    return dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


def without_timing(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
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
    # the best-validation weights so far lie beside the checkpoint, for the resumed run to test
    assert done["best_weights_step"] <= done["step"] and (killed / done["best_weights"]).is_file()

    proc = subprocess.run(train_cmd(data_root, killed), capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {killed} after step {done['step']} (interval {done['interval']} of 4)" in proc.stderr

    assert [float(r["epoch"]) for r in history(killed)] == [1, 2, 3, 4]  # none lost, none repeated
    assert [int(r["step"]) for r in history(killed)] == [21, 42, 63, 84]  # 680 // 32 full batches per epoch
    assert without_timing(history(killed)) == without_timing(history(straight))
    a, b = (json.loads((r / "final.json").read_text()) for r in (straight, killed))
    # the best-validation weights were kept across the kill (beside the checkpoint) and tested the same
    for key in ("test_top1", "test_top5", "best_val_accuracy", "best_step", "steps", "lr_drop_steps",
                "test_top1_best_val", "test_top5_best_val", "best_val_step"):
        assert a[key] == b[key], key
    assert a["test_top1"] > 0.3  # the colours are learnable: the run really trained
    assert b["best_val_step"] == b["best_step"]
    # the last commit writes logs only (final.json follows at once): no checkpoint, nor its folder, is left
    assert json.loads((killed / "state.json").read_text())["checkpoint"] is None
    assert not (killed / "ckpt").exists() and not (straight / "ckpt").exists()


def tensorboard_scalars(log_dir) -> dict:
    """{"train" | "validation": the scalar tags} written under `log_dir` (TensorFlow's reader)."""
    import tensorflow as tf

    tags = {}
    for sub in ("train", "validation"):
        for f in (log_dir / sub).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                tags.setdefault(sub, set()).update(v.tag for v in event.summary.value if v.tag.startswith("epoch_"))
    return tags


@pytest.mark.parametrize("recipe, resize", [("seed_cpu", "squash"), ("paper_cpu", "crop")])
def test_the_runner_decodes_with_the_recipes_resize(data_root, monkeypatch, recipe, resize):
    """seed recipes: tflearn's squash (the images the seed tutorial trained on); paper recipes: the crop."""
    from alexnet_split import config, train

    calls, load = [], data.load
    monkeypatch.setattr(data, "load", lambda *a, **kw: calls.append(kw) or load(*a, **kw))
    r = config.get_recipe(recipe, image_size=32, input_size=24)
    split = train._load_split(data_root, r, 24, 0, None)
    assert calls == [{"size": 32, "resize": resize}] and split.train_x.shape[1:] == (32, 32, 3)


@pytest.mark.slow
def test_run_folder_contents(tmp_path, data_root):
    out = tmp_path / "run"
    proc = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "--tensorboard", tmp_path / "tb",
                                    "--save-model"),
                          capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layout"] == "paper" and cfg["mode"] == "towers" and cfg["recipe"]["name"] == "quick"
    assert cfg["devices"] == ["/CPU:0", "/CPU:1"] and cfg["backend"] == "tensorflow"
    assert {"tensorflow", "keras", "numpy", "python"} <= set(cfg["versions"]) and cfg["git_commit"]
    assert cfg["split_sizes"] == {"train": 680, "val": 340, "test": 340}
    assert cfg["recipe"]["resize"] == "crop" and cfg["resize"] == data.RESIZES["crop"].format(size=76)
    final = json.loads((out / "final.json").read_text())
    assert {"test_top1", "test_top5", "best_val_accuracy", "best_step", "steps", "steps_to_leave_chance",
            "lr_drop_steps", "train_seconds", "train_images_per_second"} <= set(final)
    assert list(history(out)[0]) == ["step", "epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
                                     "val_top5", "lr"]  # nothing from the clock: the same run, the same bytes
    timing = (out / "timing.csv").read_text().splitlines()
    assert timing[0] == "step,seconds" and len(timing) == len(history(out)) + 1
    assert cfg["init"]["weights"] == "normal(0, 0.01)" and cfg["init"]["biases"]["conv2"] == 1.0
    assert cfg["engine"] == "fit"
    assert tensorboard_scalars(tmp_path / "tb") == {
        "train": {"epoch_loss", "epoch_accuracy", "epoch_top5", "epoch_learning_rate"},
        "validation": {"epoch_loss", "epoch_accuracy", "epoch_top5"}}
    # conv1's kernels, for a study of the paper's Figure 3 without checkpoints: float16, ~70 KB at 96 kernels
    with np.load(out / "conv1.npz") as z:
        assert sorted(z) == ["t0_conv1", "t1_conv1"]
        assert z["t1_conv1"].shape == (11, 11, 3, 48) and z["t1_conv1"].dtype == np.float16
    assert (out / "conv1.npz").stat().st_size < 80_000
    # --save-model: the trained network with its softmax output, as users call it
    model = keras.models.load_model(out / "model.keras")
    probs = model.predict(np.full((2, 67, 67, 3), 128, np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.layers[-1].name == "softmax" and cfg["loss"] == "logits"
    assert final["test_crops"] == 1 and {"test_top1_centre", "test_top5_centre"} <= set(final)
    # a finished run is not trained again, and another run's folder is refused
    assert f"wrote {out}/final.json, " in proc.stdout and f"summary: alexnet-split report {out}" in proc.stdout
    again = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1"), capture_output=True, text=True, env=env(),
                           timeout=900)
    assert again.returncode == 0 and "resuming" not in again.stderr
    # ... unless asked for another recipe: said, not trained, not a success
    changed = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "bias_fill=30"), capture_output=True,
                             text=True, env=env(), timeout=900)
    assert changed.returncode == 2 and "recipe differs from this one (bias_fill None -> 30)" in changed.stderr
    other = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "--mode", "merged"), capture_output=True,
                           text=True, env=env(), timeout=900)
    assert other.returncode == 2 and "holds a different run" in other.stderr


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tmp_path, data_root):
    out = tmp_path / "nan"
    proc = subprocess.run(train_cmd(data_root, out, "--set", "epochs=1", "learning_rate=1e12", "optimizer=\"sgd\""),
                          capture_output=True, text=True, env=env(), timeout=900)
    assert proc.returncode == 2
    assert "the training loss became nan at step" in proc.stderr
    assert "Lower the learning rate" in proc.stderr
    assert not (out / "final.json").exists()


@pytest.mark.slow
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


# --- quick checks of the runner's steps, without training ----------------------------------


def test_test_metrics_come_from_the_test_split_with_the_recipes_crops(monkeypatch):
    """Images whose pixels say their own number: the split puts the stratified test images in
    test_x (and centre crops of the val images in val_x), and the final record asks the engine's
    predict for the centre and for the recipe's 10 crops of exactly those images."""
    from alexnet_split import config, data, train

    n = data.NUM_IMAGES
    images = np.zeros((n, 10, 10, 3), np.uint8)
    images[..., 0], images[..., 1] = (np.arange(n) // 256)[:, None, None], (np.arange(n) % 256)[:, None, None]
    labels = np.arange(n) // 80
    monkeypatch.setattr(data, "load", lambda root, size, **kw: data.Flowers17(images, labels, np.arange(1, n + 1),
                                                                               "fake"))

    def ids(x):
        return (x[:, 0, 0, 0].astype(int) * 256 + x[:, 0, 0, 1]).tolist()

    split = train._load_split(None, config.get_recipe("quick"), 8, 0, None)
    expected = data.stratified_split(labels, 0)
    assert ids(split.test_x) == expected["test"].tolist() and split.test_x.shape[1:] == (10, 10, 3)
    assert ids(split.val_x) == expected["val"].tolist() and split.val_x.shape[1:] == (8, 8, 3)
    assert ids(split.train_x) == expected["train"].tolist()
    calls = []

    def predict(x, ten):  # right on the test images, wrong on any other
        calls.append((ids(x), ten))
        right = [i in set(expected["test"].tolist()) for i in ids(x)]
        return np.eye(17)[np.where(right, labels[ids(x)], (labels[ids(x)] + 1) % 17)]

    # the test images in reverse: both splits list their images by class, so val_y == test_y, and
    # scoring the test predictions against the validation labels would go unseen
    split = split._replace(test_x=split.test_x[::-1], test_y=split.test_y[::-1])
    final = train._test(predict, split, ten_crop=True)
    test_ids = expected["test"].tolist()[::-1]
    assert calls == [(test_ids, False), (test_ids, True)]
    assert final["test_top1"] == final["test_top1_centre"] == 1.0 and final["test_crops"] == 10


def test_top5_is_top5_in_both_final_test_figures(tmp_path):
    """Predictions that rank the true class third: top-1 is 0 and top-5 is 1, for the last weights'
    figures (recipe protocol and centre) and for the best-validation weights'."""
    from alexnet_split import config, train

    labels = np.arange(34) % 17
    probs = np.full((34, 17), 0.01)
    probs[np.arange(34), (labels + 1) % 17], probs[np.arange(34), (labels + 2) % 17] = 0.5, 0.3
    probs[np.arange(34), labels] = 0.1
    split = train.Split(None, None, None, None, np.zeros((34, 4, 4, 3), np.uint8), labels, "", "", {})
    final = train._test(lambda x, ten, weights=None: probs, split, ten_crop=True)
    assert [final[k] for k in ("test_top1", "test_top5", "test_top1_centre", "test_top5_centre")] == [0, 1, 0, 1]
    run = train.Run(tmp_path, train._new_state(config.get_recipe("quick")), 1, 1, 1)
    run.best_weights, run.best_weights_step = [np.zeros(1)], 7
    best = train._test_best_val(lambda x, ten, weights=None: probs, split, True, run)
    assert best == {"test_top1_best_val": 0, "test_top5_best_val": 1, "best_val_step": 7}


def test_the_fit_engines_test_prediction_averages_the_ten_crops(tmp_path):
    """The fit engine's predict, checked against the 10 views cut by hand from random images."""
    from alexnet_split import config, engine_fit, train

    recipe = config.get_recipe("quick", ten_crop=True, batch_size=2, init="fan_in")  # He init: decisive logits
    model = train.new_model("paper", "towers", 67, None, recipe)
    images = np.random.default_rng(0).integers(0, 256, (3, 76, 76, 3), dtype=np.uint8)
    split = train.Split(images, np.arange(3), images[:, 4:71, 4:71], np.arange(3), images, np.arange(3), "", "", {})
    done = train.Run(tmp_path, {**train._new_state(recipe), "interval": 2}, 2, 21, 21)
    _, predict = engine_fit.run(model, done, split, recipe, 67, 0, 0)
    probs = keras.Model(model.input, keras.layers.Softmax()(model.output))
    views = [images[:, y:y + 67, x:x + 67] for y, x in [(4, 4), (0, 0), (0, 9), (9, 0), (9, 9)]]
    views += [v[:, :, ::-1] for v in views]
    by_hand = np.mean([probs.predict(v.astype(np.float32), verbose=0) for v in views], axis=0)
    np.testing.assert_allclose(predict(images, True), by_hand, atol=1e-5)
    np.testing.assert_allclose(predict(images, False), probs.predict(views[0].astype(np.float32), verbose=0),
                               atol=1e-5)


def test_the_best_validation_weights_are_tested_not_the_last(tmp_path, monkeypatch):
    """The fit engine keeps the weights of the interval with the best validation accuracy (here the
    second of three, by forcing the recorded accuracies), and its predict tests exactly those."""
    from alexnet_split import config, engine_fit, train

    recipe = config.get_recipe("quick", batch_size=4, init="fan_in", learning_rate=1e-3)
    model = train.new_model("paper", "towers", 67, None, recipe)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 76, 76, 3), dtype=np.uint8)
    labels = np.arange(24) % 17
    split = train.Split(images, labels, images[:, 4:71, 4:71], labels, images, labels, "", "", {})
    run = train.Run(tmp_path, train._new_state(recipe), 3, 2, 6)
    forced, seen = iter([0.5, 0.9, 0.3]), []
    record = run.record

    def record_forcing_val(metrics, lr, seconds):
        seen.append(engine_fit.weight_values(model))  # the weights this interval validated
        return record({**metrics, "val_accuracy": next(forced)}, lr, seconds)

    monkeypatch.setattr(run, "record", record_forcing_val)
    _, predict = engine_fit.run(model, run, split, recipe, 67, 0, 0)
    assert run.best_weights_step == run.schedule.best_step == 4  # interval 2 of 2 steps each
    for kept, at_best in zip(run.best_weights, seen[1], strict=True):
        np.testing.assert_array_equal(kept, at_best)
    last = predict(images, False)
    best = predict(images, False, run.best_weights)
    assert not np.allclose(last, best, atol=1e-4)  # the two sets of weights predict differently
    for v, value in zip(model.trainable_variables + model.non_trainable_variables, seen[1], strict=True):
        v.assign(value)
    by_hand = keras.Model(model.input, keras.layers.Softmax()(model.output))
    np.testing.assert_allclose(best, by_hand.predict(images[:, 4:71, 4:71].astype(np.float32), verbose=0),
                               atol=1e-5)
    final = train._test_best_val(predict, split, False, run)
    assert final["best_val_step"] == 4
    assert final["test_top1_best_val"] == data_top1(best, labels)


def test_the_best_weights_are_saved_beside_a_checkpoint_and_read_back_on_resume(tmp_path):
    """A commit writes the kept weights once (ckpt/best_step_N.npz) and state.json names them; a
    run resumed from that state.json holds the same arrays; the last commit removes them and ckpt/."""
    from alexnet_split import config, train

    recipe = config.get_recipe("quick")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    run = train.Run(tmp_path, train._new_state(recipe), 3, 5, 5)
    metrics = {"loss": 1.0, "accuracy": 0.5, "top5": 0.9, "val_loss": 1.0, "val_top5": 0.9}
    weights = [np.full((2, 3), 7.0, np.float32), np.arange(4)]
    run.record({**metrics, "val_accuracy": 0.5}, 0.01, 1.0)
    run.keep_if_best(lambda: weights)
    run.record({**metrics, "val_accuracy": 0.4}, 0.01, 1.0)
    run.keep_if_best(lambda: [np.zeros(1)])  # not better: not kept
    run.commit(model)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["best_weights"] == "ckpt/best_step_000005.npz" and state["best_weights_step"] == 5
    resumed = train.Run(tmp_path, state, 3, 5, 5)
    assert resumed.best_weights_step == 5
    for a, b in zip(resumed.best_weights, weights, strict=True):
        np.testing.assert_array_equal(a, b)
    written = (tmp_path / state["best_weights"]).stat().st_mtime_ns
    run.commit(model)  # unchanged best: not written again, and the file stays
    assert (tmp_path / state["best_weights"]).stat().st_mtime_ns == written
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best_step_000005.npz", "step_000010.keras"]
    run.commit(model, checkpoint=False)
    assert not (tmp_path / "ckpt").exists()


def data_top1(probs, labels):
    from alexnet_split import pipeline

    return pipeline.topk_accuracy(probs, labels, 1)


def test_a_saturated_start_has_a_loss_and_a_gradient_on_tensorflow():
    """Biases of 30 saturate the softmax; the runner's loss (from logits) is far above the clipped
    loss's ceiling -ln(1e-7) = 16.12 and fc8 still gets a gradient.

    The loss sees a plain copy of the model's output: TensorFlow's backend alone finds the logits
    behind a softmax output (the tensor's hidden ``_keras_logits``, or its Softmax op), so a
    softmax model with the probability loss would pass here and still be clipped under JAX."""
    import tensorflow as tf

    from alexnet_split import config, train

    model = train.new_model("paper", "towers", 67, None, config.get_recipe("quick", bias_fill=30.0))
    x = np.random.default_rng(0).uniform(0, 255, (8, 67, 67, 3)).astype(np.float32)
    y = keras.utils.to_categorical(np.arange(8), 17)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, tf.identity(model(x, training=True)), training=True)
    fc8 = model.get_layer("fc8").dense
    grads = tape.gradient(loss, [fc8.kernel.value, fc8.bias.value])
    assert float(loss) > 16.2 and all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_a_run_still_at_chance_after_chance_patience_ends_as_dead(tmp_path):
    from alexnet_split import config, train

    recipe = config.get_recipe("paper", steps=6_000, chance_patience=100)
    run = train.Run(tmp_path, train._new_state(recipe), 120, 50, 5)
    chance = {"loss": 2.83, "accuracy": 0.06, "top5": 0.3, "val_loss": 2.83, "val_accuracy": 1 / 17, "val_top5": 0.3}
    assert [run.record(chance, 0.01, 1.0) for _ in range(2)] == [None, "stop"]
    assert run.done and run.state["stopped"] == "dead: validation never above 2x chance in 100 steps"
    assert train._new_state(config.get_recipe("paper"))["schedule"]["give_up"] == 5_000


# --- what a user meets: Ctrl-C, errors before side effects, a finished run asked for another recipe --

SHORT = ["--recipe", "quick", "--set", "epochs=null", "steps=200", "eval_every=1", "batch_size=16"]


@pytest.mark.slow
def test_ctrl_c_says_where_the_run_resumes_and_exits_130(tmp_path, data_root):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "alexnet_split.cli", "train", "--data", str(data_root), "--out", str(out), *SHORT]
    # SIGINT as a terminal sends it (a shell's background job would start with it ignored); the
    # environment as the package leaves it (TensorFlow quiet), so stderr holds only what the CLI says
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, KERAS_BACKEND="tensorflow"),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None and not (out / "state.json").is_file():
        time.sleep(0.05)
    time.sleep(0.3)  # inside a later interval
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    state = json.loads((out / "state.json").read_text())
    assert child.returncode == 130, err[-3000:]
    assert err.strip() == f"alexnet-split train: {out}: interrupted at step {state['step']}; run the same command " \
                          "to resume", err[-3000:]
    assert state["step"] >= 1 and (out / state["checkpoint"]).is_file() and not (out / "final.json").exists()


def test_errors_come_before_the_run_folder_is_made(tmp_path, data_root):
    from alexnet_split import train

    out = tmp_path / "never"
    with pytest.raises(ValueError, match="batch_size=5000 is larger than the 680 training images"):
        train.train(out, recipe="quick", data_root=data_root, overrides={"batch_size": 5000})
    not_data = tmp_path / "notes.txt"
    not_data.write_text("not flowers")
    with pytest.raises(RuntimeError, match="notes.txt: not a Flowers 17 source"):
        train.train(out, recipe="quick", data_root=not_data)
    with pytest.raises(ValueError, match="learning_rate must be a number > 0, got 'fast'"):
        train.train(out, recipe="quick", data_root=data_root, overrides={"learning_rate": "fast"})
    with pytest.raises(ValueError, match=r"run folder .*notes.txt is a file; give a folder path"):
        train.train(not_data, recipe="quick", data_root=data_root)
    assert not out.exists()


def fake_finished_run(out, recipe: dict, final=None):
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"layout": "paper", "mode": "towers", "seed": 0, "recipe": recipe,
                                                 "engine": "fit"}))
    (out / "final.json").write_text(json.dumps(final or {"test_top1": 0.5}))


def test_a_finished_run_is_its_result_only_for_the_same_recipe(tmp_path):
    from alexnet_split import config, train

    quick = config.get_recipe("quick").to_dict()
    fake_finished_run(tmp_path / "quick", quick)
    assert train.train(tmp_path / "quick", recipe="quick", engine="fit") == {"test_top1": 0.5}
    with pytest.raises(ValueError, match=r"holds a finished run whose recipe differs from this one \(bias_fill None "
                                         r"-> 30; epochs 2 -> 3\); it is not trained again: choose another --out"):
        train.train(tmp_path / "quick", recipe="quick", overrides={"epochs": 3, "bias_fill": 30}, engine="fit")
    # a committed paper run predates chance_patience (paper: 5,000): still the paper recipe's result
    old = {k: v for k, v in config.get_recipe("paper").to_dict().items() if k != "chance_patience"}
    fake_finished_run(tmp_path / "paper", old)
    assert train.train(tmp_path / "paper", recipe="paper", engine="fit") == {"test_top1": 0.5}
