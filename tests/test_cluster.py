"""Towers on separate TensorFlow worker processes over loopback gRPC (127.0.0.1 only).

Every test here starts real ``alexnet-split worker`` processes; each wait is bounded.
"""

import json
import os
import socket
import subprocess
import sys
import time
import zipfile

import pytest
from conftest import cli, history, run_check

from alexnet_split import cluster as cl
from alexnet_split import config, placement_check, placement_log
from alexnet_split.loopback import LocalCluster, free_ports
from alexnet_split.placement_log import BACKWARD, FORWARD, UPDATE

# --------------------------------------------------------------------------- runtime placement


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    return placement_check.check_cluster(tmp_path_factory.mktemp("cluster"), steps=3)


@pytest.mark.slow
def test_each_tower_ran_in_its_own_worker_process(loopback):
    report = loopback
    assert report.devices == [cl.task_device(0), cl.task_device(1)]
    counts = report.counts()
    for tower in (0, 1):
        for phase in (FORWARD, BACKWARD, UPDATE):
            # Every op of this tower and phase was run by worker `tower`'s own executor ...
            assert set(counts[(tower, phase)]) == {tower}, (tower, phase, counts[(tower, phase)])
            assert counts[(tower, phase)][tower] >= 30
    assert report.misplaced() == []  # ... and none by the other worker
    for v in report.variables:
        k = placement_log.tower_of(v["path"].split("/")[0])
        if v["path"].startswith(("t0_", "t1_")):
            assert placement_log.task_of(v["device"]) == k, v
    assert report.slots and all(s["device"] == s["reference_device"] for s in report.slots)


@pytest.mark.slow
def test_weights_after_training_equal_one_process(loopback):
    w = loopback.weights
    assert w["tensors"] == 30 and w["start_max_abs"] == 0.0
    assert w["moved_max_abs"] > 1e-3  # the steps did train
    # Same kernels on the same CPU: expected bit-identical; the stated tolerance is 1e-6 relative.
    assert w["max_rel"] <= 1e-6, w


# --------------------------------------------------------------------------- kill and resume


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_worker_1_then_restart_and_resume(data_root, tmp_path):
    out = tmp_path / "run"
    state = out / "state.json"
    with LocalCluster(2, tmp_path / "cluster") as cluster:
        train = ["train", "--cluster", cluster.spec_file, "--data", data_root, "--out", out, "--recipe", "quick",
                 "--set", "epochs=4"]
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        chief = subprocess.Popen([sys.executable, "-m", "alexnet_split.cli", *map(str, train)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            _wait(lambda: state.is_file() or chief.poll() is not None, 300, "the first checkpoint")
            assert chief.poll() is None, chief.communicate()[1][-3000:]
            cluster.kill(1)
            killed = time.monotonic()
            _, stderr = chief.communicate(timeout=60)
            stopped_after = time.monotonic() - killed
        finally:
            if chief.poll() is None:
                chief.kill()
        assert chief.returncode != 0
        assert stopped_after < 30, stopped_after  # bounded: ~3 probes 1 s apart, plus TF's own error path
        assert f"worker task 1 ({cluster.addresses[1]})" in stderr, stderr[-3000:]
        kept = json.loads(state.read_text())
        assert 1 <= kept["interval"] < 4 and "intact" in stderr
        with zipfile.ZipFile(out / kept["checkpoint"]) as z:  # the last checkpoint is whole
            assert z.testzip() is None

        cluster.start(1, append=True)
        proc = cli(*train, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming {out} after step {kept['step']} (interval {kept['interval']} of 4)" in proc.stderr
    assert [float(r["epoch"]) for r in history(out)] == [1, 2, 3, 4]  # no epoch lost or repeated
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["devices"] == [cl.task_device(0), cl.task_device(1)]


# --------------------------------------------------------------------------- bad input and signals


@pytest.mark.slow
def test_worker_stops_cleanly_on_sigterm(tmp_path):
    cluster = LocalCluster(1, tmp_path)
    with cluster:
        port = int(cluster.addresses[0].rsplit(":", 1)[1])
    # __exit__ sent SIGTERM
    assert cluster.procs[0].returncode == 0
    assert "worker task 0: SIGTERM received, stopping" in cluster.log_file(0).read_text()
    with socket.socket() as s:  # the port is free again for a restarted worker
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
@pytest.mark.parametrize("spec, message", [
    ("{not json", "not valid JSON"),
    ('{"workers": ["127.0.0.1:1"]}', 'needs a non-empty "worker" list'),
    ('{"worker": ["127.0.0.1"]}', "expected \"host:port\", got '127.0.0.1'"),
    ('{"worker": ["127.0.0.1:70000"]}', "port in 1..65535, got '127.0.0.1:70000'"),
    ('{"worker": ["127.0.0.1:5000", "127.0.0.1:5000"]}', "listed twice"),
    ('{"worker": ["127.0.0.1:5000"], "ps": ["127.0.0.1:5001"]}', "unknown job(s) ['ps']"),
])
def test_malformed_cluster_spec_is_a_clear_error(tmp_path, spec, message):
    path = tmp_path / "spec.json"
    path.write_text(spec)
    proc = cli("worker", "--cluster", path, "--task", 0)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_unknown_task_and_missing_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}))
    proc = cli("worker", "--cluster", path, "--task", 5)
    assert proc.returncode == 2
    assert "there is no worker task 5; the spec has worker tasks 0..1" in proc.stderr, proc.stderr
    proc = cli("worker", "--cluster", tmp_path / "nope.json", "--task", 0)
    assert proc.returncode == 2 and "nope.json: cannot read the cluster spec" in proc.stderr


@pytest.mark.slow
def test_port_in_use_is_a_clear_error(tmp_path):
    (port,) = free_ports(1)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"worker": [f"127.0.0.1:{port}"]}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        proc = cli("worker", "--cluster", path, "--task", 0)
    assert proc.returncode == 2
    assert f"cannot listen on port {port} (127.0.0.1:{port} in {path})" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_tf_config_task_and_unreachable_workers(tmp_path, data_root):
    ports = free_ports(2)
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": 1}}
    cluster, task, where = cl.load_cluster(_write(tmp_path / "tf_config.json", tf_config))
    assert task == 1 and cluster == {"worker": tf_config["cluster"]["worker"]}
    proc = cli("train", "--cluster", tmp_path / "tf_config.json", "--data", data_root, "--out", tmp_path / "run",
               "--recipe", "quick")
    assert proc.returncode == 2
    assert f"cannot reach worker task 0 (127.0.0.1:{ports[0]}), worker task 1 (127.0.0.1:{ports[1]})" in proc.stderr


@pytest.mark.slow
def test_resume_with_other_devices_is_refused(tmp_path, data_root):
    out = tmp_path / "run"
    out.mkdir()
    _write(out / "config.json", {"layout": "paper", "mode": "towers", "seed": 0,
                                 "recipe": config.get_recipe("quick").to_dict(), "engine": "fit",
                                 "devices": [cl.task_device(0), cl.task_device(1)]})
    _write(out / "state.json", {"interval": 1, "step": 22, "checkpoint": "ckpt/step_000022.keras"})
    proc = cli("train", "--data", data_root, "--out", out, "--recipe", "quick")
    assert proc.returncode == 2 and "Resume it with the same devices" in proc.stderr, proc.stderr


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_watchdog_names_a_worker_whose_port_closes():
    # The fallback for a step that never returns: the chief's watchdog ends it.
    (port,) = free_ports(1)
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    calls = []
    with cl.WorkerWatchdog({"worker": [f"127.0.0.1:{port}"]}, calls.append, interval=0.2, misses=3):
        time.sleep(0.5)
        assert calls == []  # a live port is left alone
        server.close()
        _wait(lambda: calls, 5, "the watchdog's report")
    assert calls == [f"lost worker task 0 (127.0.0.1:{port}): its port refused 3 probes 0.2 s apart"]


@pytest.mark.slow
def test_configure_cluster_reads_tf_config_in_a_fresh_process(tmp_path):
    with LocalCluster(2, tmp_path) as cluster:
        env = dict(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": cluster.addresses}}))
        proc = run_check("fresh_process", "configure_cluster_from_tf_config", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [str([cl.task_device(0), cl.task_device(1)]),
                                        "OK configure_cluster_from_tf_config"]
