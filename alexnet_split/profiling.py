"""``alexnet-split profile``: where a training step's time goes, from TensorFlow's profiler.

Traces a few steps with ``tf.profiler.experimental``, reads the XPlane file it writes, and sums
the duration of every TensorFlow op event (named ``<node>:<OpType>``) by op type, by layer and
by phase (forward, backward, optimizer update, cross-device transfer). TensorFlow only.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile
from pathlib import Path

from . import bench
from .placement_log import classify
from .runlog import atomic_write, machine
from .tables import markdown_table

_OP_EVENT = re.compile(r"^(?P<node>[^:\s]+):(?P<type>[A-Za-z_][\w]*)$")


def trace_step(layout="paper", variant="towers_2dev", precision="float32", batch=64, steps=3, devices=None,
               input_shape=None) -> dict:
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with bench.compiled_step(variant, layout, precision, batch, devices, input_shape) as (model, x, y):
        for _ in range(2):
            model.train_on_batch(x, y)
        logdir = tempfile.mkdtemp(prefix="alexnet_split_profile_")
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
    blocks = [layer.name for layer in model.layers[1:]]
    (path,) = sorted(glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"))[-1:]
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    ops = []
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                m = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if m:
                    ops.append((m.group("node"), m.group("type"), event.duration_ps / 1e9 / steps))  # ms per step
    return {"ops": ops, "blocks": blocks, "variant": variant, "precision": precision, "batch": batch,
            "steps": steps, "layout": layout}


def phase_of(node: str, op_type: str, blocks) -> str:
    if op_type in ("_Send", "_Recv", "_HostSend", "_HostRecv") or "Copy" in op_type:
        return "transfer"
    if "/update_" in node or node.startswith(("sgd/", "adam/")):
        return "update"
    return classify(node + "/", blocks)[1]


def summarize(trace: dict, top: int = 10) -> str:
    ops, blocks = trace["ops"], trace["blocks"]
    total = sum(ms for _, _, ms in ops)
    by_type, by_block, by_phase = collections.Counter(), collections.Counter(), collections.Counter()
    for node, op_type, ms in ops:
        by_type[op_type] += ms
        by_block[classify(node + "/", blocks)[0] or "(other)"] += ms
        by_phase[phase_of(node, op_type, blocks)] += ms

    def table(title, counter, n):
        return markdown_table([title, "ms per step", "share"],
                              [[k, f"{v:.1f}", f"{100 * v / total:.1f}%"] for k, v in counter.most_common(n)], "lrr")

    lines = [f"# Profile of one training step: {trace['layout']} {trace['variant']}, {trace['precision']}, "
             f"batch {trace['batch']}", "",
             f"Machine: {machine()}. Op time summed over all threads (both logical devices share the CPU's "
             f"cores), {total:.1f} ms per step, mean of {trace['steps']} traced steps after 2 warm-up steps. "
             "Command: `alexnet-split profile`.", ""]
    lines += table("phase", by_phase, 10) + [""] + table("op type", by_type, top) + [""] + table("layer", by_block, top)
    lines += ["", "Top 3 costs: " + "; ".join(f"{k} ({100 * v / total:.0f}%)" for k, v in by_type.most_common(3)), ""]
    return "\n".join(lines)


def run(layout="paper", variant="towers_2dev", precision="float32", batch=64, devices=None, out=None,
        input_size=None) -> str:
    shape = (input_size, input_size, 3) if input_size else None
    md = summarize(trace_step(layout, variant, precision, batch, devices=devices, input_shape=shape))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out), md)
    return md
