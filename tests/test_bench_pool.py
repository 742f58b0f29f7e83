"""The side-by-side benchmark's arithmetic (alexnet_split.bench_pool): rates and the written table."""

import json

import pytest

from alexnet_split import bench_pool


def fake_run(folder, seconds, steps_per_epoch=10, batch=64):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"steps_per_epoch": steps_per_epoch,
                                                    "recipe": {"batch_size": batch}}))
    (folder / "timing.csv").write_text("step,seconds\n" + "".join(f"{10 * (i + 1)},{s}\n"
                                                                  for i, s in enumerate(seconds)))
    return folder


def test_the_steady_rate_leaves_out_the_first_epoch(tmp_path):
    run = fake_run(tmp_path / "r", [30.0, 8.0, 8.0, 4.0])  # the first epoch also builds the graph
    assert bench_pool.steady_rate(run) == pytest.approx(3 * 640 / 20.0)
    with pytest.raises(ValueError, match="needs at least 2 epochs"):
        bench_pool.steady_rate(fake_run(tmp_path / "one", [30.0]))


def test_the_table_gives_the_ratio_and_names_the_faster_arm(tmp_path):
    rows = [{"arm": "one run on all cores", "workers": 1, "cores_per_worker": 2, "runs": 1, "epochs": 4,
             "steady_img_s": 100.0, "end_to_end_img_s": 80.0, "wall_seconds": 40.0},
            {"arm": "one run per core side by side", "workers": 2, "cores_per_worker": 1, "runs": 2, "epochs": 4,
             "steady_img_s": 130.0, "end_to_end_img_s": 96.0, "wall_seconds": 66.0}]
    text = bench_pool.write(rows, tmp_path / "sweep", "cmd", "seed_cpu10", "seed", "towers")
    assert "Side by side / one run: **1.30x** (steady), 1.20x (end to end)" in text
    assert "The sweep runs 'one run per core side by side'." in text
    assert (tmp_path / "sweep.md").read_text() == text
    second = (tmp_path / "sweep.csv").read_text().splitlines()[2]
    assert second.startswith("one run per core side by side,2,1,2,4,130.0")
    rows[1]["steady_img_s"] = 90.0
    assert "0.90x" in bench_pool.write(rows, tmp_path / "s2", "cmd", "r", "seed", "towers")
    assert "The sweep runs 'one run on all cores'." in (tmp_path / "s2.md").read_text()
