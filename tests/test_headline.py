"""The README's headline (alexnet_split.headline): the answer's table, paired differences, verdict
sentences computed from the numbers, and the per-seed figure, from run logs."""

import json

import numpy as np
import pytest
from scipy import stats
from test_report import fake_run

from alexnet_split import headline, report, sweep

BEST = {"towers": [0.52, 0.55, 0.49, 0.58], "merged": [0.50, 0.51, 0.50, 0.52], "half": [0.30, 0.34, 0.31, 0.33]}
LAST = {"towers": [0.50, 0.50, 0.47, 0.55], "merged": [0.49, 0.50, 0.51, 0.50], "half": [0.31, 0.30, 0.32, 0.30]}


@pytest.fixture
def answer(tmp_path):
    """A 3-mode comparison of 5 declared seeds, 4 finished, whose runs recorded both test figures."""
    root = tmp_path / "results" / "seed_cpu10"
    for mode in BEST:
        for seed in range(4):
            fake_run(root, "seed", mode, seed, LAST[mode][seed], 0.9)
            final = root / "runs" / f"seed_{mode}_s{seed}" / "final.json"
            f = json.loads(final.read_text())
            final.write_text(json.dumps({**f, "test_top1_best_val": BEST[mode][seed], "test_top5_best_val": 0.9,
                                         "best_val_step": 20}))
    (root / sweep.MANIFEST).write_text(json.dumps({"recipe": "fake", "layout": "seed", "modes": list(BEST),
                                                    "seeds": [0, 1, 2, 3, 4], "references": [], "overrides": {}}))
    return root


def test_the_headline_states_the_answer_from_the_runs(answer):
    text = headline.write_headline(answer.parent)
    assert text == (answer.parent / "headline.md").read_text()
    d = np.subtract(BEST["towers"], BEST["merged"])
    mean, _, ci = (100 * v for v in headline.stats.mean_std_ci(d))
    p = stats.ttest_rel(BEST["towers"], BEST["merged"]).pvalue
    assert (f"towers - merged (best-val weights) = {mean:+.1f} points, 95% CI [{mean - ci:+.1f}, {mean + ci:+.1f}] "
            f"(paired t p = {p:.3f}): no difference detected with 4 seeds of 5 so far.") in text
    assert "towers - half (best-val weights) = +21.5 points" in text
    assert "towers better, with 4 seeds of 5 so far" in text
    assert "**12 of 15 runs finished**" in text
    m, _, c = headline.stats.mean_std_ci(BEST["towers"])
    last, _, lc = headline.stats.mean_std_ci(LAST["towers"])
    assert (f"| towers | 4/5 | 4/5 | {100 * m:.1f} [{100 * (m - c):.1f}, {100 * (m + c):.1f}] | "
            f"{100 * last:.1f} [{100 * (last - lc):.1f}, {100 * (last + lc):.1f}] | 1,006 | 2.00 | 101.5 |") in text
    rank = stats.wilcoxon(d, method="exact").pvalue
    assert f"| towers - merged | 4 | {mean:+.1f} [{mean - ci:+.1f}, {mean + ci:+.1f}] | {p:.3f} | {rank:.3f} |" in text
    assert "![Each seed's test top-1 per mode](seed_cpu10/paired.png)" in text
    # the first screen: the verdict, then the figure, then the tables
    assert text.index("towers - merged (best-val weights) =") < text.index("![Each seed") < text.index("| mode |")


def test_a_verdict_says_which_way_only_when_the_interval_excludes_zero():
    def d(mean, ci, n=10):
        return {"n": n, "mean": mean, "ci95": ci, "p": 0.01}

    assert headline.verdict("a - b", d(0.03, 0.01), 10).endswith("towers better, with 10 seeds.")
    assert headline.verdict("a - b", d(-0.03, 0.01), 10).endswith("towers worse, with 10 seeds.")
    assert headline.verdict("a - b", d(0.03, 0.04), 10).endswith("no difference detected with 10 seeds.")
    assert "[+2.0, +4.0]" in headline.verdict("a - b", d(0.03, 0.01), 10)
    too_few = headline.verdict("a - b", d(0.03, float("nan"), n=1), 10)
    assert too_few == "a - b: 1 paired seed(s) so far, too few for an interval."


def test_the_report_draws_each_seeds_modes_side_by_side(answer):
    report.report(answer)
    assert (answer / headline.FIGURE).stat().st_size > 10_000
    md = (answer / "table.md").read_text()
    assert "test top-1 at best val" in md and "of the weights of the best validation top-1" in md
    assert "| towers - merged, best-val weights | 4 |" in md and "| towers - merged, last weights | 4 |" in md


def test_headline_comparisons_are_found_in_order(tmp_path):
    for name in ("paper_logits_nvidia-h200", "seed_cpu", "seed_cpu10", "paper_cpu"):
        (tmp_path / name).mkdir()
        (tmp_path / name / sweep.MANIFEST).write_text("{}")
    assert [f.name for f in headline.headline_folders(tmp_path)] == ["seed_cpu10", "paper_logits_nvidia-h200"]
