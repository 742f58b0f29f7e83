"""Several runs at once on one accelerator: a queue of runs and N worker processes.

An AlexNet step leaves an H200 mostly idle (results/bench/), so 2-4 processes that each train
one run at a time can fill it. The parent holds the queue and hands each idle worker the next
run, in order of ``(group, -estimate)``: complete groups first (the tables use the seed, so a cut
leaves complete seeds to pair), the longest run of a group first. No run is launched after the
`deadline` unless its estimate fits before it.

Workers are spawned, not forked (JAX is not fork-safe), with ``KERAS_BACKEND=jax``, their share of
the accelerator's memory, and :func:`alexnet_split.jax_setup.configure` with the parent's cache
folder: a program the parent compiled first is a cache hit, so every process runs the same
executable (a worker that autotuned on its own could pick another convolution algorithm). A run
writes its folder as :func:`alexnet_split.train.train` does, and its output goes to
``<run>/train.log``. A failed run, or a worker that dies, is reported and the queue goes on (a
dead worker is replaced).

CUDA MPS (:func:`mps_daemon`) lets the workers' kernels share the card; it is started only as an
ordinary process of this user, and never changes the card's settings.

On a CPU machine the same pool runs TensorFlow workers (``backend="tensorflow"``): each trains
with the Keras-fit engine on two logical CPU devices (the towers placed as in any run), and with
``pin=True`` worker k is bound to core k, so N single-core runs side by side share the machine
without their thread pools competing (results/bench/cpu-2core-sweep.md measures which is faster).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing.connection import wait
from pathlib import Path

from . import runlog

MPS_CONTROL = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class RunSpec:
    """One run of a comparison: its results folder, what it trains, and its estimated seconds."""

    results: str
    layout: str
    mode: str
    recipe: str
    seed: int
    overrides: dict = field(default_factory=dict)
    data: str | None = None
    estimate: float = 60.0
    group: int = 0
    kind: str = "train"  # or "compile": build the run's programs only (alexnet_split.train.compile_programs)

    @property
    def out(self) -> Path:
        from .sweep import run_name

        return Path(self.results) / "runs" / run_name(self.layout, self.mode, self.seed)

    @property
    def name(self) -> str:
        return f"{Path(self.results).name}/{self.out.name}" + (" (compile)" if self.kind == "compile" else "")


def order(specs) -> list[RunSpec]:
    """The queue's order: by group, then the longest estimate first (stable)."""
    return sorted(specs, key=lambda s: (s.group, -s.estimate))


def utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def worker_env(workers: int, platform: str, extra: dict | None = None, backend: str = "jax") -> dict:
    """The variables a worker starts with: the Keras backend, and on GPU its share of the memory
    (JAX takes 75% by default, which leaves no room for a second process)."""
    env = {"KERAS_BACKEND": backend, **(extra or {})}
    if platform == "gpu":
        # take memory as needed, up to a share (the parent, which runs the benchmark, holds some too)
        env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.85 / workers:.3f}")
    return env


def train_spec(spec: RunSpec, devices=()) -> dict:
    """Train `spec` in this process and return its final.json: the device engine under JAX; under
    TensorFlow the fit engine, towers on `devices` (the other modes on the first), checkpointing
    at most every two minutes (a kill loses at most that much)."""
    import keras

    from . import train

    keras.backend.clear_session()
    spec.out.mkdir(parents=True, exist_ok=True)
    jax = keras.backend.backend() == "jax"
    placed = list(devices) if spec.mode == "towers" else list(devices[:1])
    with open(spec.out / "train.log", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return train.train(spec.out, spec.layout, spec.mode, spec.recipe, seed=spec.seed, data_root=spec.data,
                           overrides=spec.overrides, checkpoint_seconds=1e9 if jax else 120.0, verbose=2,
                           engine="device" if jax else "fit", devices=placed or None)


def compile_line(out) -> str:
    """The device engine's last "compiled ..." line in run folder `out`'s train.log ("" if none)."""
    log = Path(out) / "train.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return next((line for line in reversed(lines) if line.startswith("compiled ")), "")


def _execute(spec: RunSpec, devices=()) -> dict:
    if spec.kind == "compile":
        import keras

        from . import train

        keras.backend.clear_session()
        return {"status": "compiled", "compile": train.compile_programs(
            spec.layout, spec.mode, spec.recipe, spec.seed, spec.data, spec.overrides)}
    return {"status": "done", "final": train_spec(spec, devices), "compile": compile_line(spec.out),
            "cores": sorted(os.sched_getaffinity(0))}


def _worker(conn, cache_dir, deterministic):
    """A worker's life: set up JAX (or TensorFlow's two logical CPU devices), then train the runs
    the parent sends until it sends None."""
    runlog.quiet_like_the_parent()
    devices = ()
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        from .devices import configure_devices

        devices = tuple(configure_devices(2, prefer="cpu"))
    else:
        from . import jax_setup

        jax_setup.configure(cache_dir, deterministic=deterministic)
    while (spec := conn.recv()) is not None:
        try:
            conn.send(_execute(RunSpec(**spec), devices))
        except Exception as e:  # noqa: BLE001 (one run's failure is reported, the worker goes on)
            conn.send({"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


class _Worker:
    def __init__(self, index, ctx, env, cache_dir, deterministic, cores=None):
        self.index, self.spec, self.started = index, None, 0.0
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, cache_dir, deterministic), daemon=True)
        saved, affinity = dict(os.environ), os.sched_getaffinity(0)
        os.environ.update(env)  # a spawned child reads the environment at its start, before any import
        try:
            if cores:  # inherited at the fork: TensorFlow sizes its thread pools from it
                os.sched_setaffinity(0, cores)
            self.process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            os.sched_setaffinity(0, affinity)
        child.close()

    def send(self, spec: RunSpec):
        self.spec, self.started = spec, time.monotonic()
        with contextlib.suppress(OSError):  # a worker that died at its start: its sentinel reports it
            self.conn.send(asdict(spec))

    def stop(self):
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Pool:
    """Runs :class:`RunSpec` queues on `workers` spawned processes, which live until :meth:`close`
    (or the end of a ``with`` block): a second :meth:`run` reuses them. `on_result(spec, result)`
    is called in this process after each run (the tables script packs the logs there)."""

    def __init__(self, workers=1, cache_dir=None, deterministic=True, deadline=None, env=None, log=None,
                 platform="cpu", on_result=None, backend="jax", pin=False):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if backend not in ("jax", "tensorflow"):
            raise ValueError(f"backend must be 'jax' or 'tensorflow', got {backend!r}")
        cores = sorted(os.sched_getaffinity(0))
        if pin and workers > len(cores):
            raise ValueError(f"pin=True binds worker k to core k: {workers} workers, but this process may use "
                             f"{len(cores)} cores {cores}")
        self.cores = [{c} for c in cores[:workers]] if pin else None
        self.workers, self.cache_dir, self.deterministic = workers, cache_dir, deterministic
        self.deadline = deadline  # time.monotonic() after which a run starts only if its estimate fits
        self.env = worker_env(workers, platform, env, backend)
        self.log = log or (lambda line: print(line, flush=True))
        self.on_result = on_result
        self.ctx = multiprocessing.get_context("spawn")
        self.pool: list[_Worker] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for w in self.pool:
            w.stop()
        self.pool = []

    def _fits(self, spec: RunSpec) -> bool:
        return self.deadline is None or time.monotonic() + spec.estimate <= self.deadline

    def _spawn(self, index) -> _Worker:
        return _Worker(index, self.ctx, self.env, str(self.cache_dir) if self.cache_dir else None, self.deterministic,
                       self.cores[index] if self.cores else None)

    def run(self, specs) -> list[dict]:
        """Run `specs` in queue order; one result per spec: name, status (done, compiled, failed,
        crashed, skipped), seconds, and final (a run's final.json) or compile or error."""
        queue, results = order(specs), []
        while len(self.pool) < min(self.workers, len(queue)):
            self.pool.append(self._spawn(len(self.pool)))
        try:
            while True:
                for w in self.pool:
                    if w.spec is None:
                        self._hand_out(w, queue, results)
                busy = [w for w in self.pool if w.spec is not None]
                if not busy:
                    return results
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for i, w in enumerate(self.pool):
                    if w.spec is not None and (w.conn in ready or w.process.sentinel in ready):
                        self.pool[i] = self._collect(w, results)
        except BaseException:
            self.close()  # a Ctrl-C leaves no worker behind
            raise

    def _hand_out(self, w: _Worker, queue: list, results: list):
        while queue:
            spec = queue.pop(0)
            if self._fits(spec):
                self.log(f"{utc()} start {spec.name} on worker {w.index} (estimate {spec.estimate:.0f} s)")
                w.send(spec)
                return
            left = self.deadline - time.monotonic()
            self.log(f"{utc()} not started {spec.name}: {left:.0f} s left, estimate {spec.estimate:.0f} s")
            results.append({"name": spec.name, "status": "skipped", "seconds": 0.0})

    def _collect(self, w: _Worker, results: list) -> _Worker:
        """Record `w`'s finished run; a dead worker's run counts as crashed and a new worker
        takes its place."""
        took = time.monotonic() - w.started
        spec, w.spec = w.spec, None
        message = None
        with contextlib.suppress(EOFError, OSError):
            if w.conn.poll():
                message = w.conn.recv()
        if message is None:
            w.process.join(timeout=10)  # its pipe closed as it died: let it finish dying for the exit code
            message = {"status": "crashed", "error": f"worker {w.index} died (exit code {w.process.exitcode})"}
        result = {"name": spec.name, "seconds": round(took, 1), **message}
        results.append(result)
        self.log(f"{utc()} {_describe(result)}")
        if self.on_result is not None:
            self.on_result(spec, result)
        if message["status"] == "crashed":
            w.stop()
            return self._spawn(w.index)
        return w


def _describe(result: dict) -> str:
    name, status, took = result["name"], result["status"], result["seconds"]
    if status == "done":
        f = result["final"]
        return (f"done {name}: test top-1 {f['test_top1']:.4f}, {f['steps']} steps, {f['stopped_by']} ({took:.0f} s; "
                f"{result.get('compile') or 'no compile line'})")
    if status == "compiled":
        return f"compiled {name} ({took:.0f} s): " + ", ".join(f"{k} {v:.1f}s" for k, v in result["compile"].items())
    return f"{status.upper()} {name} ({took:.0f} s): {result['error']}"


def mps_commands(binary: str) -> tuple[list[str], list[str], str]:
    """(start command, stop command, the stop command's stdin) of the MPS control daemon."""
    return [binary, "-d"], [binary], "quit\n"


@contextlib.contextmanager
def mps_daemon(enable=True, log=None):
    """Start CUDA MPS's control daemon as an ordinary process when ``nvidia-cuda-mps-control``
    is on PATH, and quit it on exit; yields the variables the workers need to reach it ({} when
    MPS is not used). Never touches the card's settings (compute mode, clocks, MIG, persistence)."""
    log = log or (lambda line: print(line, flush=True))
    binary = shutil.which(MPS_CONTROL)
    if not enable or binary is None:
        log(f"MPS: not used ({'disabled' if not enable else MPS_CONTROL + ' is not on PATH'})")
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="alexnet_split_mps_"))
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    for path in env.values():
        Path(path).mkdir()
    start, stop, stop_input = mps_commands(binary)
    full = dict(os.environ, **env)
    # its output to a file, not a pipe: the daemon it forks could hold a pipe open, and run() would wait
    with open(folder / "start.log", "w") as out:
        try:
            code = subprocess.run(start, env=full, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=60).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            out.write(str(e))
            code = -1
    if code != 0:
        said = (folder / "start.log").read_text().strip()[:200]
        log(f"MPS: not used ({' '.join(start)} exited {code}: {said})")
        shutil.rmtree(folder, ignore_errors=True)
        yield {}
        return
    log(f"MPS: used (daemon started by {' '.join(start)}, pipes in {env['CUDA_MPS_PIPE_DIRECTORY']})")
    try:
        yield env
    finally:
        with open(folder / "stop.log", "w") as out:
            subprocess.run(stop, input=stop_input, env=full, stdout=out, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        log("MPS: daemon stopped")
        shutil.rmtree(folder, ignore_errors=True)
