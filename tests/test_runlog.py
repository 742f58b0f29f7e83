import json

import pytest

from alexnet_split import runlog


def test_replacing_writes_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "state.json"
    runlog.write_json(target, {"step": 1})
    with pytest.raises(RuntimeError, match="killed"):
        with runlog.replacing(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".json" and runlog.TMP_MARK in tmp.name
            tmp.write_text('{"step": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"step": 1}  # the old file, untouched
    assert sorted(f.name for f in target.parent.iterdir()) == ["state.json"]  # no temporary left


def test_remove_partial_files_removes_only_what_replacing_leaves(tmp_path):
    left = [".step_000100.tmp4242.keras", ".state.tmp17.json", ".history.tmp9.csv"]
    kept = ["step_000100.keras", "state.json", ".hidden", "notes.tmp.txt", ".x.tmpdir"]
    for name in left + kept:
        (tmp_path / name).write_text("x")
    runlog.remove_partial_files(tmp_path)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(kept)
