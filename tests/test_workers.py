"""Compile once (alexnet_split.jax_setup), deterministic runs, and the worker pool and MPS daemon
(alexnet_split.workers). The JAX parts run in fresh interpreters: tests/jax_workers.py."""

import json
import os
import shutil
import stat

import pytest
from conftest import run_check

from alexnet_split import jax_setup, workers


def test_the_queue_runs_complete_groups_first_and_the_longest_first():
    runs = ((1, "towers", 50), (0, "half", 10), (0, "merged", 30), (1, "merged", 90), (0, "towers", 20))
    specs = [workers.RunSpec("r", "paper", m, "quick", s, estimate=e, group=s) for s, m, e in runs]
    assert [(s.seed, s.mode) for s in workers.order(specs)] == [(0, "merged"), (0, "towers"), (0, "half"),
                                                                (1, "merged"), (1, "towers")]
    assert specs[0].name == "r/paper_towers_s1" and str(specs[0].out) == "r/runs/paper_towers_s1"


def test_workers_take_gpu_memory_as_needed_up_to_their_share():
    assert workers.worker_env(1, "cpu") == {"KERAS_BACKEND": "jax"}
    assert workers.worker_env(1, "gpu")["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.850"
    assert workers.worker_env(2, "gpu") == {"KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                                            "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.425"}
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in workers.worker_env(3, "cpu")


def test_deterministic_kernels_are_asked_for_on_gpu_only(monkeypatch):
    monkeypatch.setitem(jax_setup._settings, "deterministic", True)
    assert jax_setup.compiler_options("gpu") == {"xla_gpu_exclude_nondeterministic_ops": True}
    assert jax_setup.compiler_options("cpu") == {}
    monkeypatch.setitem(jax_setup._settings, "deterministic", False)
    assert jax_setup.compiler_options("gpu") == {}
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert jax_setup.platform() == "gpu"
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert jax_setup.platform() == "cpu"


def test_without_mps_on_path_the_pool_runs_without_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    lines = []
    with workers.mps_daemon(log=lines.append) as env:
        assert env == {}
    assert lines == ["MPS: not used (nvidia-cuda-mps-control is not on PATH)"]


def test_mps_daemon_is_started_and_quit_as_an_ordinary_process(tmp_path, monkeypatch):
    """A fake nvidia-cuda-mps-control records its arguments, stdin and pipe folder."""
    record = tmp_path / "calls"
    fake = tmp_path / "bin" / workers.MPS_CONTROL
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nread -r line\necho "$* | $line | $CUDA_MPS_PIPE_DIRECTORY" >> {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(fake.parent))
    lines = []
    with workers.mps_daemon(log=lines.append) as env:
        pipe = env["CUDA_MPS_PIPE_DIRECTORY"]
        assert os.path.isdir(pipe) and os.path.isdir(env["CUDA_MPS_LOG_DIRECTORY"])
        assert record.read_text().splitlines() == [f"-d |  | {pipe}"]
    assert record.read_text().splitlines()[1] == f" | quit | {pipe}"
    assert lines[0].startswith("MPS: used") and lines[-1] == "MPS: daemon stopped" and not os.path.exists(pipe)


@pytest.mark.slow
def test_compile_once_deterministic_history_and_the_pool(tmp_path, data_root):
    """Two fresh processes, the second with a copy of the first's cache in another folder (the next
    device call's $OUT) behind the same link: the second compiles nothing (persistent-cache hits
    only) and writes a byte-identical history.csv and the same test figures; then a pool of two
    workers runs the queue (tests/jax_workers.py pool) and its run of the same spec writes the
    same history.csv again."""
    pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")
    link, results = tmp_path / "cache_link", []
    for name in ("first", "second"):
        if name == "second":
            shutil.copytree(tmp_path / "cache_first", tmp_path / "cache_second")
        proc = run_check("jax_workers", "train_once", tmp_path / f"cache_{name}", link, tmp_path / name, data_root)
        assert proc.returncode == 0 and "OK train_once" in proc.stdout, proc.stderr[-3000:]
        results.append(json.loads(proc.stdout.splitlines()[-2]))
    first, second = results
    assert first["misses"] >= 3 and first["files"] >= 3, first  # train, evaluate, predict at least
    assert second["misses"] == 0 and second["hits"] >= 3 and second["files"] == first["files"], second
    run = "runs/paper_towers_s0"
    first_history, second_history = ((tmp_path / n / run / "history.csv").read_bytes() for n in ("first", "second"))
    assert first_history == second_history
    a, b = (json.loads((tmp_path / n / run / "final.json").read_text()) for n in ("first", "second"))
    assert {k: v for k, v in a.items() if "second" not in k} == {k: v for k, v in b.items() if "second" not in k}
    proc = run_check("jax_workers", "pool", link, tmp_path / "pool", data_root, tmp_path / "first")
    assert proc.returncode == 0 and "OK pool" in proc.stdout, proc.stderr[-3000:]


def test_pinned_workers_and_backends_are_checked_before_any_process_starts():
    n = len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match=rf"{n + 1} workers, but this process may use {n} cores"):
        workers.Pool(n + 1, backend="tensorflow", pin=True)
    with pytest.raises(ValueError, match="backend must be 'jax' or 'tensorflow', got 'torch'"):
        workers.Pool(1, backend="torch")
    assert workers.worker_env(2, "cpu", backend="tensorflow") == {"KERAS_BACKEND": "tensorflow"}


@pytest.mark.slow
def test_tensorflow_workers_bound_one_core_each_train_side_by_side(tmp_path, data_root):
    """The CPU sweep's pool: two TensorFlow workers, worker k bound to core k, each training its
    own run with the fit engine (towers on the two logical CPU devices, half on the first)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    specs = [workers.RunSpec(str(tmp_path), "paper", mode, "quick", 0, {"epochs": 1}, str(data_root), group=0)
             for mode in ("towers", "half")]
    with workers.Pool(2, backend="tensorflow", pin=True, deterministic=False) as pool:
        results = pool.run(specs)
    assert [r["status"] for r in results] == ["done", "done"], results
    assert sorted(r["cores"] for r in results) == [[cores[0]], [cores[1]]]
    configs = {s.mode: json.loads((s.out / "config.json").read_text()) for s in specs}
    assert configs["towers"]["devices"] == ["/CPU:0", "/CPU:1"] and configs["half"]["devices"] == ["/CPU:0"]
    assert {c["engine"] for c in configs.values()} == {"fit"} and {c["backend"] for c in configs.values()} == {
        "tensorflow"}
    assert all((s.out / "final.json").is_file() and not (s.out / "ckpt").exists() for s in specs)
