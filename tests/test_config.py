"""Recipes: frozen presets, unknown keys and bad values are errors that repeat the value."""

import json
from pathlib import Path

import pytest

from alexnet_split import config

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_recipes_reject_unknown_keys_and_values():
    with pytest.raises(ValueError, match=r"unknown recipe keys \['epochz'\]"):
        config.get_recipe("paper", epochz=3)
    with pytest.raises(ValueError, match=r"unknown recipe 'papr'"):
        config.get_recipe("papr")
    with pytest.raises(ValueError, match=r"precision must be .* got 'fp8'"):
        config.get_recipe("paper", precision="fp8")
    with pytest.raises(ValueError, match=r"unknown recipe keys \['x'\]"):
        config.Recipe.from_dict({"name": "a", "x": 1})
    p = config.get_recipe("paper")
    assert (p.optimizer, p.momentum, p.weight_decay, p.batch_size, p.learning_rate) == ("sgd", 0.9, 5e-4, 128, 0.01)
    s = config.get_recipe("seed")
    assert (s.optimizer, s.batch_size, s.augment, s.weight_decay) == ("adam", 64, False, None)
    assert (s.resize, config.get_recipe("seed_cpu").resize) == ("squash", "squash")  # tflearn's images
    with pytest.raises(ValueError, match=r"resize must be one of \('crop', 'squash'\), got 'stretch'"):
        config.get_recipe("paper", resize="stretch")
    for name, make in config.PRESETS.items():
        assert "Command:" in make.__doc__, name
        assert config.Recipe.from_dict(make().to_dict()) == make()


# The paper's recipe, every field pinned; § = a section of Krizhevsky et al. 2012 (summarised in
# REFERENCE.md §1 and §5). Adding a Recipe field makes the pins fail on purpose, naming
# the new key: decide its paper value and add it here.
PAPER = {
    "name": "paper",
    "optimizer": "sgd",  # §5: stochastic gradient descent with momentum (PaperSGD)
    "learning_rate": 0.01,  # §5: "initialized at 0.01"
    "momentum": 0.9,  # §5: "momentum of 0.9"
    "weight_decay": 5e-4,  # §5: "weight decay of 0.0005", inside the momentum update
    "batch_size": 128,  # §5: "batch size of 128 examples"
    "steps": 10_000,  # this project's cap (§5's 90 ImageNet epochs are ~450k steps; see config.paper)
    "epochs": None,  # the run length is in steps
    "eval_every": 50,  # this project's validation interval (steps)
    "lr_drop_patience": 1_000,  # §5: lr /10 "when the validation error rate stopped improving"
    "max_lr_drops": 3,  # §5: "reduced three times prior to termination"
    "chance_patience": 5_000,  # this project's rule: a run still at chance after 5,000 steps ends as dead
    "augment": True,  # §4.1: random crops + horizontal reflections
    "pca_lighting": 0.1,  # §4.1: PCA lighting, Gaussian "standard deviation 0.1"
    "image_size": 256,  # §2/§4.1: images rescaled to 256x256
    "resize": "crop",  # §2: "rescaled the image such that the shorter side was of length 256, and then cropped out the
    # central 256x256 patch" (the seed presets use "squash", tflearn's whole image squashed)
    "input_size": None,  # the layout's 227 (§1 of REFERENCE.md: 224 in the text, 227 fits conv1)
    "ten_crop": True,  # §4.1: test on 4 corners + centre and their reflections (10 patches)
    "precision": "float32",  # 2012 GPUs trained in float32
    "bias_fill": None,  # §5: biases 1 in conv2, conv4, conv5, fc6, fc7 (the "paper" init), not replaced
    "init": "paper",  # §5: weights N(0, 0.01), biases 1 / 0
    "kernels": "",  # today's ops (alexnet_split.kernels: the cheaper options are the GPU benchmark's to adopt)
}
# The reduced CPU protocol: the paper's recipe with exactly these differences (config.paper_cpu).
PAPER_CPU = {**PAPER, "name": "paper_cpu", "precision": "mixed_bfloat16", "image_size": 148, "input_size": 131,
             "batch_size": 32, "steps": 4_000, "chance_patience": None}


def test_kernels_are_checked_and_spelled_one_way():
    """A recipe's kernels: known names only (the error repeats the value and lists the choices), in
    KERNELS order, each once, so that two spellings of the same options are the same recipe; a run
    recorded before the field existed used today's ops."""
    assert all(config.get_recipe(name).kernels == "" for name in config.PRESETS)
    r = config.get_recipe("paper", kernels=" shared_conv1,shifted_lrn,shifted_lrn")
    assert r.kernels == "shifted_lrn,shared_conv1"
    assert r == config.get_recipe("paper", kernels="shifted_lrn,shared_conv1")
    with pytest.raises(ValueError, match=r"unknown kernels \['lrn'\] in 'lrn,first_max_pool'; choices: shifted_lrn, "
                                         r"first_max_pool, shared_conv1"):
        config.get_recipe("paper", kernels="lrn,first_max_pool")
    with pytest.raises(ValueError, match="kernels must be comma-separated names .* got 3"):
        config.get_recipe("paper", kernels=3)
    recorded = {k: v for k, v in config.get_recipe("paper").to_dict().items() if k != "kernels"}
    assert config.recipe_differences(recorded, config.get_recipe("paper")) == []
    assert config.recipe_differences(recorded, r) == ["kernels (not recorded) -> 'shifted_lrn,shared_conv1'"]


@pytest.mark.parametrize("name, pinned", [("paper", PAPER), ("paper_cpu", PAPER_CPU)])
def test_paper_recipes_are_pinned_field_by_field(name, pinned):
    """Guards the paper presets against a changed value (pca_lighting, lr_drop_patience, max_lr_drops,
    ten_crop...) or an unpinned new field."""
    recipe = config.get_recipe(name).to_dict()
    assert recipe.keys() == pinned.keys(), (f"Recipe fields changed: new {sorted(recipe.keys() - pinned.keys())}, "
                                            f"gone {sorted(pinned.keys() - recipe.keys())}; update the pin")
    assert recipe == pinned


# Run folders that no compare.json describes, with the overrides their experiment script passed:
# experiments/dead_start_control.py trains preset "paper" with {"precision": <the arm's>, "steps": 300}
# (its --steps default; control.md says 300 steps); lanes_bf16 came from the same script at commit 8ecb171,
# whose lanes arm (code since removed) used the bf16 overrides.
AD_HOC_OVERRIDES = {
    "dead_start_control/single_bf16": {"precision": "mixed_bfloat16", "steps": 300},
    "dead_start_control/single_f32": {"precision": "float32", "steps": 300},
    "dead_start_control/lanes_bf16": {"precision": "mixed_bfloat16", "steps": 300},
    "bn_stats_control": {},  # experiments/bn_stats_control.py: one seed_cpu10 run as the preset trains it
}
# The committed seed_cpu and precision_* runs decoded with "crop", the only resize then; the seed
# presets now say "squash" (tflearn's images), so those runs are not today's preset until rerun.
SEED_RUNS_BEFORE_SQUASH = ["resize (not recorded) -> 'squash'"]


def _overrides(path: Path) -> dict:
    """The overrides a committed run was trained with: its comparison's compare.json (beside runs/), or
    AD_HOC_OVERRIDES for folders an experiment script wrote without one."""
    folder = path.parent.parent.relative_to(RESULTS).as_posix()
    if folder in AD_HOC_OVERRIDES:
        return AD_HOC_OVERRIDES[folder]
    manifest = path.parents[2] / "compare.json"
    assert path.parent.parent.name == "runs" and manifest.is_file(), \
        f"{path}: no compare.json beside runs/ and no AD_HOC_OVERRIDES entry: record where its overrides are"
    manifest = json.loads(manifest.read_text())
    assert manifest["recipe"] == json.loads(path.read_text())["recipe"]["name"], path
    return manifest["overrides"]


def test_committed_runs_recorded_their_presets_recipe():
    """Guards the presets (paper's pca_lighting, lr_drop_patience, ten_crop...) against drifting from the
    recipes the committed results were trained with, key by key as train's finished-run rule compares
    them (config.recipe_differences)."""
    paths = sorted(RESULTS.rglob("config.json"))
    assert len(paths) >= 34  # the committed runs today: a wrong RESULTS path must not pass vacuously
    problems = []
    for path in paths:
        recorded = json.loads(path.read_text())["recipe"]
        before_squash = recorded["name"] in ("seed", "seed_cpu") and "resize" not in recorded
        known = SEED_RUNS_BEFORE_SQUASH if before_squash else []
        differ = config.recipe_differences(recorded, config.get_recipe(recorded["name"], **_overrides(path)))
        if differ != known:
            problems.append(f"{path.relative_to(RESULTS)}: {differ}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("key, value, message", [
    ("learning_rate", "fast", "learning_rate must be a number > 0, got 'fast'"),
    ("learning_rate", 0, "learning_rate must be a number > 0, got 0"),
    ("momentum", 1.5, "momentum must be a number in [0, 1], got 1.5"),
    ("weight_decay", -1e-4, "weight_decay must be a number >= 0 (or null: none), got -0.0001"),
    ("pca_lighting", "0.1", "pca_lighting must be a number >= 0 (0: off), got '0.1'"),
    ("bias_fill", float("nan"), "bias_fill must be a finite number (or null: the init's own biases), got nan"),
    ("bias_fill", True, "bias_fill must be a finite number"),
    ("augment", "yes", "augment must be true or false, got 'yes'"),
    ("input_size", "67", "input_size must be a positive integer, got '67'"),
    ("max_lr_drops", -1, "max_lr_drops must be an integer >= 0, got -1"),
])
def test_numeric_fields_are_numbers_in_range(key, value, message):
    """A bad --set value fails when the recipe is made (before any folder or optimizer), repeating it."""
    with pytest.raises(ValueError) as e:
        config.get_recipe("quick", **{key: value})
    assert str(e.value).startswith(message)


def test_nullable_fields_accept_null():
    r = config.get_recipe("paper", weight_decay=None, bias_fill=30, steps=None, eval_every=None, epochs=3,
                          chance_patience=None, lr_drop_patience=None)
    assert (r.weight_decay, r.bias_fill, r.steps, r.epochs) == (None, 30, None, 3)


def test_every_committed_run_is_its_recipe_and_a_changed_recipe_is_named():
    """What train's finished-run rule compares (the committed runs: the test above): a changed key is
    named with both values; a key recorded before it existed takes its value of then."""
    quick = config.get_recipe("quick").to_dict()
    assert config.recipe_differences(quick, config.get_recipe("quick", epochs=3, bias_fill=30)) == [
        "bias_fill None -> 30", "epochs 2 -> 3"]
    old = {k: v for k, v in quick.items() if k != "init"}  # written before `init` existed: its default then
    assert config.recipe_differences(old, config.get_recipe("quick")) == []
    assert config.recipe_differences(old, config.get_recipe("quick", init="caffe")) == [
        "init (not recorded) -> 'caffe'"]
