"""Towers vs merged vs half: rebuild a comparison's table and plot from its run logs
(:mod:`alexnet_split.sweep` runs it).

``results/<name>/compare.json`` says what the comparison is (recipe, layout, modes, seeds,
reference rows); ``results/<name>/runs/<layout>_<mode>_s<seed>/`` hold the run logs. The
report reads only those files, so ``alexnet-split report results/<name>`` regenerates
``table.md``, ``table.csv`` and ``curves.png`` byte for byte: no number is typed by hand. Given a
``train`` run folder instead, ``report`` summarises that run and writes nothing
(:mod:`alexnet_split.run_summary`).

Every declared run is a result: finished, unfinished or not started, each is in the table, and
a run that never left chance counts in the all-seeds figures beside the figures over the runs
that did. What the table says about the loss and the test crops is read from each run's
config.json and final.json.

This module runs the command: :mod:`~alexnet_split.run_folders` reads the runs,
:mod:`~alexnet_split.mode_rows` makes the rows and ``table.csv``, :mod:`~alexnet_split.table_md`
the text of ``table.md`` and :mod:`~alexnet_split.curves` ``curves.png``; then the README's and
docs' generated blocks are refreshed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from . import docsync
from .comparisons import write_all_comparisons
from .curves import curves_figure
from .mode_rows import BEST_VAL, accuracy_keys, mode_rows, table_csv
from .run_folders import NOT_STARTED, declared_runs
from .runlog import atomic_write, read_json, shell_path, write_figure
from .sweep import MANIFEST
from .table_md import markdown


def report(results_dir) -> str:
    """Write table.md, table.csv and curves.png of a comparison from its run logs; returns table.md
    (:func:`for_terminal` gives its "Regenerate" line for the working directory)."""
    results_dir = Path(results_dir)
    if not (results_dir / MANIFEST).is_file():
        raise ValueError(f"{results_dir}: {_not_a_comparison(results_dir)}")
    manifest = read_json(results_dir / MANIFEST)
    runs = declared_runs(results_dir)
    if not any(r["state"] != NOT_STARTED and r["reference"] is None for r in runs):
        raise ValueError(f"{results_dir}: no run started yet")
    keys = accuracy_keys(runs)
    rows = mode_rows(runs, keys)
    atomic_write(results_dir / "table.csv", table_csv(rows, keys))
    md = markdown(manifest, runs, rows, keys) + _regenerate(_rel(results_dir))
    atomic_write(results_dir / "table.md", md)
    write_figure(curves_figure(runs, manifest), results_dir / "curves.png", dpi=100)
    if set(BEST_VAL) & set(keys):  # each seed's modes side by side: the headline's figure
        from . import headline

        headline.write_figure_for(results_dir)
    return md


def for_terminal(md: str, results_dir) -> str:
    """A comparison's table.md as printed: the command under "Regenerate" typed from here, and where
    the files are."""
    file_line = _regenerate(_rel(Path(results_dir)))
    if md.endswith(file_line):
        md = md[:-len(file_line)] + _regenerate(shell_path(results_dir))
    return md + written(results_dir)


def _not_a_comparison(folder: Path) -> str:
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "a file, not a folder"
    return (f"neither a comparison folder (no {MANIFEST}) nor a train run folder (no config.json); "
            "give the folder that `alexnet-split compare` or `alexnet-split train --out` wrote")


def _regenerate(path: str) -> str:
    return f"\nRegenerate: `alexnet-split report {path}`; curves: `curves.png`.\n"


def written(results_dir) -> str:
    """Where a comparison's report went, as the working directory reaches it."""
    shown = shell_path(results_dir)
    return f"wrote {shown}/table.md, {shown}/table.csv and {shown}/curves.png"


def _rel(path: Path) -> str:
    """table.md's path to its own folder: from the repository root for a folder under ``results/``
    (as the README shows the committed tables), else as the working directory reaches it."""
    parts = path.resolve().parts
    if "results" not in parts:
        return shell_path(path)
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("results"):])


def pipeline_against_runs(speed: float, results_dir) -> list[str]:
    """The input pipeline's images/s against each row's training images/s in a comparison's
    table.csv: the pipeline should be 5x faster to stay out of the way."""

    with open(Path(results_dir) / "table.csv") as f:
        rows = list(csv.DictReader(f))
    lines = []
    for row in rows:
        if not row["train_images_per_second"]:  # no finished run in this row
            continue
        trained = float(row["train_images_per_second"])
        lines.append(f"  vs {row['mode']:<16} training at {trained:7.1f} images/s: {speed / trained:6.1f}x "
                     f"{'(the pipeline is not the bottleneck)' if speed >= 5 * trained else 'WARNING: under 5x'}")
    return lines


def sync_readme_for(written) -> Path | None:
    """After writing `written` under a project's ``results/``: refresh ``results/headline.md``,
    ``results/all_comparisons.md`` and
    the generated blocks of its README and docs/; returns the first document that changed."""
    root = docsync.project_root(written)
    if root is None:
        return None
    changed = refresh_docs(root)
    return changed[0] if changed else None


def refresh_docs(root) -> list[Path]:
    """``results/headline.md`` (the answer) and ``results/all_comparisons.md``, then every generated
    block of the project's README and docs/; returns the documents that changed."""
    from . import headline

    headline.write_headline(Path(root) / "results")
    write_all_comparisons(Path(root) / "results")
    return docsync.sync(root)
