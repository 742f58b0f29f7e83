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

TensorFlow-only by nature; run it as ``alexnet-split check-placement``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .data import NUM_CLASSES

_PLACER = re.compile(r"placer\.cc:\d+\] (\S+): \((\w+)\): (\S+)$")
FORWARD, BACKWARD, UPDATE = "forward", "backward", "update"


def tower_of(block: str | None) -> int | None:
    if block is None:
        return None
    m = re.match(r"t(\d+)_", block)
    return int(m.group(1)) if m else 0  # shared blocks live with tower 0


@dataclasses.dataclass
class Report:
    devices: list[str]
    blocks: list[str]  # placed blocks, in model order
    variables: list[dict]  # {path, block, device}
    slots: list[dict]  # {path, device, reference, reference_device}
    ops: list[dict]  # {name, type, device, block, phase}
    edges: list[dict]  # {source, source_block, phase, send_device, recv_device, consumer_blocks}
    seconds: float

    def op_counts(self) -> dict:
        """{(tower, phase): Counter(short device -> n)} over classified ops."""
        counts = collections.defaultdict(collections.Counter)
        for op in self.ops:
            if op["block"] is not None:
                counts[(tower_of(op["block"]), op["phase"])][short_device(op["device"])] += 1
        return dict(counts)

    def misplaced_ops(self) -> list[dict]:
        """Ops of tower k not on device k, excluding reads of shared optimizer scalars.

        A ReadVariableOp always runs where its resource lives; tower variables are checked to be
        on their tower's device, so a tower-scoped read on another device reads a shared scalar
        (the optimizer's iteration count or learning rate).
        """
        out = []
        for op in self.ops:
            k = tower_of(op["block"])
            if k is None or _same(op["device"], self.devices[k]):
                continue
            if not self.is_shared_scalar_read(op):
                out.append(op)
        return out

    def passed(self) -> bool:
        """Every tower op on its tower's device and every optimizer slot on its weight's."""
        return not self.misplaced_ops() and all(s["device"] == s["reference_device"] for s in self.slots)

    def is_shared_scalar_read(self, op) -> bool:
        return _shared_read(op, on_device_0=_same(op["device"], self.devices[0]))

    def cross_edges(self) -> list[tuple[str, str, str]]:
        """Distinct (phase, producer block, consumer block) of data that crossed devices."""
        out = set()
        for e in self.edges:
            for c in e["consumer_blocks"] or [None]:
                out.add((e["phase"], e["source_block"], c))
        return sorted(out, key=str)


def _shared_read(op, on_device_0: bool) -> bool:
    """A tower's update reading the optimizer's shared scalars (iteration count, learning rate):
    a ReadVariableOp runs where its variable lives, device 0. Tower variables are checked on
    their own to be on their tower's device, so such a read on device 0 is not misplaced."""
    return op["phase"] == UPDATE and op["type"] == "ReadVariableOp" and on_device_0


def short_device(device: str) -> str:
    m = re.search(r"device:([A-Z]+:\d+)$", device) or re.search(r"([A-Z]+:\d+)$", device)
    return m.group(1) if m else device


def _same(a: str, b: str) -> bool:
    return short_device(a) == short_device(b)


def match_block(name: str, blocks) -> str | None:
    """The block a node belongs to: ``.../t1_conv2_1/conv/...`` -> ``t1_conv2``."""
    best = None
    for b in blocks:
        if re.search(rf"(?:^|/){re.escape(b)}(?:_\d+)?/", name) and (best is None or len(b) > len(best)):
            best = b
    return best


def classify(name: str, blocks) -> tuple[str | None, str]:
    """(block, phase) of a graph node name."""
    if "/update_" in name:
        owners = [b for b in blocks if f"/update_{b}_" in name]
        return (max(owners, key=len) if owners else None), UPDATE
    return match_block(name, blocks), BACKWARD if _is_gradient(name) else FORWARD


def _is_gradient(name: str) -> bool:
    return "gradients/" in name or "gradient_tape/" in name  # tf.gradients / GradientTape


def parse_placer_log(stderr: str, blocks) -> list[dict]:
    ops = []
    for line in stderr.splitlines():
        m = _PLACER.search(line.strip())
        if not m:
            continue
        name, op_type, device = m.groups()
        if "StatefulPartitionedCall/" not in name:  # only the traced training step
            continue
        block, phase = classify(name, blocks)
        ops.append({"name": name, "type": op_type, "device": device, "block": block, "phase": phase})
    return ops


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
            "edges": _cross_device_edges(metadata, blocks), "seconds": seconds}


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


def _cross_device_edges(metadata, blocks) -> list[dict]:
    """Data tensors sent between devices in the partitioned training-step graph."""
    edges = []
    for fg in metadata.function_graphs:
        nodes = [n for g in fg.partition_graphs for n in g.node]
        if not any(_is_gradient(n.name) for n in nodes):
            continue  # eager ops and variable initialisers, not the training step
        consumers, recv_of = _wiring(nodes)
        edges += [_edge(n, recv_of, consumers, blocks) for n in nodes if _is_cross_device_data(n)]
    return edges


def _wiring(nodes) -> tuple[dict, dict]:
    """({node: names of the nodes that read it}, {tensor name: the _Recv node that receives it})."""
    consumers = collections.defaultdict(list)
    recv_of = {}
    for n in nodes:
        if n.op == "_Recv":
            recv_of[n.attr["tensor_name"].s.decode()] = n.name
        for i in n.input:
            consumers[i.split(":")[0].lstrip("^")].append(n.name)
    return consumers, recv_of


def _is_cross_device_data(n) -> bool:
    """A _Send of a data tensor (not a control edge) to another device."""
    if n.op != "_Send" or "/ctrl/" in n.name or not n.input or n.input[0].startswith("^"):
        return False
    if n.attr["send_device"].s.decode() == n.attr["recv_device"].s.decode():
        return False
    return not ("GroupCrossDeviceControlEdges" in n.input[0] or "/ctrl/" in n.input[0])


def _edge(n, recv_of, consumers, blocks) -> dict:
    """One sent tensor: the block and phase that produced it, the devices, and the blocks that read it."""
    source = n.input[0]
    block, phase = classify(source.split(":")[0], blocks)
    if "/optimizer/" in source or source.split("/")[1:2] in (["sgd"], ["paper_sgd"], ["adam"]):
        phase = UPDATE
    recv_name = recv_of.get(n.attr["tensor_name"].s.decode())
    return {"source": source, "source_block": block, "phase": phase, "send_device": n.attr["send_device"].s.decode(),
            "recv_device": n.attr["recv_device"].s.decode(),
            "consumer_blocks": _consumer_blocks(recv_name, consumers, blocks)}


def _consumer_blocks(node, consumers, blocks, depth=4) -> list[str]:
    """Blocks that use a received tensor, looking through unnamed glue (AddN, Identity)."""
    found, frontier = set(), [node]
    for _ in range(depth):
        nxt = []
        for name in frontier:
            for c in consumers.get(name, []):
                b = classify(c, blocks)[0]
                (found.add(b) if b else nxt.append(c))
        if found or not nxt:
            break
        frontier = nxt
    return sorted(found)


# --------------------------------------------------------------------------- across processes

# TensorFlow's executor, at VLOG 1, logs every node it runs and the device that ran it:
#   executor.cc:879] Process node: 149 step -86.. {{node t1_conv2_1/...}} = Conv2D[...](...) device: /job:...
_EXECUTED = re.compile(r"Process node: \d+ step -?\d+ \{\{node (\S+)\}\} = (\w+)\[.*\bdevice: (\S+)$")
_TRANSFER = ("_Send", "_Recv", "_HostSend", "_HostRecv")


def parse_executor_log(text: str, blocks) -> list[dict]:
    """The compute ops a worker process ran (transfers left out), with their tower and phase."""
    ops = []
    for line in text.splitlines():
        m = _EXECUTED.search(line.rstrip())
        if not m or m.group(2) in _TRANSFER or re.search(r"/_\d+$", m.group(1)):
            continue  # transfers, and the glue the graph partitioner adds to them (".../_6")
        name, op_type, device = m.groups()
        block, phase = classify(name + "/", blocks)
        if block is not None:
            ops.append({"name": name, "type": op_type, "device": device, "block": block, "phase": phase})
    return ops


def task_of(device: str) -> int | None:
    m = re.search(r"/job:worker/(?:replica:\d+/)?task:(\d+)/", device)
    return int(m.group(1)) if m else None


@dataclasses.dataclass
class ClusterReport:
    """What each worker process ran during a few training steps on a loopback cluster."""

    devices: list[str]
    blocks: list[str]
    ops: dict  # task -> [{name, type, device, block, phase}] parsed from that worker's own log
    variables: list[dict]  # {path, device}
    slots: list[dict]  # {path, device, reference_device}
    step_seconds: list[float]
    weights: dict  # the cluster's weights against the same steps in one process (compare_weights)

    def counts(self) -> dict:
        """{(tower, phase): Counter(task that ran the op -> n)}."""
        out = collections.defaultdict(collections.Counter)
        for task, ops in self.ops.items():
            for op in ops:
                out[(tower_of(op["block"]), op["phase"])][int(task)] += 1
        return dict(out)

    def misplaced(self) -> list[dict]:
        """Tower-k ops run by a worker other than tower k's (reads of the shared optimizer
        scalars excepted, as in :meth:`Report.misplaced_ops`)."""
        out = []
        for task, ops in self.ops.items():
            for op in ops:
                want = task_of(self.devices[tower_of(op["block"])])
                if int(task) != want and not _shared_read(op, on_device_0=int(task) == task_of(self.devices[0])):
                    out.append({**op, "task": int(task)})
        return out

    def passed(self, rtol=1e-5) -> bool:
        """No tower op run by the other tower's worker, and the weights equal to one process's."""
        return not self.misplaced() and self.weights["max_rel"] <= rtol


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
