"""The benchmark command runs and reports; its FLOP and byte counts match independent counts."""

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet_split import bench, bench_runner, spec


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


# ---------------------------------------------------------------- the runner, side by side


def test_kernel_variants_are_baseline_each_alone_then_all():
    assert bench_runner.kernel_variants(["a", "b"]) == ["", "a", "b", "a,b"]
    assert bench_runner.kernel_variants(["a"]) == ["", "a"] and bench_runner.kernel_variants([]) == [""]
    assert [bench_runner.variant_name("towers", k) for k in bench_runner.kernel_variants(["a", "b"])] == [
        "towers", "towers+a", "towers+b", "towers+a+b"]


def test_runner_csv_has_exactly_the_issue_columns_empty_where_not_measured():
    rows = [{"variant": "towers", "precision": "mixed_bfloat16", "batch": 128, "runner_img_s": 2.0,
             "scanned_compute_img_s": 3.0, "flops": 1e9, "note": "x"},
            {"variant": "torchvision alexnet", "precision": "mixed_bfloat16", "batch": 128, "torch_img_s": 4.0},
            {"variant": "towers+xla_concurrent", "note": "failed"}]
    text = bench_runner.runner_csv(rows)
    assert text.splitlines()[0] == "variant,precision,batch,runner_img_s,scanned_compute_img_s,torch_img_s"
    got = list(csv.DictReader(io.StringIO(text)))
    assert got[0] == {"variant": "towers", "precision": "mixed_bfloat16", "batch": "128", "runner_img_s": "2.0",
                      "scanned_compute_img_s": "3.0", "torch_img_s": ""}
    assert got[1]["torch_img_s"] == "4.0" and got[1]["runner_img_s"] == got[1]["scanned_compute_img_s"] == ""
    assert got[2]["variant"] == "towers+xla_concurrent" and got[2]["runner_img_s"] == ""


def test_jobs_that_would_end_past_the_deadline_are_skipped():
    """Each kind's estimate is its longest run so far: after a 0.5 s runner job, a second one does
    not fit in 0.8 s, a first job of another kind (estimate 0.1 s) does; a job that raises is a row."""
    def sleeper(name):
        return lambda: (time.sleep(0.5), [{"variant": name}])[1]

    def boom():
        raise RuntimeError("no torch here")

    jobs = [bench_runner._Job("a", "runner", sleeper("a")), bench_runner._Job("b", "runner", sleeper("b")),
            bench_runner._Job("c", "torch", boom)]
    rows, skipped = bench_runner.run_jobs(jobs, bench.Deadline(0.8), first_estimate=0.1, log=lambda line: None)
    assert skipped == ["b"]
    assert rows[0] == {"variant": "a"} and rows[1]["variant"] == "c" and "no torch here" in rows[1]["note"]
    rows, skipped = bench_runner.run_jobs(jobs[:2], bench.Deadline(None), first_estimate=1e9, log=lambda line: None)
    assert skipped == [] and len(rows) == 2


def test_runner_table_past_its_deadline_names_what_it_skipped(tmp_path):
    md = bench_runner.runner_table(precisions=("mixed_bfloat16", "float32"), batch=4, out_dir=tmp_path,
                                   input_size=67, kernels=("shifted_lrn", "first_max_pool"), torch=False, deadline=0,
                                   log=lambda line: None)
    line = next(line for line in md.splitlines() if line.startswith("Not measured"))
    names = ["towers mixed_bfloat16 b4", "towers+shifted_lrn+first_max_pool mixed_bfloat16 b4",
             "towers+shifted_lrn mixed_bfloat16 b4", "towers+first_max_pool mixed_bfloat16 b4",
             "merged mixed_bfloat16 b4", "half mixed_bfloat16 b4", "towers float32 b4", "merged float32 b4",
             "half float32 b4"]  # no XLA command-buffer row: it is a flag of the JAX engine's XLA
    assert line.split(": ", 1)[1].rstrip(".").split(", ") == names  # the priority order
    assert "No runner row was measured." in md
    assert next(tmp_path.glob("*-runner.csv")).read_text() == ",".join(bench_runner.RUNNER_FIELDS) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("check", ["runner_table_writes_its_rows", "a_failed_child_is_a_row"])
def test_runner_benchmark_under_jax(check):
    """tests/jax_bench.py's checks, each in a fresh interpreter with KERAS_BACKEND=jax."""
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("jax_bench.py")), check],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and f"OK {check}" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_bench_runner_command_passes_its_options(tmp_path):
    from conftest import cli

    proc = cli("bench", "--runner", "--deadline", "0", "--batches", "4,8", "--precisions", "float32",
               "--input-size", "67", "--kernels", "", "--no-torch", "--no-command-buffer", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("*-runner.md")).read_text()
    assert "67x67 input" in md and "deadline 0 s" in md
    assert md.split("Not measured (would have ended past the 0 s deadline): ")[1].split(".\n")[0] == (
        "towers float32 b4, merged float32 b4, half float32 b4, towers float32 b8")


def test_a_small_pipeline_ratio_keeps_its_digits():
    """1,184 images/s against 34,100 is 0.0347x, not the "0.0x" a fixed one decimal gave."""
    line = bench._pipeline_line(1184, [{"train_img_s": 34100.0}, {"train_img_s": 20000.0}], (227, 227))
    assert "1,184 images/s = 0.0347x the fastest" in line and "is the bottleneck" in line
    assert "= 12.5x the fastest" in bench._pipeline_line(1250, [{"train_img_s": 100.0}], (227, 227))
