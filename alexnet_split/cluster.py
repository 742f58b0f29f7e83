"""Towers on separate machines, with TensorFlow's own distributed runtime.

Each worker runs a ``tf.distribute.Server``; the training process ("chief") connects with
``tf.config.experimental_connect_to_cluster`` and places tower k on ``/job:worker/task:k``. The
traced training step is then partitioned by TensorFlow across the tasks, and the tensors at the
cross-connections travel over gRPC (``_Send``/``_Recv``), exactly as between two local devices.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading

import keras

from .devices import PREFER, is_tensorflow

JOBS = ("worker", "chief")


class ClusterError(ValueError):
    """A bad cluster spec, task or port; the message names the file and the value."""


def load_cluster(source=None) -> tuple[dict, int | None, str]:
    """Read a cluster spec: a JSON file path, a dict, or (``None`` or ``"TF_CONFIG"``) ``$TF_CONFIG``.

    Accepts a bare spec ``{"worker": ["host:port", ...], "chief": ["host:port"]}`` (chief
    optional) or the ``TF_CONFIG`` form ``{"cluster": {...}, "task": {"type": "worker",
    "index": 1}}``. Returns ``(cluster, task index or None, where it came from)``.
    """

    where, source = _read_spec(source)
    spec, task = _unwrap_tf_config(source, where)
    _check_jobs(spec, where)
    _check_addresses(spec, where)
    cluster = {job: list(spec[job]) for job in JOBS if job in spec}
    if task is not None:
        check_task(cluster, task, where)
    return cluster, task, where


def _read_spec(source) -> tuple[str, dict]:
    """(where the spec came from, the spec as a dict): $TF_CONFIG, a dict, or a JSON file."""
    if isinstance(source, dict):
        return "cluster dict", source
    if source is None or source == "TF_CONFIG":
        if not os.environ.get("TF_CONFIG"):
            raise ClusterError("no cluster given: pass --cluster SPEC.json or set TF_CONFIG")
        where, text = "$TF_CONFIG", os.environ["TF_CONFIG"]
    else:
        where = str(source)
        try:
            with open(source) as f:
                text = f.read()
        except OSError as e:
            raise ClusterError(f"{where}: cannot read the cluster spec ({e.strerror})") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClusterError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(parsed, dict):
        raise ClusterError(f"{where}: expected a JSON object, got {type(parsed).__name__}")
    return where, parsed


def _unwrap_tf_config(source: dict, where: str) -> tuple[dict, int | None]:
    """(the bare spec, the task index or None) of either form."""
    if "cluster" not in source:
        return source, None
    spec, task_def = source["cluster"], source.get("task")
    if task_def is None:
        return spec, None
    if not isinstance(task_def, dict) or task_def.get("type", "worker") != "worker" \
            or not isinstance(task_def.get("index"), int):
        raise ClusterError(f"{where}: task must be {{\"type\": \"worker\", \"index\": N}}, got {task_def!r}")
    return spec, task_def["index"]


def _check_jobs(spec, where: str):
    """A non-empty worker list, no job but worker and chief, and at most one chief."""
    if not isinstance(spec, dict) or not isinstance(spec.get("worker"), list) or not spec["worker"]:
        raise ClusterError(f"{where}: the cluster needs a non-empty \"worker\" list of \"host:port\", got {spec!r}")
    unknown = sorted(set(spec) - set(JOBS))
    if unknown:
        raise ClusterError(f"{where}: unknown job(s) {unknown}; expected {list(JOBS)}")
    if len(spec.get("chief", [None])) != 1:
        raise ClusterError(f"{where}: \"chief\" must list exactly one address, got {spec['chief']!r}")


def _check_addresses(spec: dict, where: str):
    """Every job a list of valid "host:port", no address listed twice."""
    seen = {}
    for job, addresses in spec.items():
        if not isinstance(addresses, list):
            raise ClusterError(f"{where}: {job!r} must be a list of \"host:port\", got {addresses!r}")
        for i, address in enumerate(addresses):
            _split_address(address, f"{where}: {job} task {i}")
            if address in seen:
                raise ClusterError(f"{where}: {address!r} is listed twice ({seen[address]} and {job} task {i})")
            seen[address] = f"{job} task {i}"


def _split_address(address, what) -> tuple[str, int]:
    if not isinstance(address, str) or address.count(":") < 1:
        raise ClusterError(f"{what}: expected \"host:port\", got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"{what}: expected \"host:port\" with a port in 1..65535, got {address!r}")
    return host.strip("[]"), int(port)


def check_task(cluster: dict, task, where="the cluster spec") -> int:
    n = len(cluster["worker"])
    if not isinstance(task, int) or not 0 <= task < n:
        raise ClusterError(f"{where}: there is no worker task {task!r}; the spec has worker tasks 0..{n - 1} "
                           f"({', '.join(cluster['worker'])})")
    return task


def task_device(task: int, kind: str = "CPU", index: int = 0) -> str:
    return f"/job:worker/replica:0/task:{task}/device:{kind}:{index}"


def serve_worker(cluster: dict, task: int, where="the cluster spec", log=print) -> int:
    """Run worker `task` of `cluster` until SIGTERM or SIGINT; returns the exit status (0).

    Blocks in Python (not in ``server.join()``) so that the signal handlers run."""

    import tensorflow as tf

    check_task(cluster, task, where)
    address = cluster["worker"][task]
    host, port = _split_address(address, f"{where}: worker task {task}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR as gRPC sets it: a restarted worker may bind over the TIME_WAIT connections
        # its killed predecessor left, but not beside a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # gRPC would only log the clash and carry on without a server
            probe.bind(("", port))
        except OSError as e:
            raise ClusterError(f"worker task {task}: cannot listen on port {port} ({address} in {where}): "
                               f"{e.strerror}; is another process using it?") from None
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # the towers share the card politely
    stop = threading.Event()
    received = []

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name="worker", task_index=task, protocol="grpc")
    devices = [d.name for d in tf.config.list_logical_devices()]
    log(f"worker task {task} listening on {address} ({server.target}); devices: {', '.join(devices)}")
    while not stop.wait(0.5):
        pass
    log(f"worker task {task}: {received[0]} received, stopping")
    return 0


def connect(cluster: dict) -> str:
    """Connect this process (the chief) to `cluster`; returns the job name it runs as.

    With a "chief" address in the spec the chief listens there (a fixed port to open in a
    firewall); without one TensorFlow picks a free port and calls the job "localhost"."""
    import tensorflow as tf

    job = "chief" if "chief" in cluster else "localhost"
    unreachable = [f"worker task {i} ({a})" for i, a in enumerate(cluster["worker"]) if not _port_open(a)]
    if unreachable:
        raise ClusterError(f"cannot reach {', '.join(unreachable)}: start it with "
                           "`alexnet-split worker --cluster SPEC.json --task N` (and open its port)")
    tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(cluster), job_name=job, task_index=0)
    return job


def cluster_devices(cluster: dict, n_towers: int, prefer: str = "auto") -> list[str]:
    """Tower k's device on worker task k (round-robin when there are fewer workers): the task's
    first GPU, or its CPU when it has none or ``prefer="cpu"``. Call after :func:`connect`."""
    import tensorflow as tf

    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER}, got {prefer!r}")
    names = [d.name for d in tf.config.list_logical_devices()]
    devices = []
    for k in range(n_towers):
        task = k % len(cluster["worker"])
        gpu = task_device(task, "GPU")
        if prefer != "cpu" and gpu in names:
            devices.append(gpu)
        elif prefer == "gpu":
            raise RuntimeError(f"prefer='gpu': worker task {task} ({cluster['worker'][task]}) has no GPU")
        else:
            devices.append(task_device(task, "CPU"))
    return devices


def _port_open(address: str, timeout: float = 2.0) -> bool:
    host, port = _split_address(address, address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class WorkerWatchdog:
    """Probes every worker's port once a `interval`; after `misses` failed probes in a row it
    calls ``on_lost(message)`` (which must end the process: a training step waiting for a dead
    task's tensors never returns by itself).

    A killed worker's port refuses connections at once, so the chief stops within about
    interval * misses seconds."""

    def __init__(self, cluster: dict, on_lost, interval: float = 1.0, misses: int = 3):
        self.cluster, self.on_lost, self.interval, self.misses = cluster, on_lost, interval, misses
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def lost(self) -> list[str]:
        return [f"worker task {i} ({a})" for i, a in enumerate(self.cluster["worker"])
                if not _port_open(a, self.interval)]

    def _run(self):
        failed = {}
        while not self._stop.wait(self.interval):
            for i, address in enumerate(self.cluster["worker"]):
                failed[i] = 0 if _port_open(address, self.interval) else failed.get(i, 0) + 1
                if failed[i] >= self.misses and not self._stop.is_set():
                    self.on_lost(f"lost worker task {i} ({address}): its port refused {failed[i]} probes "
                                 f"{self.interval:g} s apart")
                    return

def configure_cluster(source=None, n_towers: int = 2, prefer: str = "auto") -> tuple[dict, list[str], str]:
    """Connect this process to the TensorFlow workers of `source` (a spec file, a spec dict, or
    ``None``/``"TF_CONFIG"`` for ``$TF_CONFIG``) and put tower k on worker task k. Returns
    ``(cluster, the towers' devices, where the spec came from)``. The local counterpart is
    :func:`alexnet_split.devices.configure_devices`."""
    if not is_tensorflow():
        raise RuntimeError(f"a cluster needs the TensorFlow backend; KERAS_BACKEND={keras.backend.backend()!r}")
    cluster, _, where = load_cluster(source)
    connect(cluster)
    return cluster, cluster_devices(cluster, n_towers, prefer), where


@contextlib.contextmanager
def guard_workers(cluster: dict, explain, prefix: str = "error"):
    """Run the block (training on `cluster`'s workers) so that losing a worker ends it clearly.

    The :class:`WorkerWatchdog` ends the process with exit code 3 and ``explain(message)`` on
    stderr (the step in flight waits for the lost task's tensors and would never return); if
    TensorFlow notices first, its error becomes a ``RuntimeError(explain(...))`` naming the task
    whose port is closed."""

    import tensorflow as tf

    def on_lost(message):
        print(f"{prefix}: {explain(message)}", file=sys.stderr, flush=True)
        os._exit(3)

    with WorkerWatchdog(cluster, on_lost) as watchdog:
        try:
            yield
        except tf.errors.OpError as e:
            lost = "; ".join(watchdog.lost()) or "a cluster task"
            detail = " ".join(line.strip() for line in e.message.strip().splitlines()[-2:])[:300]
            raise RuntimeError(explain(f"lost {lost} during training ({type(e).__name__}: {detail})")) from None
