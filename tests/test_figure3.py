"""The Figure 3 study: the colour score on kernels of known colour, the permutation test on towers
that do and do not specialise, the merged-run control, and the committed results regenerating."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from alexnet_split import figure3

ROOT = Path(__file__).resolve().parents[1]


def gabor(n, rng, size=11):
    """n oriented gratings under a Gaussian window, (size, size, n)."""
    y, x = np.mgrid[:size, :size] - size // 2
    out = []
    for _ in range(n):
        theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.15, 0.4), rng.uniform(0, 2 * np.pi)
        u = x * np.cos(theta) + y * np.sin(theta)
        out.append(np.exp(-(x ** 2 + y ** 2) / 18) * np.cos(2 * np.pi * freq * u + phase))
    return np.stack(out, -1)


def grey_kernels(n, rng):
    g = gabor(n, rng)
    return np.stack([g, g, g], 2) + 0.3  # same pattern on R, G, B, plus an offset the mean removal takes out


def opponent_kernels(n, rng):
    g = gabor(n, rng)
    return np.stack([g, -g, np.zeros_like(g)], 2)  # red against green: no luminance at all


def test_score_is_0_for_grey_1_for_opponent_two_thirds_for_noise():
    rng = np.random.default_rng(0)
    assert np.allclose(figure3.colour_specificity(grey_kernels(20, rng)), 0, atol=1e-12)
    assert np.allclose(figure3.colour_specificity(opponent_kernels(20, rng)), 1, atol=1e-12)
    noise = figure3.colour_specificity(figure3.untrained(2000))
    assert abs(noise.mean() - 2 / 3) < 0.01 and noise.min() > 0.4
    k = opponent_kernels(5, rng) + grey_kernels(5, rng)
    assert np.allclose(figure3.colour_specificity(k), figure3.colour_specificity(7.5 * k))  # scale-free
    assert np.allclose(figure3.colour_specificity(k), 0.5, atol=0.2)  # both parts present
    # blurring removes pixel noise, not structure: grey stays grey, opponent stays opponent
    assert np.allclose(figure3.colour_specificity(grey_kernels(5, rng), smooth=True), 0, atol=1e-12)
    assert np.allclose(figure3.colour_specificity(opponent_kernels(5, rng), smooth=True), 1, atol=1e-12)


def test_score_rejects_kernels_that_are_not_rgb_with_the_shape():
    with pytest.raises(ValueError, match=r"\(11, 11, 1, 4\)"):
        figure3.colour_specificity(np.zeros((11, 11, 1, 4)))


def write_run(folder: Path, mode: str, seed: int, kernels: dict, steps=500, finished=True, left_chance=100):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"mode": mode, "seed": seed, "layout": "paper"}))
    if finished:
        (folder / "final.json").write_text(json.dumps({"steps": steps, "test_top1": 0.5,
                                                       "steps_to_leave_chance": left_chance}))
    buf = io.BytesIO()
    np.savez(buf, **{k: v.astype(np.float16) for k, v in kernels.items()})
    (folder / "conv1.npz").write_bytes(buf.getvalue())


def test_a_grey_tower_beside_a_colour_tower_is_found_and_mixed_towers_are_not(tmp_path):
    rng = np.random.default_rng(1)
    noise = lambda: rng.normal(0, 0.02, (11, 11, 3, 48))  # noqa: E731
    # seed 0: the paper's picture, with the towers renumbered; seed 1: both towers the same mixture
    write_run(tmp_path / "runs/paper_towers_s0", "towers", 0,
              {"t0_conv1": opponent_kernels(48, rng) + noise(), "t1_conv1": grey_kernels(48, rng) + noise()})
    mixed = lambda: np.concatenate([grey_kernels(24, rng), opponent_kernels(24, rng)], -1) + noise()  # noqa: E731
    write_run(tmp_path / "runs/paper_towers_s1", "towers", 1, {"t0_conv1": mixed(), "t1_conv1": mixed()})
    write_run(tmp_path / "runs/paper_towers_s2", "towers", 2, {"t0_conv1": mixed(), "t1_conv1": mixed()},
              finished=False)
    write_run(tmp_path / "runs/paper_towers_s3", "towers", 3, {"t0_conv1": mixed(), "t1_conv1": mixed()},
              left_chance=None)
    runs, skipped = figure3.read_conv1_runs(tmp_path)
    assert [r["name"] for r in runs] == ["paper_towers_s0", "paper_towers_s1"]
    assert "paper_towers_s2: unfinished" in skipped[0] and "paper_towers_s3: never left chance" in skipped[1]
    a = figure3.analyse(runs, n_permutations=2000)
    split, mixed_row = a["towers"]
    assert split["d"] < -0.8 and split["p"] == 1 / 2001 and split["colour_tower"] == 0
    assert split["agnostic"] == [0, 48]
    assert abs(mixed_row["d"]) < 0.1 and mixed_row["p"] > 0.05
    assert a["n_split"] == 1 and a["binomial_p"] == pytest.approx(1 - 0.95 ** 2)
    # the rank-sum test beside the permutation test: the grey and the colour tower differ, the mixtures do not
    assert split["p_rank"] < 1e-6 and mixed_row["p_rank"] > 0.05
    assert "the rank-sum test, which does not use the means, finds 1 of 2" in figure3.verdict(a)
    assert "**In the 2 towers runs studied (500 steps, Flowers 17), the paper's claim holds only in part:**" \
        in figure3.verdict(a)


def test_merged_runs_give_the_random_split_control(tmp_path):
    rng = np.random.default_rng(2)
    both = np.concatenate([grey_kernels(48, rng), opponent_kernels(48, rng)], -1) + rng.normal(0, .02, (11, 11, 3, 96))
    write_run(tmp_path / "runs/paper_merged_s0", "merged", 0, {"t0_conv1": both})
    write_run(tmp_path / "runs/paper_towers_s0", "towers", 0,
              {"t0_conv1": grey_kernels(48, rng), "t1_conv1": opponent_kernels(48, rng)})
    md = figure3.figure3(tmp_path, tmp_path / "out", n_permutations=500, log=lambda *_: None)
    a = figure3.analyse(figure3.read_conv1_runs(tmp_path)[0], n_permutations=500)
    (control,) = a["controls"]
    # a random half of 48 grey + 48 colour kernels differs from the other half by much less than 1
    assert 0.05 < control["q95"] < 0.4
    assert a["towers"][0]["p_merged"] == 1 / 501  # a grey tower beside a colour one is far beyond those splits
    assert "paper_merged_s0 (500 steps): 95th percentile" in md
    assert "**In the 1 towers run studied (500 steps, Flowers 17), the paper's claim holds:**" in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["figure3.md", "grids", "scores.csv", "scores.png"]
    assert sorted(p.name for p in (tmp_path / "out/grids").iterdir()) == ["paper_merged_s0.png", "paper_towers_s0.png"]
    assert (tmp_path / "out/scores.csv").read_text().count("\n") == 1 + 96 + 96


def test_committed_figure3_regenerates(tmp_path):
    committed = (ROOT / "results/figure3/figure3.md").read_text()
    command = committed.split("Generated by `")[1].split("`")[0].split()
    assert command[:2] == ["alexnet-split", "figure3"] and command[-2] == "--out"
    folders = command[2:-2]
    md = figure3.figure3([ROOT / f for f in folders], tmp_path, log=lambda *_: None)
    for f in folders:
        md = md.replace((ROOT / f).as_posix(), f)
    # the study: every committed towers run of the paper table is in it
    assert md.replace(tmp_path.as_posix(), command[-1]) == committed
    for run in (ROOT / "results/paper_nvidia-h200/runs").glob("paper_towers_s*/final.json"):
        assert f"| {'paper_nvidia-h200-' if len(folders) > 1 else ''}{run.parent.name} | towers |" in committed


@pytest.mark.slow
def test_figure3_command_names_a_bad_folder(tmp_path):
    proc = cli("figure3", tmp_path / "nothing")
    assert proc.returncode != 0 and "nothing is not a folder" in proc.stderr
    proc = cli("figure3", tmp_path)
    assert proc.returncode != 0 and "no finished run with conv1.npz" in proc.stderr
