"""``alexnet-split bench``: training and inference throughput of every variant, in one run.

Variants: the towers model with its towers on two devices (``towers_2dev``) and with no
placement (``towers_1dev``), the one-device grouped-convolution network (``grouped``), and the
``merged`` and ``half`` nets; float32 and mixed_bfloat16; several batch sizes. Each figure is the
median of timed repeats after a warm-up. The same run measures the machine's matmul peak in each
precision, so achieved GFLOP/s can be read as a fraction of it, and the input pipeline's speed,
so the bottleneck is named. Ratios, not absolute times, are what to compare between runs on
shared machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from . import spec
from .config import PRECISIONS
from .data import NUM_CLASSES
from .devices import host_kind, is_tensorflow
from .kernels import KERNELS
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


def _sync(x):
    return keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.cast(x, "float32")))


def on_accelerator() -> bool:
    return not host_kind().startswith("cpu-")


def time_calls(fn, warmup: int, repeats: int, inner: int = 1) -> list[float]:
    """Seconds per call: each repeat runs `inner` calls and waits for the last result (an
    accelerator step is milliseconds, so one call per repeat would time the host's jitter)."""
    for _ in range(warmup):
        _sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner - 1):
            fn()
        _sync(fn())
        times.append((time.perf_counter() - t0) / inner)
    return times


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


def matmul_peak(precision: str, n: int = 2048, repeats: int = 5, inner: int = 1) -> float:
    """GFLOP/s of an n x n matmul in `precision` (bf16 for mixed_bfloat16), best of `repeats`."""
    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    if is_tensorflow():
        import tensorflow as tf

        mm = tf.function(lambda: tf.linalg.matmul(a, b))
    else:
        import jax

        mm = jax.jit(lambda: keras.ops.matmul(a, b))
    best = min(time_calls(mm, 2, repeats, inner))
    return 2 * n ** 3 / best / 1e9


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
    clock = _Deadline(deadline)
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
class _Deadline:
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


def _measure_variants(layout, precisions, batches, variants, devices, input_shape, peaks, clock: _Deadline, log,
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


def _measure_runners(layout, precisions, batches, variants, rows, devices, input_shape, clock: _Deadline, log,
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


def _backend_version() -> str:
    mod = sys.modules.get(keras.backend.backend())
    return f", {mod.__name__} {mod.__version__}" if mod is not None else ""


def _precision_note() -> str:
    if is_tensorflow():
        return ""
    import jax

    # XLA's DEFAULT precision runs float32 matmuls and convolutions as TF32 on NVIDIA tensor cores.
    return (f"; float32 at jax_default_matmul_precision={jax.config.jax_default_matmul_precision}, "
            "which on NVIDIA GPUs means TF32 tensor cores" if jax.devices()[0].platform == "gpu" else "")


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
             f"Keras {keras.__version__}{_backend_version()}; "
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
    lines = [f"Matmul peak ({mm_n}x{mm_n}, best of 5" + _precision_note() + "): " + peak_list,
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


# ------------------------------------------------------------------ the runner, side by side

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


def memory_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5, inner: int = 1) -> float:
    """Device-memory bandwidth in GB/s: ``x + 1`` on a float32 array of `n_bytes`, which reads and
    writes each byte once (2 * n_bytes per call), best of `repeats`."""
    x = keras.ops.zeros((n_bytes // 4,), dtype="float32")
    if is_tensorflow():
        import tensorflow as tf

        add = tf.function(lambda a: a + 1.0)
    else:
        import jax

        add = jax.jit(lambda a: a + 1.0)  # x an argument, not a constant folded into the program
    best = min(time_calls(lambda: add(x), 2, repeats, inner))
    return 2 * (n_bytes // 4) * 4 / best / 1e9


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
    clock = _Deadline(deadline)
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


def run_jobs(jobs, clock: _Deadline, first_estimate: float, log=print) -> tuple[list[dict], list[str]]:
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
    results, error = _child([sys.executable, "-m", "alexnet_split.bench", "runner-row", json.dumps(args)],
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
             f"Machine: {machine()}; Keras {keras.__version__}{_backend_version()}; `bench.runner_table` "
             f"({seconds / 60:.1f} min" + (f", deadline {deadline:.0f} s" if deadline is not None else "")
             + _precision_note() + ").",
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
    """``python -m alexnet_split.bench runner-row JSON``: one :func:`runner_speed` row in this
    process (what :func:`runner_table` runs under other XLA flags), printed after :data:`RESULT_PREFIX`."""
    if len(argv) != 2 or argv[0] != "runner-row":
        print(f"usage: python -m alexnet_split.bench runner-row JSON, got {argv}", file=sys.stderr)
        return 2
    s = json.loads(argv[1])
    s["input_shape"] = tuple(s["input_shape"])
    mode, precision, batch = s.pop("mode"), s.pop("precision"), s.pop("batch")
    print(RESULT_PREFIX + json.dumps(_runner_row(s, mode, precision, batch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
