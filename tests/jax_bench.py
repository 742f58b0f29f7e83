"""Checks of the benchmark's JAX side (alexnet_split.bench_device, bench_runner.runner_table) that need
KERAS_BACKEND=jax; tests/test_bench.py runs each in a fresh interpreter: ``python tests/jax_bench.py CHECK``."""

import csv
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import alexnet_split  # noqa: E402, F401
from alexnet_split import bench, bench_device, bench_runner, config, engine_device, train  # noqa: E402

C = 67  # the smallest input the paper net accepts


def scanned_step_equals_the_runner_step():
    """The compute-only scan trains exactly the runner's step: on the runner's own first batch it
    gives the same loss and the same new weights (dropout included), so runner / scanned compares
    two timings of one computation."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (16, 72, 72, 3), dtype=np.uint8), np.arange(16) % 17
    keras.utils.set_random_seed(0)
    model = train.new_model("paper", "towers", C, None, config.get_recipe("paper", batch_size=4))
    loop = engine_device.DeviceLoop(model, images, labels, images[:4, :C, :C], labels[:4], 4, C, 0, pca_sigma=0.1,
                                    interval_steps=2)
    state = loop.state()
    runner_state, _, runner_losses = loop.train_interval(state, 0)
    scanned = bench_device.ScannedCompute(loop, 2, n_batches=2)
    scanned_state, scanned_losses = scanned(state)
    np.testing.assert_allclose(np.asarray(scanned_losses), np.asarray(runner_losses), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(scanned_state.trainable), jax.tree.leaves(runner_state.trainable), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    cost = scanned.cost_per_image()
    assert cost["flops"] > 0 and cost["bytes"] > 0 and cost["counted_steps"] == 1, cost


def runner_table_writes_its_rows():
    """A tiny runner table on the CPU: the towers row with both rates and a limit, the CSV with
    exactly the issue's columns, the ratio line."""
    with tempfile.TemporaryDirectory() as out:
        md = bench_runner.runner_table(precisions=("float32",), batch=4, out_dir=out, interval_steps=2, intervals=1,
                                       n_val=8, input_size=C, modes=("towers",), kernels=(), torch=False,
                                       command_buffer=False, log=lambda line: None)
        text = next(Path(out).glob("*-runner.csv")).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "variant,precision,batch,runner_img_s,scanned_compute_img_s,torch_img_s", text
    assert [r["variant"] for r in rows] == ["towers"], rows
    for r in rows:
        assert float(r["runner_img_s"]) > 0 and float(r["scanned_compute_img_s"]) > 0 and r["torch_img_s"] == "", r
    assert "- towers float32 batch 4: runner / scanned compute-only = **" in md, md
    assert "of the physical limit" in md and "| towers | float32 | 4 |" in md, md


def a_failed_child_is_a_row():
    """A child process that XLA aborts (an unknown flag) is a row that says so."""
    settings = dict(layout="paper", input_shape=(C, C, 3), interval_steps=1, intervals=1, n_val=4)
    row = bench_runner._flag_row(settings, "float32", 4, "--xla_no_such_flag_for_this_test=1", "bogus",
                                 bench.Deadline(300))
    assert row["variant"] == "towers+bogus" and "failed (exit" in row["note"] and "runner_img_s" not in row, row


CHECKS = {f.__name__: f for f in (scanned_step_equals_the_runner_step, runner_table_writes_its_rows,
                                  a_failed_child_is_a_row)}

if __name__ == "__main__":
    for name in sys.argv[1:]:
        CHECKS[name]()
        print("OK", name, flush=True)
