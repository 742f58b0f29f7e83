"""``alexnet-split bench``: training and inference throughput of every variant, in one run, and its
tables; and ``alexnet-split bench-cluster``: a step on loopback worker processes against one process.

Variants: the towers model with its towers on two devices (``towers_2dev``) and with no
placement (``towers_1dev``), the one-device grouped-convolution network (``grouped``), and the
``merged`` and ``half`` nets; float32 and mixed_bfloat16; several batch sizes. Each figure is the
median of timed repeats after a warm-up. The same run measures the machine's matmul peak in each
precision (:mod:`alexnet_split.bench_peak`), so achieved GFLOP/s can be read as a fraction of it,
and the input pipeline's speed, so the bottleneck is named. Ratios, not absolute times, are what to
compare between runs on shared machines. :func:`runner_speed` times the engine ``train`` uses
against its compute-only steps; ``bench --runner`` tabulates it per mode, precision and kernel
option (:mod:`alexnet_split.bench_runner`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from . import spec
from .bench_peak import matmul_peak, precision_note, time_calls
from .config import PRECISIONS
from .data import NUM_CLASSES
from .devices import host_kind, is_tensorflow
from .runlog import atomic_write, machine
from .tables import csv_text, markdown_table

VARIANTS = spec.VARIANTS
# What the printed ratios are read against, in one place (docs/performance.md gives the reasons):
# placed towers cost little over one device; bf16 doubles CPU/GPU matmul throughput; the merged
# float32 step reaches half the matmul peak; the device engine's runner keeps 90% of its
# compute-only scan and matches PyTorch; towers bf16 at batch 128 trains 35k img/s on an H200.
TARGETS = {"two_devices_over_one": 0.95, "bf16_over_float32": 2.0, "merged_float32_peak_share": 0.5,
           "runner_over_scanned": 0.9, "runner_over_pytorch": 1.0, "towers_bf16_batch128_img_s": 35_000}


def build_variant(variant, layout, devices, input_shape=None, num_classes=NUM_CLASSES):
    from .models import build_grouped_model, build_model

    if variant == "towers_2dev":
        return build_model(layout, "towers", num_classes, input_shape=input_shape, devices=devices)
    if variant == "towers_1dev":
        return build_model(layout, "towers", num_classes, input_shape=input_shape)
    if variant == "grouped":
        return build_grouped_model(layout, num_classes, input_shape=input_shape)
    return build_model(layout, variant, num_classes, input_shape=input_shape)


def on_accelerator() -> bool:
    return not host_kind().startswith("cpu-")


def _one_hot(labels) -> np.ndarray:
    from .pipeline import one_hot

    return one_hot(labels, NUM_CLASSES)


@contextlib.contextmanager
def compiled_step(variant, layout, precision, batch, devices, input_shape=None):
    """A fresh `variant` model compiled with SGD momentum under the `precision` policy (float32
    again afterwards), and one synthetic batch (x, y): what the benchmark and the profiler time."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_variant(variant, layout, devices, input_shape)
        # TF: no XLA (placed towers run op by op on their devices); JAX: jit, as training does.
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "categorical_crossentropy",
                      jit_compile=False if is_tensorflow() else "auto")
        shape = model.input_shape[1:]
        rng = np.random.default_rng(0)
        x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (batch,) + shape).astype("float32"))
        y = keras.ops.convert_to_tensor(_one_hot(rng.integers(0, NUM_CLASSES, batch)))
        yield model, x, y
    finally:
        keras.mixed_precision.set_global_policy("float32")


def measure(variant, layout, precision, batch, devices, warmup=1, repeats=3, input_shape=None, inner=1) -> dict:
    with compiled_step(variant, layout, precision, batch, devices, input_shape) as (model, x, y):
        train = time_calls(lambda: model.train_on_batch(x, y, return_dict=False), warmup + 1, repeats, inner)
        infer = time_calls(lambda: model.predict_on_batch(x), warmup, repeats, inner)
    mode = "towers" if variant.startswith("towers") or variant == "grouped" else variant
    arch = spec.get_layout(layout)
    return {"variant": variant, "precision": precision, "batch": batch,
            "train_img_s": batch / statistics.median(train), "infer_img_s": batch / statistics.median(infer),
            "train_flops": spec.training_flops(arch, mode, 2, input_shape),
            "forward_flops": sum(spec.layer_flops(arch, mode, 2, input_shape).values()),
            "repeats": repeats}


def pipeline_speed(batch, crop, size=256, pca=0.1, n_images=512) -> float:
    from .pipeline import TrainBatches, throughput

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, n_images)
    return throughput(TrainBatches(images, labels, batch, crop, NUM_CLASSES, seed=0, pca_sigma=pca))


def _recipe(precision, batch, kernels=""):
    """The paper recipe at `batch` and `precision`, with the kernel options `kernels` (comma list of
    :data:`alexnet_split.kernels.KERNELS`; "" the plain Keras layers)."""
    from . import config

    return config.get_recipe("paper", batch_size=batch, precision=precision, kernels=kernels)


def runner_speed(layout, precision, batch, devices, input_shape=None, interval_steps=4, intervals=2,
                 n_val=64, mode="towers", kernels="") -> dict:
    """End-to-end training images/s of the run engine that `train` uses on this backend, on
    synthetic uint8 images 29 px larger than the input (256 for 227): augmentation (crops, flips,
    PCA lighting), the steps, and a validation after every `interval_steps` steps, after one
    warm-up interval; and the same model's compute-only rate over as many steps. The model, loss
    and optimizer are ``train.new_model``'s (`mode`, kernel options `kernels`). JAX: the device
    engine (:mod:`alexnet_split.engine_device`) against the same step scanned over batches already
    on the device (:class:`alexnet_split.bench_device.ScannedCompute`), plus XLA's FLOPs and bytes
    per image. TensorFlow: the ``fit`` engine's call (``engine_fit.fit_intervals``, towers placed
    on `devices`) against ``train_on_batch`` on one ready batch."""
    from . import engine_fit, train
    from .pipeline import TrainBatches

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        shape = input_shape or spec.get_layout(layout).input_shape
        crop = shape[0]
        rng = np.random.default_rng(0)
        n = max(2 * batch, n_val)
        images = rng.integers(0, 256, (n, crop + 29, crop + 29, 3), dtype=np.uint8)
        labels = rng.integers(0, NUM_CLASSES, n)
        val_x, val_y = images[:n_val, 14:14 + crop, 14:14 + crop], labels[:n_val]
        tf = is_tensorflow()
        model = train.new_model(layout, mode, crop, devices if tf else None, _recipe(precision, batch, kernels))
        out = {"precision": precision, "batch": batch, "mode": mode, "kernels": kernels,
               "interval_steps": interval_steps, "intervals": intervals, "n_val": n_val}
        if tf:
            batches = TrainBatches(images, labels, batch, crop, NUM_CLASSES, 0, pca_sigma=0.1,
                                   interval_steps=interval_steps)
            val = (val_x.astype("float32"), _one_hot(val_y))
            engine_fit.fit_intervals(model, batches, val, 1, 0)
            t0 = time.perf_counter()
            engine_fit.fit_intervals(model, batches, val, 1 + intervals, 1)
            out["runner_img_s"] = intervals * interval_steps * batch / (time.perf_counter() - t0)
            # as many compute-only steps right after, on one ready batch, in the same process
            x = keras.ops.convert_to_tensor(images[:batch, :crop, :crop].astype("float32"))
            y = keras.ops.convert_to_tensor(_one_hot(labels[:batch]))
            compute = time_calls(lambda: model.train_on_batch(x, y, return_dict=False), 1, 1,
                                 intervals * interval_steps)[0]
            out.update(engine="fit (NumPy pipeline)", compute_engine="train_on_batch", compute_img_s=batch / compute)
        else:
            from . import bench_device, engine_device

            loop = engine_device.DeviceLoop(model, images, labels, val_x, val_y, batch, crop, 0, pca_sigma=0.1,
                                            interval_steps=interval_steps)
            out["runner_img_s"] = engine_device.images_per_second(loop, intervals)
            scanned = bench_device.ScannedCompute(loop, interval_steps)
            model_flops = spec.training_flops(spec.get_layout(layout), mode, 2, shape)
            out.update(engine="device (jitted JAX loop)", compute_engine="lax.scan on ready batches",
                       compute_img_s=scanned.images_per_second(intervals), model_flops=model_flops,
                       **scanned.cost_per_image(model_flops))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return out


def run(layout="paper", quick=False, batches=None, precisions=PRECISIONS, variants=None, out_dir="results/bench",
        input_size=None, devices=None, log=print, deadline=None) -> str:
    """Measure, write ``<out_dir>/<host-kind>[-quick].md`` and ``.csv``, return the markdown.

    `deadline` (seconds from the start): launch no new measurement after it; the tables say
    which were skipped. For leased machines, so a slow run still leaves what it measured."""
    accel = on_accelerator()
    batches = batches or _default_batches(quick, accel)
    variants = variants or _default_variants()
    input_shape = (input_size, input_size, 3) if input_size else None
    shape = input_shape or spec.get_layout(layout).input_shape
    clock = Deadline(deadline)
    # an accelerator step is milliseconds: time 10 calls per repeat, on a matmul big enough to fill its tensor cores
    inner, mm_n = (10, 8192) if accel else (1, 2048)
    peaks = _matmul_peaks(precisions, mm_n, inner, log)
    rows, skipped = _measure_variants(layout, precisions, batches, variants, devices, input_shape, peaks, clock, log,
                                      repeats=3 if quick else 5, inner=inner)
    pipe = pipeline_speed(max(batches), shape[0])
    runners = _measure_runners(layout, precisions, batches, variants, rows, devices, input_shape, clock, log,
                               accel=accel, quick=quick)
    md = _markdown(layout, shape, rows, peaks, pipe, batches, precisions, quick, clock.elapsed(), mm_n, inner,
                   runners)
    if skipped:
        md += f"\nNot measured (past the run's {deadline:.0f} s deadline): {', '.join(skipped)}.\n"
    _write_tables(Path(out_dir), host_kind() + ("-quick" if quick else ""), md, rows)
    return md


def _default_batches(quick, accel) -> tuple[int, ...]:
    return (64,) if quick else (64, 128, 256) if accel else (32, 64, 128)


def _default_variants() -> tuple[str, ...]:
    """Every variant; without TensorFlow, none with placed towers."""
    return VARIANTS if is_tensorflow() else tuple(v for v in VARIANTS if v != "towers_2dev")


def _matmul_peaks(precisions, mm_n, inner, log) -> dict:
    peaks = {p: matmul_peak(p, mm_n, inner=inner) for p in precisions}
    for p, g in peaks.items():
        log(f"matmul peak {p}: {g:,.1f} GFLOP/s")
    return peaks


def _write_tables(out: Path, name: str, md: str, rows):
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{name}.md", md)
    atomic_write(out / f"{name}.csv", _csv(rows))


@dataclasses.dataclass
class Deadline:
    """`seconds` after `start` no new measurement is launched (None: no deadline)."""

    seconds: float | None
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def passed(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds

    def fits(self, estimate: float) -> bool:
        """Whether something taking `estimate` seconds, started now, ends before the deadline."""
        return self.seconds is None or self.elapsed() + estimate <= self.seconds


def _measure_variants(layout, precisions, batches, variants, devices, input_shape, peaks, clock: Deadline, log,
                      repeats, inner) -> tuple[list[dict], list[str]]:
    """One row per precision x batch x variant (:func:`measure`, plus GFLOP/s and % of the matmul
    peak), and the ones skipped past the deadline."""
    rows, skipped = [], []
    for precision in precisions:
        for batch in batches:
            for variant in variants:
                if clock.passed():
                    log(f"{precision:>14} batch {batch:>3} {variant:<12} skipped: past the {clock.seconds:.0f} s "
                        "deadline")
                    skipped.append(f"{precision}/{batch}/{variant}")
                    continue
                r = measure(variant, layout, precision, batch, devices, repeats=repeats, input_shape=input_shape,
                            inner=inner)
                r["gflops"] = r["train_img_s"] * r["train_flops"] / 1e9
                r["pct_peak"] = 100 * r["gflops"] / peaks[precision]
                rows.append(r)
                log(f"{precision:>14} batch {batch:>3} {variant:<12} train {r['train_img_s']:7.1f} img/s  "
                    f"infer {r['infer_img_s']:7.1f} img/s  {r['gflops']:6.1f} GFLOP/s ({r['pct_peak']:.0f}% of peak)")
    return rows, skipped


def _measure_runners(layout, precisions, batches, variants, rows, devices, input_shape, clock: Deadline, log,
                     accel, quick) -> list[dict]:
    """The runner rows: the engine `train` uses, end to end (:func:`runner_speed`), against the same
    model's compute-only step rate measured in `rows` (same precision and batch)."""
    runner_batch = 128 if 128 in batches else max(batches)
    runner_variant = "towers_2dev" if "towers_2dev" in variants and is_tensorflow() else "towers_1dev"
    runners = []
    for precision in precisions:
        if clock.passed():
            log(f"{precision:>14} runner skipped: past the {clock.seconds:.0f} s deadline")
            continue
        if not any((r["variant"], r["precision"], r["batch"]) == (runner_variant, precision, runner_batch)
                   for r in rows):
            continue
        r = runner_speed(layout, precision, runner_batch, devices, input_shape,
                         interval_steps=50 if accel else (4 if quick else 8), intervals=3 if accel else 2,
                         n_val=340 if accel else 64)
        r.update(variant=runner_variant, ratio=r["runner_img_s"] / r["compute_img_s"])
        runners.append(r)
        log(f"{precision:>14} runner {r['engine']}: {r['runner_img_s']:7.1f} img/s = {r['ratio']:.2f}x "
            f"{r['compute_engine']}")
    return runners


def backend_version() -> str:
    mod = sys.modules.get(keras.backend.backend())
    return f", {mod.__name__} {mod.__version__}" if mod is not None else ""


def _ratio(rows, precision, batch, a, b):
    x = {r["variant"]: r for r in rows if r["precision"] == precision and r["batch"] == batch}
    return x[a]["train_img_s"] / x[b]["train_img_s"] if a in x and b in x else None


def _markdown(layout, shape, rows, peaks, pipe, batches, precisions, quick, seconds, mm_n=2048, inner=1,
              runners=()) -> str:
    arch = spec.get_layout(layout)
    lines = [*_measured_lines(layout, shape, rows, quick, seconds, inner), "",
             *_flops_lines(arch, shape, peaks, mm_n), "", "Ratios in this run (training images/s):", "",
             *_placement_ratio_lines(rows, precisions, batches)]
    if len(precisions) == 2:
        lines += _precision_ratio_lines(rows, batches)
    lines += _peak_share_lines(rows)
    if not any(r["variant"] == "towers_2dev" for r in rows):  # no placed towers measured (JAX)
        lines.append("")
    else:
        lines += ["", *_cross_device_lines(arch, shape, batches)]
    if runners:
        lines += ["", *_runner_lines(runners)]
    lines += ["", _pipeline_line(pipe, rows, shape), ""]
    return "\n".join(lines)


def _measured_lines(layout, shape, rows, quick, seconds, inner) -> list[str]:
    """The title, the machine and command, and the table of every measured variant."""
    lines = [f"# Benchmark: {layout} layout, {shape[0]}x{shape[1]} input, {keras.backend.backend()} backend",
             "", f"Machine: {machine()}; {platform.system()}; "
             f"Keras {keras.__version__}{backend_version()}; "
             f"command `alexnet-split bench{' --quick' if quick else ''}` ({seconds / 60:.1f} min).",
             "Median of timed repeats after warm-up"
             + (f" (each repeat times {inner} consecutive calls)" if inner > 1 else "")
             + "; train = one SGD-momentum step (`train_on_batch`), infer = `predict_on_batch`.", ""]
    header = ["precision", "batch", "variant", "train img/s", "infer img/s", "train GFLOP/s", "% of matmul peak"]
    cells = [[r["precision"], str(r["batch"]), r["variant"], f"{r['train_img_s']:.1f}", f"{r['infer_img_s']:.1f}",
              f"{r['gflops']:.1f}", f"{r['pct_peak']:.0f}%"] for r in rows]
    return lines + markdown_table(header, cells, "lrlrrrr")


def _flops_lines(arch, shape, peaks, mm_n) -> list[str]:
    """The matmul peaks, and the FLOPs per image of each mode."""
    peak_list = ", ".join(f"{p} {g:,.1f} GFLOP/s" for p, g in peaks.items())
    lines = [f"Matmul peak ({mm_n}x{mm_n}, best of 5" + precision_note() + "): " + peak_list,
             "", "FLOPs per image (multiply-add = 2; training = forward + weight and input gradients):", ""]
    cells = [[mode, f"{sum(spec.layer_flops(arch, mode, 2, shape).values()) / 1e9:.3f}",
              f"{spec.training_flops(arch, mode, 2, shape) / 1e9:.3f}"] for mode in ("towers", "merged", "half")]
    return lines + markdown_table(["model", "forward GFLOPs", "training GFLOPs"], cells, "lrr")


def _placement_ratio_lines(rows, precisions, batches) -> list[str]:
    """Towers on 2 devices against towers on 1 and against the grouped convolution."""
    lines = []
    for precision in precisions:
        for batch in batches:
            r = _ratio(rows, precision, batch, "towers_2dev", "towers_1dev")
            g = _ratio(rows, precision, batch, "towers_2dev", "grouped")
            if r is not None:
                lines.append(f"- {precision}, batch {batch}: towers on 2 devices / on 1 device = **{r:.2f}x** "
                             f"(target >= {TARGETS['two_devices_over_one']}); / grouped conv = {g:.2f}x")
    return lines


def _precision_ratio_lines(rows, batches) -> list[str]:
    """mixed_bfloat16 against float32, per batch and variant (towers_1dev only without placed towers)."""
    lines = []
    placed = any(r["variant"] == "towers_2dev" for r in rows)
    for batch in batches:
        for variant in ("towers_2dev", "towers_1dev", "merged", "half"):
            if variant == "towers_1dev" and placed:
                continue
            x = {r["precision"]: r for r in rows if r["batch"] == batch and r["variant"] == variant}
            if len(x) == 2:
                lines.append(f"- batch {batch}, {variant}: mixed_bfloat16 / float32 = "
                             f"**{x['mixed_bfloat16']['train_img_s'] / x['float32']['train_img_s']:.2f}x** "
                             f"(target >= {TARGETS['bf16_over_float32']:g})")
    return lines


def _peak_share_lines(rows) -> list[str]:
    merged = [r for r in rows if r["variant"] == "merged" and r["precision"] == "float32"]
    if not merged:
        return []
    best = max(merged, key=lambda r: r["pct_peak"])
    return [f"- merged float32 training reaches **{best['pct_peak']:.0f}%** of the float32 matmul peak "
            f"(batch {best['batch']}; target >= {TARGETS['merged_float32_peak_share']:.0%})"]


def _cross_device_lines(arch, shape, batches) -> list[str]:
    """The table of bytes that cross devices per training step, per connection and batch."""
    per_batch = [spec.cross_device_bytes(arch, 2, shape, batch=b) for b in batches]
    header = ["connection"] + [f"batch {b} fwd / bwd (MB)" for b in batches]
    cells = [[name] + [f"{p[i][1] / 1e6:.1f} / {p[i][2] / 1e6:.1f}" for p in per_batch]
             for i, (name, _, _) in enumerate(per_batch[0])]
    return ["Bytes crossing devices per training step (towers_2dev, float32 activations; bf16 halves them):",
            "", *markdown_table(header, cells, "l" + "r" * len(batches))]


def _pipeline_line(pipe, rows, shape) -> str:
    """The input pipeline's speed against the fastest training, and whether it is the bottleneck."""
    fastest = max(r["train_img_s"] for r in rows)
    verdict = ("the input pipeline is not the bottleneck" if pipe >= 5 * fastest else
               "WARNING: the input pipeline (NumPy crops/flips/PCA in one thread) is the bottleneck")
    return (f"Input pipeline (random {shape[0]} crops of 256x256 uint8 images, flips, PCA lighting): "
            f"{pipe:,.0f} images/s = {pipe / fastest:.3g}x the fastest training above: {verdict}.")


def _runner_lines(runners) -> list[str]:
    r0 = runners[0]
    lines = [f"The runner, end to end (`{r0['variant']}` model, engine `{r0['engine']}`): random crops, "
             f"flips and PCA lighting of synthetic uint8 images, training steps and a validation of "
             f"{r0['n_val']} images every {r0['interval_steps']} steps, timed over {r0['intervals']} intervals "
             f"after a warm-up one; against as many compute-only steps of the same model ({r0['compute_engine']}), "
             "timed right after in the same process:",
             ""]
    cells = [[r["precision"], str(r["batch"]), f"{r['runner_img_s']:.1f}", f"{r['compute_img_s']:.1f}",
              f"**{r['ratio']:.2f}x**"] for r in runners]
    header = ["precision", "batch", "runner img/s", "compute-only img/s", "runner / compute-only"]
    return lines + markdown_table(header, cells, "lrrrr")


def _csv(rows) -> str:
    fields = ["variant", "precision", "batch", "train_img_s", "infer_img_s", "forward_flops", "train_flops", "gflops",
              "pct_peak", "repeats"]
    return csv_text(fields, [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])


def cluster_step_ratio(layout="paper", input_size=None, batch=32, steps=8, rounds=2, out_dir="results/bench",
                       log=print) -> str:
    """Median training-step time with the towers on two loopback worker processes (gRPC) over
    the same steps with the towers on two logical devices of one process; rounds alternate the
    two so that the machine's drift hits both. TensorFlow only."""

    from . import placement_check as pc
    from .loopback import LocalCluster

    size = input_size or spec.get_layout(layout).input_shape[0]
    params = dict(layout=layout, input_size=size, batch=batch, steps=steps)
    times = {"in-process": [], "loopback gRPC": []}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alexnet_split_cluster_bench_") as tmp, LocalCluster(2, tmp) as cluster:
        for r in range(rounds):
            for how, spec_file in (("in-process", None), ("loopback gRPC", str(cluster.spec_file))):
                t = pc.run_chief(dict(params, spec=spec_file))["step_seconds"][2:]  # 2 warm-up steps
                times[how] += t
                log(f"round {r + 1}: {how:<14} median step {statistics.median(t) * 1e3:8.1f} ms")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["loopback gRPC"] / med["in-process"]
    arch = spec.get_layout(layout)
    mb = sum(f + b for _, f, b in spec.cross_device_bytes(arch, 2, (size, size, 3), batch=batch)) / 1e6
    md = "\n".join([
        "# Towers on two worker processes (loopback gRPC) vs two devices of one process", "",
        f"Machine: {machine()}; TensorFlow; {layout} layout, {size}x{size} input, batch {batch}, float32, "
        f"SGD momentum; command `alexnet-split bench-cluster` ({(time.perf_counter() - t_start) / 60:.1f} min).",
        f"{rounds} alternating rounds of {steps} steps each (first 2 of each run are warm-up); the chief, both "
        "workers and the in-process run share this machine's cores.", "",
        *markdown_table(["placement", "median step (ms)", "images/s", "steps timed"],
                        [[k, f"{m * 1e3:.1f}", f"{batch / m:.1f}", str(len(times[k]))] for k, m in med.items()],
                        "lrrr"), "",
        f"Step time over loopback gRPC / in-process: **{ratio:.2f}x**. Per step {mb:.1f} MB cross between the "
        "towers' devices (activations and their gradients at the cross-connections, and the input images; "
        "`alexnet-split bench` lists them): in one process a copy, across processes a gRPC message.", ""])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"cluster-loopback-{host_kind()}.md", md)
    return md
