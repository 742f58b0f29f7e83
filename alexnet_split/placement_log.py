"""What TensorFlow's runtime logged about placement, read into facts and judged: the placer's
``placer.cc`` lines into ops with their tower and phase, the partitioned graphs' ``_Send`` nodes into
the tensors that crossed devices, a worker's executor log into the ops it ran; :class:`Report` and
:class:`ClusterReport` hold them and say what is misplaced. Pure parsing, no TensorFlow import:
:mod:`alexnet_split.placement_check` runs the processes whose logs these read.
"""

from __future__ import annotations

import collections
import dataclasses
import re

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

# --------------------------------------------------------------------------- the partitioned graphs


def cross_device_edges(metadata, blocks) -> list[dict]:
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
