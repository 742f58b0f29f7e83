"""The benchmark command runs and reports; its FLOP and byte counts match independent counts."""

import subprocess
import sys

import pytest

from alexnet_split import spec


def test_training_flops_against_an_independent_count():
    fwd = 2 * (55 * 55 * 96 * 11 * 11 * 3 + 27 * 27 * 256 * 5 * 5 * 48 + 13 * 13 * 384 * 3 * 3 * 256
               + 13 * 13 * 384 * 3 * 3 * 192 + 13 * 13 * 256 * 3 * 3 * 192 + 9216 * 4096 + 4096 * 4096 + 4096 * 1000)
    conv1 = 2 * 55 * 55 * 96 * 11 * 11 * 3  # needs no input gradient
    assert spec.training_flops(spec.PAPER, "towers", num_classes=1000) == 3 * fwd - conv1


def test_cross_device_bytes_by_hand():
    rows = dict((name, (f, b)) for name, f, b in spec.cross_device_bytes(spec.PAPER, 2, batch=128))
    assert rows["conv2 -> conv3"] == (2 * 13 * 13 * 128 * 128 * 4,) * 2  # each tower's pooled conv2, both ways
    assert rows["conv5 -> fc6"] == (2 * 6 * 6 * 128 * 128 * 4,) * 2
    assert rows["fc7 -> fc8"] == (2048 * 128 * 4,) * 2  # tower 1 only: the classifier is on device 0
    assert rows["image -> conv1"] == (227 * 227 * 3 * 128 * 4, 0)


@pytest.mark.slow
def test_bench_runs_and_writes_its_tables(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alexnet_split.cli", "bench", "--quick", "--batches", "4",
                           "--input-size", "67", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("*-quick.md")).read_text()
    for variant in ("towers_2dev", "towers_1dev", "grouped", "merged", "half"):
        assert f"| float32 | 4 | {variant} |" in md and f"| mixed_bfloat16 | 4 | {variant} |" in md
    assert "towers on 2 devices / on 1 device = **" in md and "mixed_bfloat16 / float32 = **" in md
    assert "| conv2 -> conv3 |" in md and "Input pipeline" in md
    # the runner row: the placed towers trained end to end by Keras fit, against train_on_batch
    assert "engine `fit (NumPy pipeline)`" in md
    for precision in ("float32", "mixed_bfloat16"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {precision} | 4 | ") and "x** |" in line)
        runner, compute, ratio = (float(c.strip(" *x").replace(",", "")) for c in row.split("|")[3:6])
        # the ratio is printed to 2 decimals and the rates to 1: allow those roundings, nothing more
        assert runner > 0 and abs(ratio - runner / compute) <= 0.005 + 0.05 * (1 + runner / compute) / compute
    assert next(tmp_path.glob("*-quick.csv")).read_text().startswith("variant,precision,batch,train_img_s")


@pytest.mark.slow
def test_bench_runner_row_under_jax_uses_the_device_loop(tmp_path):
    import os

    import pytest

    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "alexnet_split.cli", "bench", "--quick", "--batches", "4",
                           "--input-size", "67", "--variants", "towers_1dev", "--precisions", "float32", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("*-quick.md")).read_text()
    assert "engine `device (jitted JAX loop)`" in md and "`towers_1dev` model" in md
