"""``results/all_comparisons.md``: the mode rows of every comparison under ``results/`` in one
table, read from each one's ``table.csv``, each linking to its own ``table.md``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .run_folders import declared_runs
from .runlog import atomic_write, read_json
from .sweep import MANIFEST
from .tables import markdown_table


def write_all_comparisons(results_root) -> str:
    """``results/all_comparisons.md``: every comparison's mode rows in one table (alive k/n, test
    top-1 over all seeds and over the runs that left chance), each linking to its own table."""
    results_root = Path(results_root)
    lines = ["# Every comparison", "",
             "Test top-1 in %, mean over seeds, from each comparison's `table.csv` (its protocol, "
             "hardware and spread are in the linked table). alive: runs that left chance (k/n declared "
             "seeds); all seeds: every run that has a figure, dead ones included († an unfinished run "
             "at chance counted at its last validation); loss: how the runs computed it.", ""]
    header = ["comparison", "recipe", "mode", "alive", "test top-1, all seeds", "test top-1, alive", "loss", "backend",
              "table"]
    cells = []
    for manifest in sorted(results_root.rglob(MANIFEST)):
        folder = manifest.parent
        if not (folder / "table.csv").is_file():
            continue
        with open(folder / "table.csv") as f:
            rows = [r for r in csv.DictReader(f) if not r.get("reference")]
        backend = next((r["config"]["backend"] for r in declared_runs(folder) if r["config"]), "-")
        name = folder.relative_to(results_root).as_posix()
        recipe = read_json(manifest)["recipe"]
        for r in rows:
            dagger = " †" if _int(r.get("test_top1_all_last_val")) else ""
            cells.append([name, f"`{recipe}`", r["mode"], f"{r['alive']}/{r['n_seeds']}",
                          _headline_pct(r.get("test_top1_all_mean")) + dagger,
                          _headline_pct(r.get("test_top1_alive_mean")), r["loss"] or "-", backend,
                          f"[table]({name}/table.md)"])
    text = "\n".join(lines + markdown_table(header, cells, "lllrrrlll")) + "\n"
    atomic_write(results_root / "all_comparisons.md", text)
    return text


def _headline_pct(value) -> str:
    return f"{100 * float(value):.1f}" if value not in (None, "") else "-"


def _int(value) -> int:
    return int(float(value)) if value not in (None, "") else 0
