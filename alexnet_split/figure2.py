"""The paper's Figure 2 (Section 3.5), drawn from TensorFlow's runtime rather than from the spec.

:func:`draw` takes the :class:`~alexnet_split.placement_log.Report` that the text proof is
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
import dataclasses
import itertools
import re

from .placement_log import BACKWARD, FORWARD, UPDATE, Report, short_device, tower_of
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


# Block size and spacing in data units: width, height, column step, device-row step
_W, _H, _DX, _DY = 1.25, 0.95, 1.75, 2.6
# Stable SVG ids (the SVG regenerates byte for byte) and text kept as text (small, searchable)
_SVG_RC = {"svg.hashsalt": "alexnet_split", "svg.fonttype": "none"}


@dataclasses.dataclass
class _Layout:
    """Where each block sits: its column (layer) and row (device), and what ran it."""

    ran_on: dict  # {block: Counter(device index -> ops)}
    phases: dict  # {block: Counter(phase -> ops)}
    columns: list[str]
    rows: int
    pos: dict  # {block: (x, y)}, plus the optimizer's pseudo-block

    def row_of(self, block: str) -> int:
        """A tower block's row is its tower; a shared block sits with the device that ran most of its ops."""
        if re.match(r"t\d+_", block):
            return tower_of(block)
        return max(self.ran_on[block], key=self.ran_on[block].get) if self.ran_on.get(block) else 0


def _layout(report: Report) -> _Layout:
    ran_on = _block_devices(report)
    phases = collections.defaultdict(collections.Counter)
    for op in report.ops:
        if op["block"] in ran_on:
            phases[op["block"]][op["phase"]] += 1
    columns = list(dict.fromkeys(_column(b) for b in report.blocks))
    layout = _Layout(ran_on, phases, columns, len(report.devices), {})
    layout.pos = {b: (columns.index(_column(b)) * _DX, -layout.row_of(b) * _DY) for b in report.blocks}
    layout.pos[OPTIMIZER] = (len(columns) * _DX, 0.0)
    return layout


def draw(report: Report, path, title: str | None = None) -> list[str]:
    """Write the figure to `path` (.svg or .png, by suffix); returns the edge ids drawn."""
    import matplotlib
    from matplotlib.figure import Figure

    layout = _layout(report)
    fig = Figure(figsize=(1.25 * len(layout.columns) + 3, 2.2 * layout.rows + 2.4))
    ax = fig.subplots()
    _draw_device_labels(ax, report)
    _draw_same_device_lines(ax, report, layout)
    for b in report.blocks:
        _draw_block(ax, b, layout)
    edges = report.cross_edges()
    if any(p is None for _, p, _ in edges):
        _draw_optimizer(ax, layout)
    drawn = [_draw_arrow(ax, edge, layout) for edge in edges]
    _draw_counts(ax, report, layout, len(drawn))
    ax.set_title(title or "Figure 2 from TensorFlow's runtime", fontsize=11)
    ax.set_xlim(-1.9 * _DX, (len(layout.columns) + 0.6) * _DX)
    ax.set_ylim(-(layout.rows - 1) * _DY - 1.2 - 0.45 * (layout.rows + 2), 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    with matplotlib.rc_context(_SVG_RC):
        write_figure(fig, path, bbox_inches="tight", dpi=130)
    return drawn


def _draw_device_labels(ax, report: Report):
    for k, device in enumerate(report.devices):
        ax.text(-0.75 * _DX, -k * _DY, f"device {k}\n{short_device(device)}", ha="right", va="center",
                fontsize=10, color=COLOURS[k % len(COLOURS)], weight="bold")


def _draw_same_device_lines(ax, report: Report, layout: _Layout):
    """Thin grey lines between consecutive blocks of one device, in model order."""
    for k in range(layout.rows):
        chain = [b for b in report.blocks if layout.row_of(b) == k]
        for a, b in itertools.pairwise(chain):
            (xa, ya), (xb, yb) = layout.pos[a], layout.pos[b]
            ax.plot([xa + _W / 2, xb - _W / 2], [ya, yb], color="#bbbbbb", lw=1, zorder=1)


def _draw_block(ax, b: str, layout: _Layout):
    """One band per device that ran the block's ops (red border when more than one), its name and op counts."""
    from matplotlib.patches import Rectangle

    x, y = layout.pos[b]
    ran_on = layout.ran_on
    devices = sorted(ran_on.get(b, {}), key=lambda d: -ran_on[b][d]) or [layout.row_of(b)]
    for i, d in enumerate(devices):
        ax.add_patch(Rectangle((x - _W / 2 + i * _W / len(devices), y - _H / 2), _W / len(devices), _H,
                               facecolor=COLOURS[d % len(COLOURS)] if d >= 0 else "#999999", alpha=0.85,
                               zorder=2))
    split = len(devices) > 1
    ax.add_patch(Rectangle((x - _W / 2, y - _H / 2), _W, _H, fill=False, zorder=3,
                           edgecolor="red" if split else "black", lw=2 if split else 0.8))
    c = layout.phases.get(b, {})
    ax.text(x, y + 0.14, b, ha="center", va="center", fontsize=8.5 if len(b) < 9 else 7, color="white",
            weight="bold", zorder=4)
    ax.text(x, y - 0.2, f"f {c.get(FORWARD, 0)}  b {c.get(BACKWARD, 0)}\nu {c.get(UPDATE, 0)}", ha="center",
            va="center", fontsize=6.5, color="white", zorder=4)


def _draw_optimizer(ax, layout: _Layout):
    from matplotlib.patches import Rectangle

    x, y = layout.pos[OPTIMIZER]
    ax.add_patch(Rectangle((x - _W / 2, y - _H / 2), _W, _H, facecolor=COLOURS[0], alpha=0.35, zorder=2))
    ax.text(x, y, "optimizer\nscalars", ha="center", va="center", fontsize=8, zorder=4)


def _draw_arrow(ax, edge, layout: _Layout) -> str:
    """One cross-device tensor as an arrow from producer to consumer; returns its SVG group id."""
    from matplotlib.patches import FancyArrowPatch

    phase, producer, consumer = edge
    pos = layout.pos
    src = pos.get(producer or OPTIMIZER)
    dst = pos.get(consumer) if consumer else None
    if src is None or dst is None:  # an end the blocks cannot name: shown at the row's end
        dst = dst or (pos[OPTIMIZER][0], -_DY * (1 - layout.row_of(producer or OPTIMIZER)))
        src = src or (pos[OPTIMIZER][0], 0.0)
    (x0, y0), (x1, y1) = src, dst
    up = 1 if y1 > y0 else -1
    update = phase == UPDATE
    arrow = FancyArrowPatch((x0, y0 + up * _H / 2), (x1, y1 - up * _H / 2), arrowstyle="-|>", mutation_scale=11,
                            connectionstyle=f"arc3,rad={0.05 if update else 0.12}",
                            linestyle=_STYLE.get(phase, "-"), lw=0.8 if update else 1.4,
                            alpha=0.6 if update else 1.0,
                            color=COLOURS[layout.row_of(producer or OPTIMIZER) % len(COLOURS)], zorder=5)
    arrow.set_gid(edge_id(phase, producer, consumer))
    ax.add_patch(arrow)
    return arrow.get_gid()


def _draw_counts(ax, report: Report, layout: _Layout, n_arrows: int):
    """The text under the rows: op counts per tower and phase, misplaced ops and slots, the key."""
    counts = report.op_counts()
    phases = (FORWARD, BACKWARD, UPDATE)
    lines = []
    for k in range(layout.rows):
        per = [f"{phase} {sum(counts.get((k, phase), {}).values())}" for phase in phases]
        where = sorted({d for phase in phases for d in counts.get((k, phase), {})})
        lines.append(f"tower {k}: " + ", ".join(per) + f" ops, ran on {' + '.join(where) or '-'}")
    n_bad = len(report.misplaced_ops())
    ok_slots = sum(s["device"] == s["reference_device"] for s in report.slots)
    lines += [f"misplaced tower ops: {n_bad};  optimizer slots on their weight's device: "
              f"{ok_slots}/{len(report.slots)}",
              f"{n_arrows} arrows = the tensors that crossed devices in the partitioned graphs: solid forward, "
              "dashed backward (gradients), dotted the optimizer's shared scalars",
              "block labels: ops per phase (f forward, b backward, u update); colour: the device that ran them"]
    ax.text(-0.75 * _DX, -(layout.rows - 1) * _DY - 1.2, "\n".join(lines), ha="left", va="top", fontsize=8.5,
            family="monospace")
