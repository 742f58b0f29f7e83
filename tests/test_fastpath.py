"""The device engine (alexnet_split.fastpath) under JAX on CPU: its batches, its determinism,
one compilation per model structure, and kill -9 / resume of a run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import history, run_python

pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")


def test_batches_are_crops_flips_and_one_shift_per_image():
    """Pixels encode (image, row, column), so each crop says where it came from."""
    code = """
import numpy as np, keras, alexnet_split as A
from alexnet_split.fastpath import DeviceLoop
n, size, c, b = 40, 20, 12, 8
img = np.zeros((n, size, size, 3), np.uint8)
img[..., 0] = np.arange(n)[:, None, None] * 5
img[..., 1] = np.arange(size)[None, :, None] * 10
img[..., 2] = np.arange(size)[None, None, :] * 10 + 5
labels = np.arange(n) % 17
m = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3))
m.compile(A.PaperSGD(), "categorical_crossentropy")
def loop(pca=0.0, augment=True, seed=0):
    return DeviceLoop(m, img, labels, img[:4, :c, :c], labels[:4], b, c, seed, augment=augment, pca_sigma=pca)
plain, lit = loop(), loop(pca=0.1)
args = lambda l: (l.data_key, l.aug_key, l.images, l.labels, l.pca)
ids, offsets, flips = [], set(), 0
for step in range(plain.steps_per_epoch):  # one data epoch: 5 steps of 8 = every image once
    x, y = (np.asarray(a) for a in plain.batch(step, *args(plain)))
    for k in range(b):
        i = int(round(x[k, 0, 0, 0] / 5)); ids.append(i)
        assert y[k] == labels[i]
        row0, cols = x[k, 0, 0, 1] / 10, (x[k, 0, :, 2] - 5) / 10
        flipped = cols[0] > cols[-1]; flips += flipped
        col0 = cols.min()
        expect = img[i, int(row0):int(row0) + c, int(col0):int(col0) + c]
        np.testing.assert_array_equal(x[k], expect[:, ::-1] if flipped else expect)
        offsets.add((int(row0), int(col0)))
    lx, _ = (np.asarray(a) for a in lit.batch(step, *args(lit)))
    shift = lx - x
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1], shift.shape), atol=1e-3)
    assert np.abs(shift).max() > 0
assert sorted(ids) == list(range(n)), ids  # a permutation per epoch
assert 10 < flips < 30 and len(offsets) > 20
x5 = np.asarray(plain.batch(5, *args(plain))[0])  # the next epoch draws another order
assert not np.array_equal(x5, np.asarray(plain.batch(0, *args(plain))[0]))
again = loop()
np.testing.assert_array_equal(np.asarray(again.batch(3, *args(again))[0]),
                              np.asarray(plain.batch(3, *args(plain))[0]))  # a function of (seed, step)
other = loop(seed=1)
assert not np.array_equal(np.asarray(other.batch(3, *args(other))[0]), np.asarray(plain.batch(3, *args(plain))[0]))
centre = loop(augment=False)
xc = np.asarray(centre.batch(0, *args(centre))[0])
assert {(int(v[0, 0, 1] / 10), int((v[0, 0, 2] - 5) / 10)) for v in xc} == {(4, 4)}
# same structure, same settings: the compiled interval is shared (one compile per mode)
m2 = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3))
m2.compile(A.PaperSGD(), "categorical_crossentropy")
shared = DeviceLoop(m2, img, labels, img[:4, :c, :c], labels[:4], b, c, 5)
assert shared._train_fn is plain._train_fn
# ... whatever the init: the initializers are not part of the traced code
m3 = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), init="fan_in")
m3.compile(A.PaperSGD(), "categorical_crossentropy")
assert DeviceLoop(m3, img, labels, img[:4, :c, :c], labels[:4], b, c, 5)._train_fn is plain._train_fn
print("OK")
"""
    proc = run_python(code, backend="jax")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_an_interval_trains_like_stepwise_stateless_updates():
    """The scanned interval equals the same steps applied one by one (float32, same batches)."""
    code = """
import numpy as np, jax, keras, alexnet_split as A
from alexnet_split.fastpath import DeviceLoop
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (24, 72, 72, 3), dtype=np.uint8)
labels = np.arange(24) % 17
keras.utils.set_random_seed(0)
m = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3))
m.compile(A.PaperSGD(0.01, l2=0.5), "categorical_crossentropy")
loop = DeviceLoop(m, img, labels, img[:6, :67, :67], labels[:6], 8, 67, 0, pca_sigma=0.1, interval_steps=3)
s0 = loop.state()
s3, means, losses = loop.train_interval(s0, 0)
# by hand: the same batches through stateless_call + stateless_apply, one step at a time
tr, nt, opt = s0
for step in range(3):
    x, y = loop.batch(step, loop.data_key, loop.aug_key, loop.images, loop.labels, loop.pca)
    def loss_fn(tr, nt):
        p, nt = m.stateless_call(tr, nt, x, training=True)
        return keras.ops.mean(keras.losses.categorical_crossentropy(jax.nn.one_hot(y, 17), p)), nt
    (loss, nt), g = jax.value_and_grad(loss_fn, has_aux=True)(tr, nt)
    np.testing.assert_allclose(float(loss), float(losses[step]), rtol=1e-4)
    tr, opt = m.optimizer.stateless_apply(opt, g, tr)
worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() + 1e-12))
            for a, b in zip(s3[0], tr))
moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(s3[0], s0[0]))
print("WORST", worst, "MOVED", moved)
assert worst < 1e-4 and moved > 1e-4
assert int(s3[2][0]) == 3  # the optimizer's iteration counter
val = loop.evaluate(s3)
assert set(val) == {"val_loss", "val_accuracy", "val_top5"} and 0 <= val["val_accuracy"] <= 1
# the on-device test prediction equals Keras predict on pipeline.crops (10 crops; 7 images pad to 12)
loop.write_back(s3)
for ten in (False, True):
    np.testing.assert_allclose(loop.predict(loop.state(), img[:7], ten),
                               A.pipeline.predict_crops(m, img[:7], 67, ten=ten), atol=1e-5)
print("OK")
"""
    proc = run_python(code, backend="jax")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


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
        return [line.rsplit(",", 1)[0] for line in (run / "history.csv").read_text().splitlines()]  # no seconds

    assert rows(killed) == rows(straight) and len(rows(straight)) == 4  # header + 3 intervals of 5 steps
    assert rows(straight)[-1].startswith("15,1.5,")  # the resumed run crosses an epoch's reshuffle too
    a, b = (json.loads((r / "final.json").read_text()) for r in (straight, killed))
    for key in ("test_top1", "test_top5", "best_val_accuracy", "best_step", "steps"):
        assert a[key] == b[key], key
    # the last commit writes logs only (final.json follows at once): no checkpoint is left behind
    assert json.loads((straight / "state.json").read_text())["checkpoint"] is None
    assert not list((straight / "ckpt").glob("*.keras"))
    assert {p.parent.name for p in (tmp_path / "tb").rglob("events.out.tfevents.*")} == {"train", "validation"}
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["engine"] == "device" and cfg["steps_per_epoch"] == 10  # 680 // 64: full batches only
    first, *_, last = history(straight)
    for key in ("loss", "val_loss"):  # it really trained, so equal histories are not two idle runs
        assert float(last[key]) < float(first[key]), key
