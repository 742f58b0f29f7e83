"""The comparison report: its tables and paired-test rows, byte-for-byte regeneration of results/."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from alexnet_split import comparisons, curves, docsync, report, sweep, table_md
from alexnet_split.stats import mean_std_ci
from alexnet_split.train import HISTORY_FIELDS, history_csv

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = sorted(p.parent for p in RESULTS.rglob("compare.json") if (p.parent / "table.md").is_file())


def fake_run(root, layout, mode, seed, top1, top5, epochs=3):
    d = root / "runs" / sweep.run_name(layout, mode, seed)
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
    (root / sweep.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "paper", "modes": ["towers", "merged"],
                                                    "seeds": [0, 1, 2], "references": [], "overrides": {}}))
    return root, towers, merged


def test_table_numbers_and_paired_test(comparison):
    root, towers, merged = comparison
    md = report.report(root)
    p = stats.ttest_rel(towers, merged).pvalue
    diffs = np.subtract(towers, merged)
    assert f"| towers - merged | 3 | {100 * diffs.mean():+.1f} ± " in md
    assert f"| {p:.3f} | {stats.wilcoxon(diffs, method='exact').pvalue:.3f} |" in md  # paired t, then signed-rank
    # 0.61, 0.1054, 4.303 * 0.1054 / sqrt(3), over all seeds and over the alive ones (all three here)
    assert "| towers | 3 | 3/3 | 61.0 ± 10.5 [±26.2] | 61.0 ± 10.5 [±26.2] |" in md
    csv_text = (root / "table.csv").read_text()
    assert csv_text.splitlines()[1].startswith("towers,,paper,fake,keras-tf-logits,3,0 1 2,3,0,0,3,1006,2.000000,"
                                               "0.610000,0.105357,")
    assert (root / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _set_recipe(root, **changes):
    for cfg in root.glob("runs/*/config.json"):
        c = json.loads(cfg.read_text())
        c["recipe"] |= changes
        cfg.write_text(json.dumps(c))


def test_protocol_line_names_the_resize(comparison):
    """A recipe recorded without `resize` (every run before the field) decoded with the crop; one whose
    preset now says otherwise says so too."""
    root, _, _ = comparison
    assert "76x76 images (short side resized to 76 px, bilinear, then the central square: the paper's resize)" \
        in report.report(root)
    _set_recipe(root, resize="squash")
    md = report.report(root)
    assert "76x76 images (whole image squashed to 76x76, PIL LANCZOS: tflearn's oxflower17 resize)" in md
    _set_recipe(root, name="seed_cpu")
    for cfg in root.glob("runs/*/config.json"):
        c = json.loads(cfg.read_text())
        del c["recipe"]["resize"]
        cfg.write_text(json.dumps(c))
    assert "the paper's resize; today's `seed_cpu` preset uses resize 'squash' instead)" in report.report(root)


def test_protocol_line_names_the_kernels(comparison):
    """Runs with kernel options (config.Recipe.kernels) say so; runs recorded before the field, or with
    "", used today's ops and the line stays as it was; the pairing check counts an absent key as ""."""
    root, _, _ = comparison
    assert "kernels" not in report.report(root)
    _set_recipe(root, kernels="")
    assert "kernels" not in report.report(root)
    _set_recipe(root, kernels="shifted_lrn,first_max_pool")
    assert "float32 (kernels shifted_lrn,first_max_pool), " in report.report(root)
    cfg = json.loads(next(root.glob("runs/*/config.json")).read_text())
    before = cfg | {"recipe": {k: v for k, v in cfg["recipe"].items() if k != "kernels"}}
    assert table_md._protocol_differences(before, cfg | {"recipe": cfg["recipe"] | {"kernels": ""}}) == []
    assert table_md._protocol_differences(before, cfg) == [("kernels", "", "shifted_lrn,first_max_pool")]


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
    (other / sweep.MANIFEST).write_text(json.dumps({"recipe": "s", "layout": "seed", "modes": ["merged"],
                                                     "seeds": [0], "references": [], "overrides": {}}))
    manifest = json.loads((root / sweep.MANIFEST).read_text())
    manifest["references"] = [{"results": "../seedref", "layout": "seed", "mode": "merged", "label": "seed-as-written"}]
    (root / sweep.MANIFEST).write_text(json.dumps(manifest))
    md = report.report(root)
    assert "| seed-as-written | 1 | 1/1 | 40.0 | 40.0 |" in md


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
    for run in (committed / "runs").iterdir():  # logs only (no checkpoint, no model file); final.json once finished
        names = {p.name for p in run.iterdir() if p.name != "ckpt"}
        assert {"config.json", "history.csv", "state.json"} <= names, run
        assert names <= {"config.json", "history.csv", "state.json", "final.json", "conv1.npz", "timing.csv",
                         "train.log"}, run


def shown_block(key) -> tuple[str | None, Path | None]:
    """The generated block for `key` in the README or docs/, and that document ((None, None) if no
    document shows it)."""
    return next(((b, d) for d in docsync.documents(RESULTS.parent) if (b := docsync.block(d, key)) is not None),
                (None, None))


def test_the_docs_show_the_committed_tables():
    for committed in COMMITTED:
        key = f"results/{committed.relative_to(RESULTS).as_posix()}/table.md"
        block, document = shown_block(key)
        # Every comparison is shown, except one whose rows another shows as its reference rows.
        shown_elsewhere = any(ref["results"] == f"../{committed.name}" for other in COMMITTED if other != committed
                              for ref in json.loads((other / sweep.MANIFEST).read_text())["references"]
                              if other.parent == committed.parent)
        assert block is not None or shown_elsewhere, f"neither README nor docs/ has a block for {key}"
        if block is not None:
            assert block == "\n" + docsync.body(committed / "table.md", document) + "\n"
    for bench in sorted((RESULTS / "bench").glob("*.md")):
        block, document = shown_block(f"results/bench/{bench.name}")
        if block is not None:
            assert block == "\n" + docsync.body(bench, document) + "\n"
    for proof in sorted((RESULTS / "placement").glob("*.txt")):
        block, _ = shown_block(f"results/placement/{proof.name}")
        if block is not None:
            assert block == f"\n```\n{proof.read_text().strip()}\n```\n"


def test_sync_readme_replaces_only_the_marked_block(comparison, tmp_path):
    root, _, _ = comparison
    report.report(root)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- begin results/fake/table.md -->\nold\n<!-- end results/fake/table.md -->\noutro\n")
    assert docsync.sync_document(readme, tmp_path)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- begin") and text.endswith("<!-- end results/fake/table.md -->\noutro\n")
    assert "| towers - merged | 3 |" in text and "old" not in text
    assert not docsync.sync_document(readme, tmp_path)  # idempotent


@pytest.mark.slow
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
    assert "[1/2] paper/towers seed 0: new" in first.stdout and "| towers - merged, last weights | 1 |" in first.stdout
    out = tmp_path / "results" / "quick"
    assert f"wrote {out}/table.md, {out}/table.csv and {out}/curves.png" in first.stdout
    table = (out / "table.md").read_bytes()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0 and "[2/2] paper/merged seed 0: done" in second.stdout
    assert (out / "table.md").read_bytes() == table
    merged_cfg = json.loads((out / "runs" / "paper_merged_s0" / "config.json").read_text())
    assert merged_cfg["devices"] == ["/CPU:0"]  # one-tower modes stay on one device
    bad = subprocess.run(cmd[:-1] + ["epochs=2"], capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2 and "describes another comparison" in bad.stderr


def step_run(root, mode, seed, val, final=None, layout="paper", backend="jax", loss=None, ten_crop=True,
             steps=4000):
    """A run of a recipe measured in steps: `val` is its validation top-1 per 50 steps; `final`
    the fields of final.json that differ from a plain finished run's, or None for an unfinished run
    (config.json, history.csv and state.json only)."""
    d = root / "runs" / sweep.run_name(layout, mode, seed)
    d.mkdir(parents=True)
    recipe = {"name": "fake", "steps": steps, "epochs": None, "eval_every": 50, "lr_drop_patience": 1000,
              "max_lr_drops": 3, "optimizer": "sgd", "learning_rate": 0.01, "batch_size": 32, "precision": "float32",
              "image_size": 148, "augment": True, "pca_lighting": 0.1, "ten_crop": ten_crop}
    config = {"layout": layout, "mode": mode, "seed": seed, "recipe": recipe, "devices": [], "backend": backend,
              "versions": {"keras": "3"}, "machine": "test machine", "input_size": 131,
              "split_sizes": {"train": 680, "val": 340, "test": 340}, "parameters": 1000, "flops_per_image": 10 ** 9}
    (d / "config.json").write_text(json.dumps(config | ({"loss": loss} if loss else {})))
    rows = [{k: 0.0 for k in HISTORY_FIELDS} | {"step": 50 * (i + 1), "epoch": 2.3 * (i + 1), "val_accuracy": v,
                                                 "val_top5": min(1.0, 3 * v), "loss": 3.0 - v, "val_loss": 2.8}
            for i, v in enumerate(val)]
    (d / "history.csv").write_text(history_csv(rows))
    (d / "state.json").write_text(json.dumps({"step": 50 * len(val)}))
    if final is not None:
        left = next((50 * (i + 1) for i, v in enumerate(val) if v > 2 / 17), None)
        (d / "final.json").write_text(json.dumps({
            "test_top1": 0.3, "test_top5": 0.6, "best_val_accuracy": max(val), "best_step": 3000, "best_epoch": 141.2,
            "steps": 50 * len(val), "epochs": 188.2, "steps_to_leave_chance": left, "test_crops": 10 if ten_crop else 1,
            "lr_drop_steps": [], "train_seconds": 60.0, "train_images_per_second": 100.0} | final))
    return d


def manifest(root, modes, seeds, references=()):
    (root / sweep.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "paper", "modes": list(modes),
                                                    "seeds": list(seeds), "references": list(references),
                                                    "overrides": {}}))
    return root


def test_step_based_runs_get_the_step_columns(tmp_path):
    """Runs of a recipe measured in steps: when validation left chance, the steps run, lr drops."""
    root = tmp_path / "results" / "steps"
    up, flat = [0.05, 0.2, 0.3, 0.4], [0.05] * 4
    step_run(root, "towers", 0, up, {"steps_to_leave_chance": 2400, "lr_drop_steps": [3500]})
    step_run(root, "towers", 1, flat, {"steps": 3500})
    step_run(root, "merged", 0, up, {"steps_to_leave_chance": 150, "lr_drop_steps": [3500]})
    step_run(root, "merged", 1, up, {"steps_to_leave_chance": 250, "lr_drop_steps": [3500]})
    md = report.report(manifest(root, ["towers", "merged"], [0, 1]))
    assert "Protocol: up to 4,000 steps, validation every 50, lr /10 after 1,000 steps" in md
    assert "| left chance (step) | params | GFLOPs/img | steps | best step | lr drops |" in md
    assert "| 2,400 (1/2) | 1,000 | 1.00 | 1,850 | 3,000 | 0.5 |" in md  # towers: one of two runs left chance
    assert "| 200 (2/2) | 1,000 | 1.00 | 200 | 3,000 | 1.0 |" in md  # merged: the median of 150 and 250
    header = (root / "table.csv").read_text().splitlines()[0].split(",")
    assert header[-8:-3] == ["runs_left_chance", "left_chance_median", "steps_mean", "best_step_mean", "lr_drops_mean"]
    assert (root / "curves.png").stat().st_size > 10_000


def test_every_declared_run_is_listed_and_both_means_are_given(tmp_path):
    """Unfinished and not-started runs are rows, not omissions; alive k/n counts every declared seed;
    the all-seeds mean counts dead runs (an unfinished dead one at its last validation, marked †) and
    is n/a while an unfinished run that left chance has no test figure yet."""
    root = tmp_path / "results" / "every"
    step_run(root, "towers", 0, [0.05, 0.3, 0.6], {"test_top1": 0.8})
    step_run(root, "towers", 1, [0.05, 0.06, 0.06], {"test_top1": 0.06})  # finished, never left chance
    step_run(root, "towers", 2, [0.11, 0.05, 0.04], None)  # unfinished, never left chance: at its last val, 0.04
    step_run(root, "merged", 0, [0.05, 0.3, 0.6], {"test_top1": 0.7})
    step_run(root, "merged", 1, [0.05, 0.05, 0.3], None)  # unfinished, left chance (step 150)
    md = report.report(manifest(root, ["towers", "merged", "half"], [0, 1, 2]))
    mean, std, ci = mean_std_ci([0.8, 0.06, 0.04])
    assert (f"| towers | 3: 2 finished, 1 unfinished | 1/3 | {100 * mean:.1f} ± {100 * std:.1f} [±{100 * ci:.1f}] † "
            "| 80.0 |") in md
    assert "† counts an unfinished run that never left chance at its last validation top-1" in md
    assert "| merged | 3: 1 finished, 1 unfinished, 1 not started | 2/3 | n/a (1 unfinished) | 70.0 |" in md
    assert "| half | not started 0/3 | 0/3 | - | - |" in md
    assert "| towers | 2 | unfinished | 150 | never | 11.0 (50) | - | - | - | 4.0 † | 2.800 |" in md
    assert "| merged | 1 | unfinished | 150 | 150 | 30.0 (150) | - | - | - | 30.0 | 2.800 |" in md
    assert "| merged | 2 | not started | - |" in md and "| half | 0, 1, 2 | not started | - |" in md
    assert "| 100 (1/3) |" in md and "| 125 (2/3) |" in md and "| - (0/3) |" in md  # left chance: k/n always
    rows = {r["mode"]: r for r in csv.DictReader(io.StringIO((root / "table.csv").read_text()))}
    assert rows["towers"]["alive"] == "1" and rows["towers"]["test_top1_all_last_val"] == "1"
    assert rows["merged"]["test_top1_all_note"] == "n/a (1 unfinished)" and rows["half"]["not_started"] == "3"


def test_the_clipped_loss_is_named_from_the_config(tmp_path):
    """A JAX run whose config.json names no loss was trained on clipped probabilities: the table
    says so, and names the runs saturated at the clip; a run that records its loss does not get it."""
    old = tmp_path / "results" / "old"
    d = step_run(old, "towers", 0, [0.05, 0.05], None)
    cap = 16 / 17 * -np.log(1e-7)
    (d / "history.csv").write_text((d / "history.csv").read_text().replace(",2.8,", f",{cap:.6f},"))
    md = report.report(manifest(old, ["towers"], [0]))
    assert "Loss: these runs were trained with the clipped probability loss" in md
    assert "to be replaced by a rerun with the loss from logits" in md
    assert "towers s0 end at validation loss 15.169972 = (16/17) x 16.118: saturated at the clip" in md
    assert "clipped-probabilities" in (old / "table.csv").read_text()
    new = tmp_path / "results" / "new"
    step_run(new, "towers", 0, [0.05, 0.3], {}, loss="logits")
    md = report.report(manifest(new, ["towers"], [0]))
    assert "clipped" not in md and "Loss: these runs used the cross-entropy from the logits" in md
    tf = tmp_path / "results" / "tf"
    step_run(tf, "towers", 0, [0.05, 0.3], {}, backend="tensorflow")
    assert "clipped" not in report.report(manifest(tf, ["towers"], [0]))


def test_centre_and_ten_crop_figures_keep_their_own_columns(tmp_path):
    """Once a run records the centre-crop test beside the recipe's 10-crop one, both are columns; a run
    without it shows "-" there and its 10-crop figure never fills the centre column."""
    root = tmp_path / "results" / "crops"
    step_run(root, "towers", 0, [0.05, 0.3], {"test_top1": 0.50, "test_top1_centre": 0.44, "test_top5_centre": 0.8})
    step_run(root, "towers", 1, [0.05, 0.3], {"test_top1": 0.52})  # an older run: 10-crop only
    md = report.report(manifest(root, ["towers"], [0, 1]))
    assert "test top-1/top-5: 10-crop; centre top-1/top-5: centre crop" in md
    assert "| centre top-1, all seeds | centre top-1, alive |" in md
    assert "| 51.0 ± 1.4 [±12.7] | 51.0 ± 1.4 [±12.7] |" in md  # test top-1: 10-crop figures only
    assert "| n/a (1 did not record it) | 44.0 |" in md  # centre top-1: the one run that has it
    assert "| 50.0 | 60.0 | 44.0 | 80.0 |" in md and "| 52.0 | 60.0 | - | - |" in md
    old = tmp_path / "results" / "old"
    step_run(old, "towers", 0, [0.05, 0.3], {})
    md = report.report(manifest(old, ["towers"], [0]))
    assert "test top-1/top-5: 10-crop; no centre-crop test figure recorded" in md and "centre top-1," not in md
    mixed = tmp_path / "results" / "mixed"
    step_run(mixed, "towers", 0, [0.05, 0.3], {})
    step_run(mixed, "towers", 1, [0.05, 0.3], {}, ten_crop=False)
    with pytest.raises(ValueError, match=r"tested with \[1, 10\] crops"):
        report.report(manifest(mixed, ["towers"], [0, 1]))


def test_a_reference_of_another_protocol_gets_its_own_table_and_no_pairing(tmp_path):
    root = tmp_path / "results" / "main"
    other = tmp_path / "results" / "seedref"
    for seed in (0, 1):
        step_run(root, "towers", seed, [0.05, 0.3], {"test_top1": 0.6 + seed / 10})
        step_run(other, "merged", seed, [0.05, 0.3], {"test_top1": 0.4}, layout="seed", ten_crop=False, steps=2000)
    (other / sweep.MANIFEST).write_text(json.dumps({"recipe": "s", "layout": "seed", "modes": ["merged"],
                                                     "seeds": [0, 1], "references": [], "overrides": {}}))
    ref = {"results": "../seedref", "layout": "seed", "mode": "merged", "label": "seed-as-written"}
    md = report.report(manifest(root, ["towers"], [0, 1], [ref]))
    main, reference = md.split("**Reference: seed-as-written**")
    assert "seed-as-written" not in main  # not a row under the main protocol
    assert "test top-1/top-5: 10-crop" in main and "Protocol: up to 2,000 steps" in reference
    assert "test top-1/top-5: centre crop" in reference
    assert "| seed-as-written | 2 | 2/2 | 40.0 ± 0.0 [±0.0] |" in reference
    assert "Not paired with this comparison's rows: another layout and protocol (layout, model input" not in md
    assert "Not paired with this comparison's rows: another layout and protocol (layout, steps, ten_crop" in md
    assert "towers - seed-as-written" not in md and "same batches" not in reference


def test_a_reference_of_the_same_layout_is_paired_under_a_caption_that_names_the_difference(tmp_path):
    root = tmp_path / "results" / "bf16"
    other = tmp_path / "results" / "f32"
    for seed in (0, 1, 2):
        step_run(root, "towers", seed, [0.05, 0.3], {"test_top1": 0.6 + seed / 10})
        d = step_run(other, "towers", seed, [0.05, 0.3], {"test_top1": 0.5 + seed / 20})
        cfg = json.loads((d / "config.json").read_text())
        cfg["recipe"]["precision"] = "mixed_bfloat16"
        (d / "config.json").write_text(json.dumps(cfg))
    (other / sweep.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "paper", "modes": ["towers"],
                                                     "seeds": [0, 1, 2], "references": [], "overrides": {}}))
    ref = {"results": "../f32", "layout": "paper", "mode": "towers", "label": "towers bf16"}
    md = report.report(manifest(root, ["towers"], [0, 1, 2], [ref]))
    assert ("Paired with this comparison's towers runs of the same seed (the same split); the protocols differ in: "
            "precision (float32 here, mixed_bfloat16 there).") in md
    assert "| towers - towers bf16 | 3 | +15.0 ± 12.4 |" in md


def band_axes(n_runs, val=0.5, spread=0.45):
    """The validation panel of the curves for one row of n_runs runs, and its runs."""
    runs = [{"row": "towers", "seed": s, "reference": None, "state": "finished", "alive": True, "config": {},
             "final": {}, "history": [{"step": 50 * (i + 1), "epoch": i + 1, "val_accuracy": val + spread * (-1) ** s,
                                       "loss": 0.1 + (-1) ** s} for i in range(4)]} for s in range(n_runs)]
    fig = curves.curves_figure(runs, {"layout": "paper", "recipe": "fake"})
    return fig.axes


@pytest.mark.parametrize("n_runs", [1, 2, 3, 4])
def test_curves_draw_a_band_only_over_three_runs_or_more_and_inside_the_axis_range(n_runs):
    acc, loss = band_axes(n_runs)
    bands = [c for c in acc.collections if c.get_paths()]
    labels = [line.get_label() for line in acc.get_lines()]
    if n_runs < 3:  # each run is its own line, and nothing claims a mean
        assert not bands and labels[:n_runs] == [f"towers: seed {s}" for s in range(n_runs)]
        assert not any("mean" in label for label in labels)
    else:
        assert len(bands) == 1 and labels[0] == f"towers: mean ± std ({n_runs} runs)"
        for ax, (lo, hi) in ((acc, (0, 1)), (loss, (0, np.inf))):
            y = np.concatenate([p.vertices[:, 1] for c in ax.collections for p in c.get_paths()])
            assert y.min() >= lo and y.max() <= hi  # the std would reach below 0 and above 1 unclipped
    assert "mean" not in acc.get_title() and "mean" not in loss.get_title()


def test_curves_split_a_row_into_runs_that_left_chance_and_runs_that_did_not():
    runs = [{"row": "towers", "seed": s, "alive": s < 3, "history": [{}]} for s in range(5)]
    groups = curves.curve_groups(runs)
    assert [(label, [r["seed"] for r in g]) for label, g in groups] == [
        ("towers, left chance", [0, 1, 2]), ("towers, never left chance", [3, 4])]


def test_the_readme_is_a_front_page_with_the_headline_table(tmp_path):
    """The README stays short, shows the two commands on its first screen, and its results table
    is results/headline.md, which regenerates byte for byte from the comparisons' tables."""

    lines = (RESULTS.parent / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert {"bash scripts/run.sh", "bash scripts/test.sh"} <= {line.split("  ")[0].strip() for line in lines[:40]}
    from alexnet_split import headline

    committed = (RESULTS / "headline.md").read_text()
    every = (RESULTS / "all_comparisons.md").read_text()
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.png", "*.npz", "*.svg", "ckpt"))
    assert headline.write_headline(copy) == committed
    assert comparisons.write_all_comparisons(copy) == every
    readme = RESULTS.parent / "README.md"
    assert docsync.block(readme, "results/headline.md") == "\n" + docsync.body(RESULTS / "headline.md", readme) + "\n"
    for comparison in COMMITTED:
        assert f"[table]({comparison.relative_to(RESULTS).as_posix()}/table.md)" in every
    # the headline's links and figures, as the README shows them, reach files of the repository
    for target in re.findall(r"\]\(([^)]+)\)", docsync.block(readme, "results/headline.md")):
        assert (readme.parent / target).is_file(), target


def test_report_on_a_train_run_folder_summarises_it_and_writes_nothing(tmp_path, capsys):
    from alexnet_split import cli

    fake_run(tmp_path, "paper", "towers", 0, 0.5, 0.9)
    done = tmp_path / "runs" / "paper_towers_s0"
    going = step_run(tmp_path, "merged", 0, [0.05, 0.3, 0.4])
    before = sorted(p for p in tmp_path.rglob("*"))
    assert cli.main(["report", str(done)]) == 0
    out = capsys.readouterr().out
    assert f"{done}: paper layout, towers mode, seed 0, recipe fake (3 epochs; sgd lr 0.01, batch 8" in out
    assert "finished: test top-1 0.5000, top-5 0.9000 (1-crop), best val top-1 0.5100 at epoch 3 of 3" in out
    assert cli.main(["report", str(going)]) == 0
    out = capsys.readouterr().out
    assert "unfinished: 3 validations to step 150, last val top-1 0.4000, best 0.4000 at step 150" in out
    assert "left chance: at step 100" in out
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_every_printed_regenerate_hint_works_from_where_the_user_stands(tmp_path, monkeypatch, capsys):
    """A comparison outside any results/ folder (as scripts/run.sh writes runs/demo): the printed
    command is the one to type here, and typed from elsewhere it still regenerates the table."""
    from alexnet_split import cli

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "demo"
    for seed in range(2):
        fake_run(root, "paper", "towers", seed, 0.5, 0.9)
    manifest(root, ["towers"], [0, 1])
    assert cli.main(["report", "runs/demo"]) == 0
    out = capsys.readouterr().out
    assert "Regenerate: `alexnet-split report runs/demo`" in out and "wrote runs/demo/table.md, " in out
    assert "`alexnet-split report runs/demo`" in (root / "table.md").read_text()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli.main(["report", "../runs/demo"]) == 0
    hint = capsys.readouterr().out.split("Regenerate: `alexnet-split ")[1].split("`")[0]
    assert hint == f"report {root}"
    assert cli.main(hint.split()) == 0
