"""The comparison report: statistics, paired tests, byte-for-byte regeneration of results/."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from alexnet_split import report
from alexnet_split.train import HISTORY_FIELDS, history_csv

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = sorted(p.parent for p in RESULTS.rglob("compare.json") if (p.parent / "table.md").is_file())


def fake_run(root, layout, mode, seed, top1, top5, epochs=3):
    d = root / "runs" / report.run_name(layout, mode, seed)
    d.mkdir(parents=True)
    recipe = {"name": "fake", "epochs": epochs, "optimizer": "sgd", "learning_rate": 0.01, "batch_size": 8,
              "precision": "float32", "image_size": 76, "augment": True, "pca_lighting": 0.0, "ten_crop": False}
    (d / "config.json").write_text(json.dumps({
        "layout": layout, "mode": mode, "seed": seed, "recipe": recipe, "devices": ["/CPU:0", "/CPU:1"],
        "backend": "tensorflow", "versions": {"keras": "3"}, "machine": "test machine", "input_size": 67,
        "split_sizes": {"train": 680, "val": 340, "test": 340}, "parameters": 1000 + len(mode),
        "flops_per_image": 2_000_000_000}))
    (d / "final.json").write_text(json.dumps({
        "test_top1": top1, "test_top5": top5, "best_val_accuracy": top1 + 0.01, "best_epoch": epochs,
        "train_seconds": 60.0, "train_images_per_second": 100.0 + seed, "epochs": epochs}))
    rows = [{k: 0.0 for k in HISTORY_FIELDS} | {"epoch": e + 1, "val_accuracy": top1 * (e + 1) / epochs,
                                                 "loss": 3.0 - e} for e in range(epochs)]
    (d / "history.csv").write_text(history_csv(rows))


@pytest.fixture
def comparison(tmp_path):
    root = tmp_path / "results" / "fake"
    towers, merged = [0.50, 0.62, 0.71], [0.48, 0.57, 0.70]
    for seed in range(3):
        fake_run(root, "paper", "towers", seed, towers[seed], 0.9)
        fake_run(root, "paper", "merged", seed, merged[seed], 0.8 + 0.01 * seed)
    (root / report.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "paper", "modes": ["towers", "merged"],
                                                    "seeds": [0, 1, 2], "references": [], "overrides": {}}))
    return root, towers, merged


def test_mean_std_and_t_interval():
    mean, std, ci = report.mean_std_ci([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1)
    assert ci == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-6)


def test_table_numbers_and_paired_test(comparison):
    root, towers, merged = comparison
    md = report.report(root)
    p = stats.ttest_rel(towers, merged).pvalue
    diffs = np.subtract(towers, merged)
    assert f"| towers - merged | 3 | {100 * diffs.mean():+.1f} ± " in md
    assert f"| {p:.3f} |" in md
    assert "| towers | 3 | 1,006 | 2.00 | 61.0 ± 10.5 [±26.2] |" in md  # 0.61, 0.1054, 4.303 * 0.1054 / sqrt(3)
    csv_text = (root / "table.csv").read_text()
    assert csv_text.splitlines()[1].startswith("towers,paper,fake,3,0 1 2,1006,2.000000,0.610000,0.105357,")
    assert (root / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_is_byte_for_byte_reproducible(comparison):
    root, _, _ = comparison
    report.report(root)
    first = {f: (root / f).read_bytes() for f in ("table.md", "table.csv", "curves.png")}
    report.report(root)
    assert {f: (root / f).read_bytes() for f in first} == first


def test_reference_rows_come_from_another_comparison(comparison, tmp_path):
    root, _, _ = comparison
    other = root.parent / "seedref"
    fake_run(other, "seed", "merged", 0, 0.4, 0.8)
    (other / report.MANIFEST).write_text(json.dumps({"recipe": "s", "layout": "seed", "modes": ["merged"],
                                                     "seeds": [0], "references": [], "overrides": {}}))
    manifest = json.loads((root / report.MANIFEST).read_text())
    manifest["references"] = [{"results": "../seedref", "layout": "seed", "mode": "merged", "label": "seed-as-written"}]
    (root / report.MANIFEST).write_text(json.dumps(manifest))
    assert "| seed-as-written | 1 | 1,006 | 2.00 | 40.0 |" in report.report(root)


@pytest.mark.parametrize("committed", COMMITTED, ids=[str(p.relative_to(RESULTS)) for p in COMMITTED])
def test_committed_tables_regenerate_bit_for_bit(committed, tmp_path):
    """results/<name>/ is what `alexnet-split report` makes from the committed run logs."""
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("ckpt", "*.keras"))
    target = copy / committed.relative_to(RESULTS)
    for f in ("table.md", "table.csv", "curves.png"):
        (target / f).unlink()
    report.report(target)
    for f in ("table.md", "table.csv", "curves.png"):
        assert (target / f).read_bytes() == (committed / f).read_bytes(), f
    for run in (committed / "runs").iterdir():  # logs only; conv1.npz since issue 10; final.json once finished
        names = {p.name for p in run.iterdir() if p.name != "ckpt"}
        assert {"config.json", "history.csv", "state.json"} <= names, run
        assert names <= {"config.json", "history.csv", "state.json", "final.json", "conv1.npz"}, run


def readme_block(readme, key) -> str | None:
    """The text between the README's ``<!-- begin KEY -->`` and ``<!-- end KEY -->`` markers."""
    text = Path(readme).read_text()
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    if begin not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_readme_shows_the_committed_tables():
    readme = RESULTS.parent / "README.md"
    for committed in COMMITTED:
        key = f"results/{committed.relative_to(RESULTS).as_posix()}/table.md"
        block = readme_block(readme, key)
        # Every comparison is shown, except one whose rows another shows as its reference rows.
        shown_elsewhere = any(ref["results"] == f"../{committed.name}" for other in COMMITTED if other != committed
                              for ref in json.loads((other / report.MANIFEST).read_text())["references"]
                              if other.parent == committed.parent)
        assert block is not None or shown_elsewhere, f"README has no block for {key}"
        if block is not None:
            assert block == "\n" + report.readme_body((committed / "table.md").read_text()) + "\n"
    for bench in sorted((RESULTS / "bench").glob("*.md")):
        block = readme_block(readme, f"results/bench/{bench.name}")
        if block is not None:
            assert block == "\n" + report.readme_body(bench.read_text()) + "\n"
    for proof in sorted((RESULTS / "placement").glob("*.txt")):
        block = readme_block(readme, f"results/placement/{proof.name}")
        if block is not None:
            assert block == f"\n```\n{proof.read_text().strip()}\n```\n"


def test_sync_readme_replaces_only_the_marked_block(comparison, tmp_path):
    root, _, _ = comparison
    report.report(root)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- begin results/fake/table.md -->\nold\n<!-- end results/fake/table.md -->\noutro\n")
    assert report.sync_readme(readme)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- begin") and text.endswith("<!-- end results/fake/table.md -->\noutro\n")
    assert "| towers - merged | 3 |" in text and "old" not in text
    assert not report.sync_readme(readme)  # idempotent


def test_compare_runs_resumes_and_reports(tmp_path, data_root):
    """End to end on the synthetic data: 2 modes x 1 seed x 1 epoch, then a no-op rerun."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "alexnet_split.cli", "compare", "--recipe", "quick", "--modes", "towers,merged",
           "--seeds", "0", "--results", str(tmp_path / "results"), "--data", str(data_root),
           "--set", "epochs=1"]
    tb = tmp_path / "tb"
    first = subprocess.run(cmd + ["--tensorboard", str(tb)], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    curves = {(p.parent.parent.name, p.parent.name) for p in tb.rglob("events.out.tfevents.*")}
    assert curves == {(run, sub) for run in ("paper_towers_s0", "paper_merged_s0") for sub in ("train", "validation")}
    assert "[1/2] paper/towers seed 0: new" in first.stdout and "| towers - merged | 1 |" in first.stdout
    out = tmp_path / "results" / "quick"
    table = (out / "table.md").read_bytes()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "[2/2] paper/merged seed 0: done" in second.stdout
    assert (out / "table.md").read_bytes() == table
    merged_cfg = json.loads((out / "runs" / "paper_merged_s0" / "config.json").read_text())
    assert merged_cfg["devices"] == ["/CPU:0"]  # one-tower modes stay on one device
    bad = subprocess.run(cmd[:-1] + ["epochs=2"], capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2 and "describes another comparison" in bad.stderr


def test_step_based_runs_get_the_step_columns(tmp_path):
    """Runs of a recipe measured in steps: when validation left chance, the steps run, lr drops."""
    root = tmp_path / "results" / "steps"
    left = {("towers", 0): 2400, ("towers", 1): None, ("merged", 0): 150, ("merged", 1): 250}
    for (mode, seed), step in left.items():
        d = root / "runs" / report.run_name("paper", mode, seed)
        d.mkdir(parents=True)
        recipe = {"name": "fake", "steps": 4000, "epochs": None, "eval_every": 50, "lr_drop_patience": 1000,
                  "max_lr_drops": 3, "optimizer": "sgd", "learning_rate": 0.01, "batch_size": 32,
                  "precision": "float32", "image_size": 148, "augment": True, "pca_lighting": 0.1, "ten_crop": True}
        (d / "config.json").write_text(json.dumps({
            "layout": "paper", "mode": mode, "seed": seed, "recipe": recipe, "devices": [], "backend": "jax",
            "versions": {"keras": "3"}, "machine": "test machine", "input_size": 131,
            "split_sizes": {"train": 680, "val": 340, "test": 340}, "parameters": 1000, "flops_per_image": 10 ** 9}))
        (d / "final.json").write_text(json.dumps({
            "test_top1": 0.3, "test_top5": 0.6, "best_val_accuracy": 0.31, "best_step": 3000, "best_epoch": 141.2,
            "steps": 4000 if step else 3500, "epochs": 188.2, "steps_to_leave_chance": step,
            "lr_drop_steps": [3500] if step else [], "train_seconds": 60.0, "train_images_per_second": 100.0}))
        rows = [{k: 0.0 for k in HISTORY_FIELDS} | {"step": 50 * (i + 1), "epoch": 2.3 * (i + 1)} for i in range(4)]
        (d / "history.csv").write_text(history_csv(rows))
    (root / report.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "paper", "modes": ["towers", "merged"],
                                                    "seeds": [0, 1], "references": [], "overrides": {}}))
    md = report.report(root)
    assert "Protocol: up to 4,000 steps, validation every 50, lr /10 after 1,000 steps" in md
    assert "| left chance (step) | best step | steps | lr drops |" in md
    assert "| 2,400 (1/2) | 3,000 | 3,750 | 0.5 |" in md  # towers: one of two runs left chance
    assert "| 200 | 3,000 | 4,000 | 1.0 |" in md  # merged: the median of 150 and 250
    header = (root / "table.csv").read_text().splitlines()[0].split(",")
    assert header[-5:] == ["steps_mean", "best_step_mean", "runs_left_chance", "steps_to_leave_chance_median",
                           "lr_drops_mean"]
    assert (root / "curves.png").stat().st_size > 10_000


def test_paired_power_against_a_simulation():
    rng = np.random.default_rng(0)
    n, std, delta = 8, 0.03, 0.03
    hits = sum(stats.ttest_1samp(rng.normal(delta, std, n), 0).pvalue < 0.05 for _ in range(4000))
    assert report.paired_power(n, std, delta) == pytest.approx(hits / 4000, abs=0.03)
    n80 = report.pairs_for_power(std, delta)
    assert report.paired_power(n80, std, delta) >= 0.8 > report.paired_power(n80 - 1, std, delta)
    assert n80 == 10  # the normal approximation (1.96 + 0.84)^2 = 7.8 pairs, plus the t's fatter tails
