"""A cluster of worker processes on this machine (127.0.0.1), for tests, proofs and benchmarks.

Each worker is a real ``alexnet-split worker`` process with its own TensorFlow runtime and gRPC
server, so everything between the chief and the workers crosses process boundaries exactly as
it would between hosts; only the network is the loopback interface.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    """``with LocalCluster(2, folder) as c:`` starts workers 0..n-1, writes ``c.spec_file``, and
    stops them (SIGTERM) on exit. Each worker's output goes to ``folder/worker{k}.log``.

    ``executor_log=True`` makes each worker log every op its executor runs, with the device
    (TensorFlow's ``executor.cc`` VLOG 1): runtime evidence of where the ops ran."""

    def __init__(self, n_workers: int, folder, executor_log: bool = False, start_timeout: float = 120.0,
                 env: dict | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(n_workers)]
        self.spec_file = self.folder / "cluster.json"
        self.spec_file.write_text(json.dumps({"worker": self.addresses}, indent=1) + "\n")
        self.start_timeout = start_timeout
        self.env = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="", **(env or {}))
        # the command line keeps TensorFlow's log off unless --verbose: the executor log needs it on
        self.verbose = ["--verbose"] if executor_log else []
        if executor_log:
            self.env.update(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="executor=1")
        self.procs: list[subprocess.Popen | None] = [None] * n_workers

    def log_file(self, task: int) -> Path:
        return self.folder / f"worker{task}.log"

    def start(self, task: int, append: bool = False):
        offset = self.log_file(task).stat().st_size if append and self.log_file(task).exists() else 0
        log = open(self.log_file(task), "a" if append else "w")
        self.procs[task] = subprocess.Popen(
            [sys.executable, "-m", "alexnet_split.cli", *self.verbose, "worker", "--cluster", str(self.spec_file),
             "--task", str(task)], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while f"worker task {task} listening" not in self.log_file(task).read_text(errors="replace")[offset:]:
            if self.procs[task].poll() is not None:
                raise RuntimeError(f"worker task {task} exited with {self.procs[task].returncode}:\n"
                                   + self.log_file(task).read_text(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker task {task} did not start within {self.start_timeout:.0f} s")
            time.sleep(0.2)

    def kill(self, task: int):
        self.procs[task].send_signal(signal.SIGKILL)
        self.procs[task].wait()

    def stop(self, task: int, timeout: float = 30.0) -> int:
        proc = self.procs[task]
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def __enter__(self):
        try:
            for k in range(len(self.procs)):
                self.start(k)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for k in range(len(self.procs)):
            self.stop(k)
