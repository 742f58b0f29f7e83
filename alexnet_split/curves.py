"""A comparison's ``curves.png``: validation top-1 and training loss of every started run against
steps (or epochs), the runs of a row that left chance drawn apart from those that never did.
"""

from __future__ import annotations

import math

import numpy as np

from .run_folders import CHANCE, measured_in_steps, row_names
from .schedule import CHANCE_FACTOR


def _x(run, n, by_steps) -> np.ndarray:
    """The step of each of the first n history rows (by_steps; a run measured in epochs logs none, so
    epoch x steps per epoch), else the epoch."""
    h = run["history"][:n]
    if not by_steps:
        return np.array([row["epoch"] for row in h])
    if "step" in h[0]:
        return np.array([row["step"] for row in h])
    cfg = run["config"]
    per_epoch = math.ceil(cfg["split_sizes"]["train"] / cfg["recipe"]["batch_size"])
    return np.array([row["epoch"] * per_epoch for row in h])


def curve_groups(runs) -> list[tuple[str, list[dict]]]:
    """(label, runs) for each row's started runs; a row whose runs split into ones that left chance
    and ones that never did gets a group of each, since a mean over both describes neither."""
    groups = []
    for name in row_names(runs):
        started = [r for r in runs if r["row"] == name and r["history"]]
        alive, dead = [r for r in started if r["alive"]], [r for r in started if not r["alive"]]
        name += " (reference, own protocol)" if started and started[0].get("reference") else ""
        groups += [(f"{name}, left chance", alive), (f"{name}, never left chance", dead)] if alive and dead else \
            [(name, started)] if started else []
    return groups


def draw_group(ax, group, key, label, colour, bounds, by_steps):
    """Three or more runs: their mean and a ± std band, clipped to `bounds` (the quantity's range),
    over the steps all of them reached; one or two runs: each drawn as itself, no band."""
    if len(group) < 3:
        for r, style in zip(group, ("-", "--"), strict=False):
            ax.plot(_x(r, len(r["history"]), by_steps), [h[key] for h in r["history"]], color=colour,
                    linestyle=style, linewidth=1.2, label=f"{label}: seed {r['seed']}")
        return
    n = min(len(r["history"]) for r in group)
    x = _x(group[0], n, by_steps)
    values = np.array([[h[key] for h in r["history"][:n]] for r in group])
    mean, std = values.mean(0), values.std(0, ddof=1)
    reach = "" if all(len(r["history"]) == n for r in group) else f"; to {x[-1]:,.0f}, the shortest run's end"
    ax.plot(x, mean, color=colour, label=f"{label}: mean ± std ({len(group)} runs{reach})")
    ax.fill_between(x, np.clip(mean - std, *bounds), np.clip(mean + std, *bounds), color=colour, alpha=0.2,
                    linewidth=0)


def curves_figure(runs, manifest):
    """Validation top-1 and training loss against steps (or epochs) for every started run."""
    from matplotlib.figure import Figure

    by_steps = measured_in_steps([r for r in runs if r["reference"] is None])
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for i, (label, group) in enumerate(curve_groups(runs)):
        for ax, key, bounds in zip(axes, ("val_accuracy", "loss"), ((0.0, 1.0), (0.0, None)), strict=True):
            draw_group(ax, group, key, label, f"C{i}", bounds, by_steps)
    xlabel = "step" if by_steps else "epoch"
    axes[0].axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label=f"{CHANCE_FACTOR:g}x chance")
    axes[0].set(xlabel=xlabel, ylabel="validation top-1 (centre crop)", title="validation accuracy", ylim=(0, 1))
    axes[1].set(xlabel=xlabel, ylabel="training loss", title="training loss")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{manifest['layout']} layout, recipe {manifest['recipe']}")
    fig.tight_layout()
    return fig
