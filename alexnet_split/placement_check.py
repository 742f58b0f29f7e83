"""Proof of placement from TensorFlow's runtime, not from requested device strings.

:func:`check` trains a model for a few steps in a child process (device configuration is
per process) with ``tf.debugging.set_log_device_placement(True)`` and run metadata enabled, then
reports:

* ``variables``: the device every variable (weights, BN statistics, dropout seeds) lives on;
* ``slots``: every optimizer slot variable's device next to its weight's device;
* ``ops``: every node the placer assigned in the training step (parsed from ``placer.cc``
  lines on stderr), with its tower (``t{k}_`` block or ``update_t{k}_`` scope) and phase
  (forward, backward = ``gradients/``, update = the optimizer's ``update_<weight>`` scopes);
* ``edges``: every tensor that crossed devices in the executed training step, read from the
  ``_Send`` nodes of the partitioned graphs TensorFlow actually ran, with the block that
  produced it and the blocks that consumed it.

What the runtime logged is read by :mod:`alexnet_split.placement_log`; this module runs the
processes that log it and writes the text proof.

TensorFlow-only by nature; run it as ``alexnet-split check-placement``.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .data import NUM_CLASSES
from .placement_log import (
    ClusterReport,
    Report,
    cross_device_edges,
    parse_executor_log,
    parse_placer_log,
    short_device,
    task_of,
    tower_of,
)


def check(layout="paper", mode="towers", optimizer="sgd", input_size=67, batch=4, steps=2, n_towers=2,
          norm=None, naive=False, timeout=900) -> Report:
    """Train `steps` steps in a child process and return what TensorFlow really did.

    ``naive=True`` trains the same placed layers with Keras's stock ``Model`` and optimizer (no
    :class:`~alexnet_split.PlacedModel`): the baseline whose backward ops and slots go astray.
    """
    args = [sys.executable, "-m", "alexnet_split.placement_check", json.dumps(dict(
        layout=layout, mode=mode, optimizer=optimizer, input_size=input_size, batch=batch, steps=steps,
        n_towers=n_towers, norm=norm, naive=naive))]
    data, log = _run_process(args, "placement check child", tf_log_level="0", timeout=timeout)
    data["ops"] = parse_placer_log(log, data["blocks"])
    return Report(**data)


def _run_process(args, what, tf_log_level, timeout):
    """Run this module in a fresh process on CPUs (TensorFlow's C++ log at `tf_log_level`);
    return the JSON its last stdout line holds, and its stderr."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=tf_log_level, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _placed_blocks(model) -> list[str]:
    return [layer.name for layer in model.layers if getattr(layer, "device", None) is not None]


# --------------------------------------------------------------------------- child process


def _child(params: dict) -> dict:
    import alexnet_split as A

    devices = A.configure_devices(params["n_towers"] if params["mode"] == "towers" else 1, prefer="cpu")
    devices = devices if len(devices) > 1 else devices * 2
    import keras
    import tensorflow as tf
    from tensorflow.python.eager import context

    tf.debugging.set_log_device_placement(True)
    s = params["input_size"]
    model = A.build_model(params["layout"], params["mode"], num_classes=NUM_CLASSES, norm=params["norm"],
                          input_shape=(s, s, 3), devices=devices, n_towers=params["n_towers"])
    if params.get("naive"):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    # "sgd" is the paper recipe's optimizer: momentum with the decay through it (Section 5)
    opt = {"sgd": A.PaperSGD,  # its defaults are Section 5's lr 0.01, momentum 0.9, decay 5e-4
           "adam": lambda: keras.optimizers.Adam(1e-4)}[params["optimizer"]]()
    model.compile(opt, "categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    x, y = _synthetic(params["batch"] * params["steps"], s)
    t0 = time.perf_counter()
    context.enable_run_metadata()
    model.fit(x, y, batch_size=params["batch"], epochs=1, verbose=0, shuffle=False)
    metadata = context.export_run_metadata()
    context.disable_run_metadata()
    seconds = time.perf_counter() - t0

    blocks = _placed_blocks(model)
    variables = [{"path": v.path, "block": layer.name, "device": v.value.device}
                 for layer in model.layers if layer.name in blocks for v in layer.variables]
    return {"devices": devices, "blocks": blocks, "variables": variables, "slots": _slot_records(model),
            "edges": cross_device_edges(metadata, blocks), "seconds": seconds}


def _synthetic(n: int, size: int):
    """n uniform-noise images and one-hot labels cycling through the classes (seeded)."""
    import keras
    import numpy as np

    x = np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")
    return x, keras.utils.to_categorical(np.arange(n) % NUM_CLASSES, NUM_CLASSES)


def _slot_records(model) -> list[dict]:
    """Each optimizer slot variable's device beside its weight's."""
    return [{"path": slot.path, "device": slot.value.device, "reference": v.path,
             "reference_device": v.value.device}
            for v in model.trainable_variables for slot in _slots_of(model.optimizer, v)]


def _slots_of(optimizer, variable):
    index = optimizer._get_variable_index(variable)
    for attr in ("momentums", "_momentums", "_velocities"):
        slots = getattr(optimizer, attr, None)
        if slots:
            yield slots[index]


# --------------------------------------------------------------------------- across processes


def check_cluster(folder, layout="paper", input_size=67, batch=4, steps=3, timeout=900) -> ClusterReport:
    """Start two loopback workers with executor logging, train `steps` steps from a chief
    process with tower k on worker task k, and read back what each worker ran; then train the
    same steps in one process (two logical CPUs) and compare the weights. Both chiefs leave
    their weights in `folder` (``weights.npz``, ``single.npz``)."""
    from .loopback import LocalCluster

    folder = Path(folder)
    params = dict(layout=layout, input_size=input_size, batch=batch, steps=steps)
    with LocalCluster(2, folder, executor_log=True) as cluster:
        data = run_chief(dict(params, spec=str(cluster.spec_file), weights=str(folder / "weights.npz")), timeout)
    ops = {k: parse_executor_log(cluster.log_file(k).read_text(errors="replace"), data["blocks"]) for k in range(2)}
    run_chief(dict(params, spec=None, weights=str(folder / "single.npz")), timeout)
    return ClusterReport(data["devices"], data["blocks"], ops, data["variables"], data["slots"], data["step_seconds"],
                         compare_weights(folder / "weights.npz", folder / "single.npz"))


def compare_weights(a_file, b_file) -> dict:
    """Largest absolute and relative difference between the weights after training in two
    ``weights.npz`` files of :func:`run_chief` (which must also have started equal)."""
    import numpy as np

    with np.load(a_file) as a, np.load(b_file) as b:
        n = sum(k.startswith("after_") for k in a.files)
        start = max(float(np.max(np.abs(a[f"before_{i}"] - b[f"before_{i}"]))) for i in range(n))
        diffs = [np.abs(a[f"after_{i}"] - b[f"after_{i}"]) for i in range(n)]
        moved = [np.abs(a[f"after_{i}"] - a[f"before_{i}"]) for i in range(n)]
        return {"tensors": n, "start_max_abs": start, "max_abs": max(float(d.max()) for d in diffs),
                "max_rel": max(float(d.max() / max(np.abs(a[f"after_{i}"]).max(), 1e-30)) for i, d in enumerate(diffs)),
                "moved_max_abs": max(float(m.max()) for m in moved)}


def format_report(report: Report) -> str:
    """The text proof that `check-placement` prints and results/placement/ keeps."""
    lines = ["", "Ops the placer assigned in the training step (from TensorFlow's runtime log):",
             f"  {'tower':<6}{'phase':<10}{'ops':>6}  on device"]
    for (tower, phase), counter in sorted(report.op_counts().items()):
        where = ", ".join(f"{d}: {n}" for d, n in sorted(counter.items()))
        lines.append(f"  {tower:<6}{phase:<10}{sum(counter.values()):>6}  {where}  "
                     f"(wanted {short_device(report.devices[tower])})")
    shared = [op for op in report.ops if tower_of(op["block"]) != 0 and report.is_shared_scalar_read(op)]
    if shared:
        lines.append(f"  ({len(shared)} tower-1 update ops are reads of the optimizer's shared iteration counter; "
                     "a ReadVariableOp runs where its variable lives)")
    bad = report.misplaced_ops()
    lines.append(f"  misplaced tower ops: {len(bad)}")
    lines += [f"    {op['name']} ({op['type']}) on {short_device(op['device'])}" for op in bad[:10]]
    ok_vars = sum(v["device"].endswith(report.devices[tower_of(v["block"])].lstrip("/"))
                  for v in report.variables)
    ok_slots = sum(s["device"] == s["reference_device"] for s in report.slots)
    lines += ["", f"Variables on their tower's device: {ok_vars}/{len(report.variables)}",
              f"Optimizer slots on their weight's device: {ok_slots}/{len(report.slots)}",
              "", "Tensors that crossed devices (from the partitioned graphs TensorFlow ran):"]
    for phase, producer, consumer in report.cross_edges():
        lines.append(f"  {phase:<9} {producer or '(optimizer scalar)':<12} -> {consumer}")
    return "\n".join(lines)


def write_proof(path, command: str, text: str):
    """A proof's text file as results/placement/ keeps it: the command, then what it printed."""
    from .runlog import atomic_write

    atomic_write(path, f"$ {command}\n{text.strip()}\n")


def format_cluster(r: ClusterReport) -> str:
    lines = ["Runtime placement across processes: two `alexnet-split worker` processes on 127.0.0.1, the chief",
             "trains 3 steps with tower k on worker task k. Counts are ops each worker's own TensorFlow executor",
             "logged as run (executor.cc VLOG 1), transfers (_Send/_Recv) left out.", "",
             "devices: " + ", ".join(f"tower {k} -> {d}" for k, d in enumerate(r.devices)), "",
             f"{'tower':<6} {'phase':<9} ops run by task 0   ops run by task 1"]
    for (tower, phase), c in sorted(r.counts().items(), key=str):
        lines.append(f"{tower!s:<6} {phase:<9} {c.get(0, 0):>17}   {c.get(1, 0):>17}")
    by_task = collections.Counter(task_of(v["device"]) for v in r.variables)
    lines += ["", f"misplaced tower ops (run by the other tower's worker): {len(r.misplaced())}",
              "variables per worker task: " + ", ".join(f"task {t}: {n}" for t, n in sorted(by_task.items(), key=str)),
              f"optimizer slots on their weight's task: {sum(s['device'] == s['reference_device'] for s in r.slots)}"
              f"/{len(r.slots)}"]
    w = r.weights
    lines += ["", f"weights after the steps vs the same steps in one process (two logical CPUs): max |diff| "
              f"{w['max_abs']:.3g}, max relative {w['max_rel']:.3g} over {w['tensors']} tensors "
              f"(largest weight change {w['moved_max_abs']:.3g}; equal at the start: {w['start_max_abs'] == 0})"]
    return "\n".join(lines) + "\n"


def run_chief(params: dict, timeout=900) -> dict:
    args = [sys.executable, "-m", "alexnet_split.placement_check", "--chief", json.dumps(params)]
    return _run_process(args, "chief process", tf_log_level="2", timeout=timeout)[0]


def _chief(params: dict) -> dict:
    """Train `steps` steps of the towers model with fixed data; with ``spec`` on that cluster,
    without it on two logical CPU devices of this process. Same seed, same data either way."""

    import alexnet_split as A

    if params.get("spec"):
        from .cluster import configure_cluster

        devices = configure_cluster(params["spec"], 2, prefer="cpu")[1]
    else:
        devices = A.configure_devices(2, prefer="cpu")
    import keras
    import numpy as np

    s, b, steps = params["input_size"], params["batch"], params["steps"]
    keras.utils.set_random_seed(0)
    model = A.build_model(params["layout"], "towers", NUM_CLASSES, input_shape=(s, s, 3), devices=devices)
    model.compile(A.PaperSGD(), "categorical_crossentropy",
                  jit_compile=False)
    x, y = _synthetic(b * steps, s)
    before = [w.copy() for w in model.get_weights()]
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b])
        times.append(time.perf_counter() - t0)
    if params.get("weights"):
        np.savez(params["weights"], **{f"before_{i}": w for i, w in enumerate(before)},
                 **{f"after_{i}": w for i, w in enumerate(model.get_weights())})
    blocks = _placed_blocks(model)
    return {"devices": devices, "blocks": blocks, "step_seconds": times, "slots": _slot_records(model),
            "variables": [{"path": v.path, "device": v.value.device} for v in model.variables]}


if __name__ == "__main__":
    if sys.argv[1] == "--chief":
        print(json.dumps(_chief(json.loads(sys.argv[2]))))
    else:
        print(json.dumps(_child(json.loads(sys.argv[1]))))
