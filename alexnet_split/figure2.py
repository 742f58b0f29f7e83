"""The paper's Figure 2 (Section 3.5), drawn from TensorFlow's runtime rather than from the spec.

:func:`draw` takes the :class:`~alexnet_split.placement_check.Report` that the text proof is
printed from, so the picture and the proof cannot disagree:

* one row of blocks per device; a block sits in the row of its tower and is coloured by the
  device that the placer log says ran its ops (a block whose ops ran on two devices is drawn with
  both colours and a red border);
* one arrow per ``(phase, producer, consumer)`` of :meth:`Report.cross_edges`, the tensors read
  from the ``_Send`` nodes of the partitioned graphs TensorFlow ran: forward solid, backward
  dashed, the optimizer's shared scalars dotted. Each arrow's SVG group id is
  ``edge:<phase>:<producer>:<consumer>``, which is how the tests compare the drawing with the proof;
* the op counts per tower and phase, and per block.

Blocks of one device are joined by thin grey lines in model order: that is data that stayed on the
device, drawn for reading, not an arrow.
"""

from __future__ import annotations

import collections
import re

from .placement_check import BACKWARD, FORWARD, UPDATE, Report, short_device, tower_of
from .runlog import write_figure

COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")  # device 0, 1, ... as the runtime named them
OPTIMIZER = "optimizer"  # the pseudo-block that sends the shared scalars (iteration, learning rate)
_STYLE = {FORWARD: "-", BACKWARD: (0, (5, 3)), UPDATE: (0, (1, 2))}


def edge_id(phase: str, producer: str | None, consumer: str | None) -> str:
    return f"edge:{phase}:{producer or OPTIMIZER}:{consumer or 'unattributed'}"


def edge_ids_in_svg(text: str) -> set[str]:
    """The arrows an SVG written by :func:`draw` holds (its ``edge:`` group ids)."""
    return set(re.findall(r'id="(edge:[^"]+)"', text))


def _column(block: str) -> str:
    return re.sub(r"^t\d+_", "", block)


def _block_devices(report: Report) -> dict[str, collections.Counter]:
    """{block: Counter(device index -> ops)} from the placer log; the optimizer's scalar reads that
    tower-1 updates make on device 0 count for the optimizer, as the proof counts them."""
    index = {short_device(d): k for k, d in enumerate(report.devices)}
    out = collections.defaultdict(collections.Counter)
    for op in report.ops:
        if op["block"] is None or (tower_of(op["block"]) != 0 and report.is_shared_scalar_read(op)):
            continue
        out[op["block"]][index.get(short_device(op["device"]), -1)] += 1
    return out


def draw(report: Report, path, title: str | None = None) -> list[str]:
    """Write the figure to `path` (.svg or .png, by suffix); returns the edge ids drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    plt.rcParams["svg.hashsalt"] = "alexnet_split"  # stable ids: the SVG regenerates byte for byte
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable
    ran_on = _block_devices(report)
    phases = collections.defaultdict(collections.Counter)
    for op in report.ops:
        if op["block"] in ran_on:
            phases[op["block"]][op["phase"]] += 1
    columns = []
    for b in report.blocks:
        if _column(b) not in columns:
            columns.append(_column(b))
    rows = len(report.devices)

    def row_of(block):
        if re.match(r"t\d+_", block):
            return tower_of(block)
        return max(ran_on[block], key=ran_on[block].get) if ran_on.get(block) else 0

    w, h, dx, dy = 1.25, 0.95, 1.75, 2.6
    pos = {b: (columns.index(_column(b)) * dx, -row_of(b) * dy) for b in report.blocks}
    pos[OPTIMIZER] = (len(columns) * dx, 0.0)

    fig, ax = plt.subplots(figsize=(1.25 * len(columns) + 3, 2.2 * rows + 2.4))
    for k, device in enumerate(report.devices):
        ax.text(-0.75 * dx, -k * dy, f"device {k}\n{short_device(device)}", ha="right", va="center",
                fontsize=10, color=COLOURS[k % len(COLOURS)], weight="bold")
    for k in range(rows):  # same-device flow, in model order
        chain = [b for b in report.blocks if row_of(b) == k]
        for a, b in zip(chain, chain[1:]):
            (xa, ya), (xb, yb) = pos[a], pos[b]
            ax.plot([xa + w / 2, xb - w / 2], [ya, yb], color="#bbbbbb", lw=1, zorder=1)
    for b in report.blocks:
        x, y = pos[b]
        devices = sorted(ran_on.get(b, {}), key=lambda d: -ran_on[b][d]) or [row_of(b)]
        for i, d in enumerate(devices):  # one band per device that ran the block's ops
            ax.add_patch(Rectangle((x - w / 2 + i * w / len(devices), y - h / 2), w / len(devices), h,
                                   facecolor=COLOURS[d % len(COLOURS)] if d >= 0 else "#999999", alpha=0.85,
                                   zorder=2))
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, fill=False, zorder=3,
                               edgecolor="red" if len(devices) > 1 else "black", lw=2 if len(devices) > 1 else 0.8))
        c = phases.get(b, {})
        ax.text(x, y + 0.14, b, ha="center", va="center", fontsize=8.5 if len(b) < 9 else 7, color="white",
                weight="bold", zorder=4)
        ax.text(x, y - 0.2, f"f {c.get(FORWARD, 0)}  b {c.get(BACKWARD, 0)}\nu {c.get(UPDATE, 0)}", ha="center",
                va="center", fontsize=6.5, color="white", zorder=4)
    edges = report.cross_edges()
    if any(p is None for _, p, _ in edges):
        x, y = pos[OPTIMIZER]
        ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=COLOURS[0], alpha=0.35, zorder=2))
        ax.text(x, y, "optimizer\nscalars", ha="center", va="center", fontsize=8, zorder=4)
    drawn = []
    for phase, producer, consumer in edges:
        src = pos.get(producer or OPTIMIZER)
        dst = pos.get(consumer) if consumer else None
        if src is None or dst is None:  # an end the blocks cannot name: shown at the row's end
            dst = dst or (pos[OPTIMIZER][0], -dy * (1 - row_of(producer or OPTIMIZER)))
            src = src or (pos[OPTIMIZER][0], 0.0)
        (x0, y0), (x1, y1) = src, dst
        up = 1 if y1 > y0 else -1
        arrow = FancyArrowPatch((x0, y0 + up * h / 2), (x1, y1 - up * h / 2), arrowstyle="-|>", mutation_scale=11,
                                connectionstyle=f"arc3,rad={0.12 if phase != UPDATE else 0.05}",
                                linestyle=_STYLE.get(phase, "-"), lw=1.4 if phase != UPDATE else 0.8,
                                alpha=1.0 if phase != UPDATE else 0.6,
                                color=COLOURS[row_of(producer or OPTIMIZER) % len(COLOURS)], zorder=5)
        arrow.set_gid(edge_id(phase, producer, consumer))
        ax.add_patch(arrow)
        drawn.append(arrow.get_gid())

    counts = report.op_counts()
    lines = []
    for k in range(rows):
        per = [f"{phase} {sum(counts.get((k, phase), {}).values())}" for phase in (FORWARD, BACKWARD, UPDATE)]
        where = sorted({d for phase in (FORWARD, BACKWARD, UPDATE) for d in counts.get((k, phase), {})})
        lines.append(f"tower {k}: " + ", ".join(per) + f" ops, ran on {' + '.join(where) or '-'}")
    n_bad = len(report.misplaced_ops())
    ok_slots = sum(s["device"] == s["reference_device"] for s in report.slots)
    lines += [f"misplaced tower ops: {n_bad};  optimizer slots on their weight's device: "
              f"{ok_slots}/{len(report.slots)}",
              f"{len(drawn)} arrows = the tensors that crossed devices in the partitioned graphs: solid forward, "
              "dashed backward (gradients), dotted the optimizer's shared scalars",
              "block labels: ops per phase (f forward, b backward, u update); colour: the device that ran them"]
    ax.text(-0.75 * dx, -(rows - 1) * dy - 1.2, "\n".join(lines), ha="left", va="top", fontsize=8.5,
            family="monospace")
    ax.set_title(title or "Figure 2 from TensorFlow's runtime", fontsize=11)
    ax.set_xlim(-1.9 * dx, (len(columns) + 0.6) * dx)
    ax.set_ylim(-(rows - 1) * dy - 1.2 - 0.45 * (rows + 2), 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    write_figure(fig, path, bbox_inches="tight", dpi=130)
    return drawn
