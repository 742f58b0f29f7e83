"""The runner against the scanned compute-only loop, side by side (``alexnet-split bench --runner``):
rows per model mode, precision and kernel option, each with its physical limit, run in priority order
within a deadline; the PyTorch reference and XLA flags in child processes, which print their rows
after :data:`RESULT_PREFIX` (``python -m alexnet_split.bench_runner runner-row JSON``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import keras

from . import spec
from .bench import TARGETS, Deadline, backend_version, on_accelerator, runner_speed
from .bench_peak import matmul_peak, memory_bandwidth, precision_note
from .config import PRECISIONS
from .devices import host_kind, is_tensorflow
from .kernels import KERNELS
from .runlog import atomic_write, machine
from .tables import csv_text, markdown_table

RUNNER_FIELDS = ["variant", "precision", "batch", "runner_img_s", "scanned_compute_img_s", "torch_img_s"]
# XLA's default command-buffer scheduling (LHS) serialises independent kernels; CONCURRENT lets the two
# towers' kernels overlap. An unknown XLA flag aborts the process, so it is measured in a child process.
COMMAND_BUFFER_FLAG = "--xla_gpu_command_buffer_scheduling_mode=CONCURRENT"
RESULT_PREFIX = "BENCH_RESULT "  # how a child process (torch_ref, runner-row) prints a result


def kernel_variants(options) -> list[str]:
    """What the benchmark compares: "" (the plain layers), each option alone, then all together."""
    options = list(options)
    return [""] + options + ([",".join(options)] if len(options) > 1 else [])


def variant_name(mode: str, kernels: str = "", extra: str = "") -> str:
    """``towers``, ``towers+shifted_lrn``, ``towers+shifted_lrn+first_max_pool``, ..."""
    return "+".join([mode, *(k for k in kernels.split(",") if k), *([extra] if extra else [])])


@dataclasses.dataclass
class _Job:
    """One measurement of :func:`runner_table`: `kind` ("runner", "torch" or "flag") sets its time
    estimate; `run` returns its rows."""

    name: str
    kind: str
    run: object


def runner_table(layout="paper", precisions=PRECISIONS, batch=128, out_dir="results/bench", log=print,
                 interval_steps=50, intervals=4, n_val=272, suffix="", deadline=None, modes=spec.MODES,
                 kernels=None, torch=True, command_buffer=True, input_size=None, extra_batches=(),
                 first_estimate=90.0) -> str:
    """The runner against the scanned compute-only loop, side by side in one process: rows per
    model mode, precision and kernel option (:func:`runner_speed`), each with the physical limit
    from XLA's cost analysis and this run's matmul peak and memory bandwidth; the PyTorch
    reference (:mod:`alexnet_split.torch_ref`, in a child process, when torch is installed); and the
    towers with XLA's concurrent command-buffer scheduling (a child process). Writes
    ``<out_dir>/<host-kind>-runner<suffix>.md`` and ``.csv`` (:data:`RUNNER_FIELDS`) and returns
    the markdown.

    `kernels`: the kernel options to compare (default :data:`alexnet_split.kernels.KERNELS`). `deadline`
    (seconds from the start): measurements go in priority order (towers at the first
    precision, mixed_bfloat16 if listed; towers with all kernel options; PyTorch; each option
    alone; the other modes; the other precisions; the command-buffer flag; `extra_batches`),
    and one whose estimate (the longest of its kind so far, else `first_estimate`) would end past
    the deadline is skipped and named in the table."""
    t0 = time.perf_counter()
    clock = Deadline(deadline)
    accel = on_accelerator()
    shape = (input_size, input_size, 3) if input_size else spec.get_layout(layout).input_shape
    mm_n, inner = (8192, 10) if accel else (512, 1)
    peaks = {p: matmul_peak(p, mm_n, inner=inner) for p in precisions}
    bandwidth = memory_bandwidth(1 << 30 if accel else 1 << 26, inner=inner)
    log("matmul peak " + ", ".join(f"{p} {g:,.1f} GFLOP/s" for p, g in peaks.items())
        + f"; memory bandwidth {bandwidth:,.1f} GB/s")
    settings = dict(layout=layout, input_shape=shape, interval_steps=interval_steps, intervals=intervals, n_val=n_val)
    jobs = _runner_jobs(settings, precisions, batch, modes, KERNELS if kernels is None else kernels,
                        torch, command_buffer, extra_batches, clock)
    rows, skipped = run_jobs(jobs, clock, first_estimate, log)
    for r in rows:
        _add_limit(r, peaks, bandwidth)
    md = _runner_markdown(layout, shape, rows, skipped, peaks, bandwidth, mm_n, time.perf_counter() - t0, deadline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{host_kind()}-runner{suffix}.md", md)
    atomic_write(out / f"{host_kind()}-runner{suffix}.csv", runner_csv(rows))
    return md


def run_jobs(jobs, clock: Deadline, first_estimate: float, log=print) -> tuple[list[dict], list[str]]:
    """Run `jobs` (:class:`_Job`) in order; skip one whose estimate (the longest of its kind so far,
    else `first_estimate`) would end past `clock`'s deadline. A job that raises is a row saying
    so. Returns (rows, names of the skipped jobs)."""
    rows, skipped, longest = [], [], {}
    for job in jobs:
        estimate = longest.get(job.kind, first_estimate)
        if not clock.fits(estimate):
            log(f"{job.name}: skipped, {clock.elapsed():.0f} s + estimate {estimate:.0f} s > {clock.seconds:.0f} s")
            skipped.append(job.name)
            continue
        start = time.perf_counter()
        try:
            new = job.run()
        except Exception as e:  # a failed measurement is a row saying so, never the end of the benchmark
            new = [{"variant": job.name, "note": f"failed: {type(e).__name__}: {str(e)[:200]}"}]
        longest[job.kind] = max(longest.get(job.kind, 0.0), time.perf_counter() - start)
        for r in new:
            log(_row_log(r))
        rows += new
    return rows, skipped


def _runner_jobs(settings, precisions, batch, modes, kernels, torch, command_buffer, extra_batches,
                 clock) -> list[_Job]:
    """The measurements in priority order (see :func:`runner_table`)."""
    import importlib.util

    main = "mixed_bfloat16" if "mixed_bfloat16" in precisions else precisions[0]

    def runner(mode, precision, b, k=""):
        return _Job(f"{variant_name(mode, k)} {precision} b{b}", "runner",
                    lambda: [_runner_row(settings, mode, precision, b, k)])

    variants = kernel_variants(kernels)
    jobs = [runner("towers", main, batch)]
    if len(variants) > 1:
        jobs.append(runner("towers", main, batch, variants[-1]))
    if torch and importlib.util.find_spec("torch") is not None:
        jobs.append(_Job(f"torch {main} b{batch}", "torch", lambda: _torch_rows(settings, main, batch, clock)))
    jobs += [runner("towers", main, batch, k) for k in variants[1:-1] if len(variants) > 2]
    jobs += [runner(m, main, batch) for m in modes if m != "towers"]
    jobs += [runner(m, p, batch) for p in precisions if p != main for m in modes]
    if command_buffer and not is_tensorflow():  # an XLA GPU flag: the JAX engine only
        jobs.append(_Job(f"towers+xla_concurrent {main} b{batch}", "flag",
                         lambda: [_flag_row(settings, main, batch, COMMAND_BUFFER_FLAG, "xla_concurrent", clock)]))
    jobs += [runner("towers", main, b) for b in extra_batches if b != batch]
    return jobs


def _runner_row(settings, mode, precision, batch, kernels="") -> dict:
    s = dict(settings)
    layout, shape = s.pop("layout"), s.pop("input_shape")
    r = runner_speed(layout, precision, batch, None, shape, mode=mode, kernels=kernels, **s)
    return {"variant": variant_name(mode, kernels), "runner_img_s": r["runner_img_s"],
            "scanned_compute_img_s": r["compute_img_s"], "flops": r.get("flops"), "bytes": r.get("bytes"),
            "model_flops": r.get("model_flops"),
            "counted_steps": r.get("counted_steps"), "precision": precision, "batch": batch,
            **({} if r.get("flops") is not None else {"note": f"compute-only: {r['compute_engine']}"})}


def _child_env(extra_flags="") -> dict:
    import os

    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")  # this process holds most of the card
    if extra_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + extra_flags).strip()
    return env


def _child(argv, env, clock, what) -> tuple[list[dict], str]:
    """Run `argv`, return the dicts it printed after :data:`RESULT_PREFIX` and, when it failed, why."""
    import subprocess

    timeout = None if clock.seconds is None else max(1.0, clock.seconds - clock.elapsed())
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # keep what it printed before (its stdout may come back as bytes)
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        return _results(out), f"{what}: stopped at the deadline ({timeout:.0f} s)"
    results = _results(proc.stdout)
    if proc.returncode != 0 or not results:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        return results, f"{what} failed (exit {proc.returncode}): {last}"
    return results, ""


def _results(stdout: str) -> list[dict]:
    return [json.loads(line[len(RESULT_PREFIX):]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]


def _flag_row(settings, precision, batch, flags, label, clock) -> dict:
    """The towers' runner row in a child process run with XLA_FLAGS += `flags`."""
    args = dict(settings, input_shape=list(settings["input_shape"]), mode="towers", precision=precision, batch=batch)
    results, error = _child([sys.executable, "-m", "alexnet_split.bench_runner", "runner-row", json.dumps(args)],
                            _child_env(flags), clock, f"child with XLA_FLAGS {flags}")
    row = results[0] if results else {"variant": variant_name("towers", extra=label), "precision": precision,
                                      "batch": batch}
    row.update(variant=variant_name("towers", extra=label), note=error or f"child process, XLA_FLAGS {flags}")
    return row


def _torch_rows(settings, precision, batch, clock) -> list[dict]:
    """The PyTorch reference rows (:mod:`alexnet_split.torch_ref`) from a child process."""
    steps = settings["interval_steps"] * settings["intervals"]
    argv = [sys.executable, "-m", "alexnet_split.torch_ref", "--layout", settings["layout"], "--batch", str(batch),
            "--steps", str(steps), "--input-size", str(settings["input_shape"][0]), "--precision", precision]
    results, error = _child(argv, _child_env(), clock, "torch_ref")
    rows = [{"variant": r["variant"], "precision": precision, "batch": batch, "torch_img_s": r["img_s"],
             "note": r["note"]} for r in results]
    return rows + ([{"variant": "torch", "precision": precision, "batch": batch, "note": error}] if error else [])


def _add_limit(row, peaks, bandwidth):
    """The physical limit (images/s) of a row with XLA's FLOPs and bytes per image:
    1 / max(flops / matmul peak, bytes / memory bandwidth). Where XLA counted no FLOPs (a backend
    whose cost analysis skips library calls), the model's own count (spec.training_flops) stands in."""
    flops = row.get("flops") or row.get("model_flops")
    if flops and row.get("bytes") and row.get("precision") in peaks:
        row["limit_img_s"] = 1.0 / max(flops / (peaks[row["precision"]] * 1e9), row["bytes"] / (bandwidth * 1e9))


def _row_log(r) -> str:
    parts = [f"{r['variant']} {r.get('precision', '')} b{r.get('batch', '')}:"]
    for key, label in (("runner_img_s", "runner"), ("scanned_compute_img_s", "scanned"), ("torch_img_s", "torch"),
                       ("limit_img_s", "limit")):
        if r.get(key):
            parts.append(f"{label} {r[key]:,.1f} img/s")
    if r.get("runner_img_s") and r.get("scanned_compute_img_s"):
        parts.append(f"runner/scanned {r['runner_img_s'] / r['scanned_compute_img_s']:.2f}x")
    return " ".join(parts + ([f"({r['note']})"] if r.get("note") else []))


def runner_csv(rows) -> str:
    """The rows as CSV with exactly :data:`RUNNER_FIELDS`; empty where not measured."""
    def cell(v):
        return "" if v is None else f"{v:.1f}" if isinstance(v, float) else v

    return csv_text(RUNNER_FIELDS, [{k: cell(r.get(k)) for k in RUNNER_FIELDS} for r in rows])


def _num(v, fmt="{:,.1f}") -> str:
    return fmt.format(v) if v else ""


def _runner_markdown(layout, shape, rows, skipped, peaks, bandwidth, mm_n, seconds, deadline) -> str:
    header = ["variant", "precision", "batch", "runner img/s", "scanned compute img/s", "runner / scanned",
              "torch img/s", "XLA GFLOP/img", "XLA MB/img", "limit img/s", "runner / limit", "note"]
    cells = [[r["variant"], r.get("precision", ""), str(r.get("batch", "")), _num(r.get("runner_img_s")),
              _num(r.get("scanned_compute_img_s")),
              _ratio_cell(r.get("runner_img_s"), r.get("scanned_compute_img_s")), _num(r.get("torch_img_s")),
              _num(r.get("flops") and r["flops"] / 1e9, "{:.3f}"), _num(r.get("bytes") and r["bytes"] / 1e6, "{:.1f}"),
              _num(r.get("limit_img_s")), _ratio_cell(r.get("runner_img_s"), r.get("limit_img_s")),
              r.get("note", "")] for r in rows]
    counted = {r.get("counted_steps") for r in rows if r.get("counted_steps")}
    lines = [f"# The runner against the scanned compute-only loop: {layout} layout, {shape[0]}x{shape[1]} input, "
             f"{keras.backend.backend()} backend", "",
             f"Machine: {machine()}; Keras {keras.__version__}{backend_version()}; `bench.runner_table` "
             f"({seconds / 60:.1f} min" + (f", deadline {deadline:.0f} s" if deadline is not None else "")
             + precision_note() + ").",
             f"Peaks measured in this run: matmul {mm_n}x{mm_n} "
             + ", ".join(f"{p} {g:,.1f} GFLOP/s" for p, g in peaks.items())
             + f"; memory bandwidth (x + 1 on float32) {bandwidth:,.1f} GB/s.", "",
             "Runner: the device engine end to end (gather, crops, flips, PCA lighting on the device, the steps, "
             "validations). Scanned compute: the same model, loss and optimizer step as one `lax.scan` over batches "
             "already on the device, over as many steps. Limit: 1 / max(FLOPs / matmul peak, bytes / bandwidth) "
             "per image, from XLA's cost analysis of the compiled scan"
             + (f" (its loop body counted {sorted(counted)} time(s))" if counted else "") + ".", "",
             *markdown_table(header, cells, "llrrrrrrrrrl"), "", *_summary_lines(rows)]
    if skipped:
        lines += ["", f"Not measured (would have ended past the {deadline:.0f} s deadline): {', '.join(skipped)}."]
    return "\n".join(lines + [""])


def _ratio_cell(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else ""


def _summary_lines(rows) -> list[str]:
    """The runner benchmark's targets, read off the first row (towers at the first precision)."""
    first = next((r for r in rows if r.get("runner_img_s")), None)
    if first is None:
        return ["No runner row was measured."]
    at = f"{first['precision']} batch {first['batch']}"
    lines = []
    if first.get("scanned_compute_img_s"):
        lines.append(f"- {first['variant']} {at}: runner / scanned compute-only = "
                     f"**{first['runner_img_s'] / first['scanned_compute_img_s']:.2f}x** "
                     f"(target >= {TARGETS['runner_over_scanned']})")
    limit = (f" = **{first['runner_img_s'] / first['limit_img_s']:.0%}** of the physical limit "
             f"({first['limit_img_s']:,.0f} img/s)" if first.get("limit_img_s") else "")
    lines.append(f"- {first['variant']} {at} end to end: **{first['runner_img_s']:,.0f} img/s**{limit} "
                 f"(target >= {TARGETS['towers_bf16_batch128_img_s'] / 1000:g}k img/s for towers mixed_bfloat16 "
                 "batch 128)")
    same = [r for r in rows if (r.get("precision"), r.get("batch")) == (first["precision"], first["batch"])]
    for r in same:
        if r is not first and r["variant"].startswith(first["variant"] + "+") and r.get("runner_img_s"):
            speedup = r["runner_img_s"] / first["runner_img_s"]
            lines.append(f"- {r['variant']} / {first['variant']}: runner {speedup:.2f}x"
                         + (f", scanned {r['scanned_compute_img_s'] / first['scanned_compute_img_s']:.2f}x"
                            if r.get("scanned_compute_img_s") and first.get("scanned_compute_img_s") else ""))
    torch_best = max((r for r in same if r.get("torch_img_s")), key=lambda r: r["torch_img_s"], default=None)
    if torch_best:
        lines.append(f"- {first['variant']} runner / PyTorch's best ({torch_best['variant']}): "
                     f"**{first['runner_img_s'] / torch_best['torch_img_s']:.2f}x** "
                     f"(target >= {TARGETS['runner_over_pytorch']:.1f})")
    return lines


def _main(argv) -> int:
    """``python -m alexnet_split.bench_runner runner-row JSON``: one :func:`runner_speed` row in this
    process (what :func:`runner_table` runs under other XLA flags), printed after :data:`RESULT_PREFIX`."""
    if len(argv) != 2 or argv[0] != "runner-row":
        print(f"usage: python -m alexnet_split.bench_runner runner-row JSON, got {argv}", file=sys.stderr)
        return 2
    s = json.loads(argv[1])
    s["input_shape"] = tuple(s["input_shape"])
    mode, precision, batch = s.pop("mode"), s.pop("precision"), s.pop("batch")
    print(RESULT_PREFIX + json.dumps(_runner_row(s, mode, precision, batch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
