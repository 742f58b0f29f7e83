"""Training recipes: one frozen dataclass and named presets (big_vision style).

``get_recipe("paper", epochs=20)`` returns the preset with overrides; unknown names and unknown
keys are errors that repeat the bad value.
"""

from __future__ import annotations

import dataclasses
import math

from .data import RESIZES
from .kernels import parse_kernels
from .spec import INITS

# How a run trains (alexnet_split.train.resolve_engine): Keras fit, or the JAX device loop.
ENGINES = ("auto", "fit", "device")
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras mixed-precision policies a recipe may use
OPTIMIZERS = ("sgd", "adam")  # sgd: PaperSGD, the paper's momentum update (Section 5); adam: Keras's
PREFER = ("auto", "gpu", "cpu")  # device kinds for the towers (alexnet_split.devices.configure_devices)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one run trains. Its length is ``steps`` (SGD steps, validating every ``eval_every``)
    or ``epochs`` (passes over the training images, validating after each): exactly one is set."""

    name: str
    optimizer: str = "sgd"  # "sgd": PaperSGD, the paper's momentum update | "adam"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float | None = 5e-4  # sgd: through the momentum (Section 5); adam: Keras's decoupled decay
    batch_size: int = 128
    steps: int | None = None  # run length in SGD steps (a cap: the plateau rule may stop the run earlier)
    epochs: int | None = None  # or in epochs
    eval_every: int | None = None  # steps between validations (with `steps`); None: after every epoch
    lr_drop_patience: int | None = None  # steps without a better val accuracy before lr /= 10; None: fixed lr
    max_lr_drops: int = 3  # Section 5: "reduced three times prior to termination"
    chance_patience: int | None = None  # steps; a run still at chance then ends as dead (None: runs to its length)
    augment: bool = True  # random input_size crops of image_size images + horizontal flips
    pca_lighting: float = 0.0  # sigma of the PCA colour augmentation (paper: 0.1)
    image_size: int = 256  # decoded square images
    resize: str = "crop"  # how an image becomes image_size: "crop" the paper's short side + centre | "squash" tflearn's
    input_size: int | None = None  # network input (crop); None: the layout's (227 / 224)
    ten_crop: bool = False  # test: average 4 corners + centre and their flips
    precision: str = "float32"  # "float32" | "mixed_bfloat16"
    bias_fill: float | None = None  # replace the paper's bias-1 init (Caffe found 0.1 trains)
    init: str = "paper"  # "paper" | "caffe" (biases 0.1) | "fan_in" (He-normal, biases 0); see build_model
    kernels: str = ""  # optional cheaper ops, comma-separated (alexnet_split.kernels.KERNELS); "": today's ops

    def __post_init__(self):
        choices_of = {"optimizer": OPTIMIZERS, "init": INITS, "precision": PRECISIONS, "resize": tuple(RESIZES)}
        for key, choices in choices_of.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"{key} must be one of {choices}, got {getattr(self, key)!r}")
        _check_values(self)
        # One spelling per set of options (KERNELS order), so that recipes compare equal key by key
        object.__setattr__(self, "kernels", ",".join(parse_kernels(self.kernels)))
        self._check_length()
        if self.input_size is not None and self.input_size > self.image_size:
            raise ValueError(f"input_size={self.input_size} is larger than image_size={self.image_size}")

    def _check_length(self):
        """Exactly one of steps and epochs; eval_every divides steps, and only steps."""
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"set exactly one of steps and epochs, got steps={self.steps!r}, epochs={self.epochs!r}")
        if self.steps is not None and (self.eval_every is None or self.steps % self.eval_every):
            raise ValueError(f"eval_every must divide steps, got steps={self.steps}, eval_every={self.eval_every!r}")
        if self.epochs is not None and self.eval_every is not None:
            raise ValueError(f"eval_every={self.eval_every} counts steps; a recipe measured in epochs "
                             f"(epochs={self.epochs}) validates after every epoch")

    def replace(self, **overrides) -> Recipe:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}; known: {sorted(known)}")
        return cls(**d)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What each numeric or boolean field accepts, (check, what it must be), so that a bad --set value
# fails before a run starts, naming its key and value. None passes where the field's type allows it.
_POSITIVE_INT = (lambda v: _is_int(v) and v >= 1, "a positive integer")
_RULES = {
    **{key: _POSITIVE_INT for key in ("batch_size", "image_size", "steps", "epochs", "eval_every", "lr_drop_patience",
                                      "chance_patience", "input_size")},
    "max_lr_drops": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "learning_rate": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "momentum": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (or null: none)"),
    "pca_lighting": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (0: off)"),
    "bias_fill": (_is_number, "a finite number (or null: the init's own biases)"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "ten_crop": (lambda v: isinstance(v, bool), "true or false"),
}
_NULLABLE = {f.name for f in dataclasses.fields(Recipe) if "None" in str(f.type)}


def _check_values(recipe: Recipe):
    for key, (ok, what) in _RULES.items():
        value = getattr(recipe, key)
        if not (value is None and key in _NULLABLE) and not ok(value):
            raise ValueError(f"{key} must be {what}, got {value!r}")


def paper() -> Recipe:
    """The paper's recipe (Krizhevsky et al. 2012, Sections 4-5), its length measured in steps.

    PaperSGD (momentum 0.9, weight decay 5e-4 through the momentum), batch 128, N(0, 0.01)
    weights with biases 1 in conv2, conv4, conv5, fc6, fc7; lr 0.01 divided by 10 when the
    validation accuracy has not improved for 1,000 steps, counted only once it has left chance,
    three times, and the run ends at the next such plateau or after 10,000 steps (the paper's 90
    ImageNet epochs were about 450,000 steps; 90 epochs of Flowers 17 would be 480 steps, fewer
    than a net at chance may need to leave it). A run still at chance after 5,000 steps ends as
    dead: the latest escape in this project's runs was step 2,850 of a batch-32 run
    (results/paper_cpu), 1,800 at batch 128 (results/paper_nvidia-h200). Validation every 50
    steps; random 227 crops of 256x256 images + flips, PCA lighting 0.1, 10-crop test.

    Command: ``alexnet-split compare --recipe paper --modes towers,merged,half --seeds 0,1,2,3,4``
    Hardware: a GPU (the accelerator machine runs it with KERAS_BACKEND=jax, one device).
    Runtime and accuracy: results/paper_nvidia-h200/table.md; the reduced CPU run is results/paper_cpu/.
    """
    return Recipe(name="paper", steps=10_000, eval_every=50, lr_drop_patience=1_000, chance_patience=5_000,
                  pca_lighting=0.1, ten_crop=True)


def paper_cpu() -> Recipe:
    """The paper's recipe under the reduced CPU protocol used for results/paper_cpu/.

    Same optimiser, init, schedule rule, augmentation and 10-crop test as ``paper``, but
    mixed_bfloat16, 131x131 crops of 148x148 images (the net's feature maps shrink; fc6 reads
    3x3x256), batch 32, at most 4,000 steps, and no early end for a run at chance (its merged
    run left chance at step 2,850).

    Command: ``alexnet-split compare --recipe paper_cpu --modes towers,merged,half --seeds 0``
    Hardware: this project's 2-core x86 CPU machine (TensorFlow, two logical CPU devices).
    Runtime and accuracy: measured in results/paper_cpu/table.md.
    """
    return paper().replace(name="paper_cpu", precision="mixed_bfloat16", image_size=148, input_size=131,
                           batch_size=32, steps=4_000, chance_patience=None)


def seed() -> Recipe:
    """The seed tutorial as written: Adam (Keras defaults), batch 64, categorical cross-entropy,
    no augmentation (the 224x224 images as they are), 100 epochs, fixed lr, centre-image test, on
    the images tflearn's ``oxflower17.load_data`` gave it: each whole image squashed to 224x224
    with LANCZOS (``resize="squash"``).

    Command: ``alexnet-split compare --recipe seed --layout seed --modes towers,merged,half``
    Hardware: a GPU (the accelerator machine runs it with KERAS_BACKEND=jax, one device).
    Runtime and accuracy: results/precision_nvidia-h200/ (towers, float32 vs bf16); the full
    table fills in results/seed_nvidia-h200/ (``experiments/accelerator_tables.py``).
    """
    return Recipe(name="seed", optimizer="adam", learning_rate=1e-3, weight_decay=None, batch_size=64,
                  epochs=100, max_lr_drops=0, augment=False, image_size=224, resize="squash")


def seed_cpu() -> Recipe:
    """The seed recipe under the reduced CPU protocol used for results/seed_cpu/: mixed_bfloat16,
    30 epochs instead of 100. (The committed results/seed_cpu runs predate ``resize``: they decoded
    with "crop", as their table's protocol line says.)

    Command: ``alexnet-split compare --recipe seed_cpu --layout seed --modes towers,merged,half --seeds 0,1,2``
    Hardware: this project's 2-core x86 CPU machine (TensorFlow, two logical CPU devices).
    Runtime and accuracy: measured in results/seed_cpu/table.md.
    """
    return seed().replace(name="seed_cpu", precision="mixed_bfloat16", epochs=30)


def seed_cpu10() -> Recipe:
    """The answer on a 2-core CPU: the seed tutorial's recipe on tflearn's images, 10 paired seeds.

    The seed's recipe: Adam 1e-3 (Keras defaults), batch 64, categorical cross-entropy, no
    augmentation, a fixed learning rate, centre-image test; on the images tflearn's
    ``oxflower17.load_data`` gives (each whole image squashed to 224x224 with LANCZOS,
    ``resize="squash"``); mixed_bfloat16; 60 epochs. Each run reports the test figures of its
    last weights and of its best-validation weights (chosen on the validation split only).

    Why 60 epochs: the 30-epoch ``seed_cpu`` runs were still rising (best epochs 25-29 of 30).
    A pilot of 80 epochs (results/seed_cpu10_pilot: towers and merged, seed 0) gave these
    10-epoch means of validation top-1 (epochs 1-10 ... 71-80): towers .16 .36 .39 .44 .45 .46
    .47 .45, merged .21 .37 .40 .46 .49 .49 .49 .48. Both stop rising by epoch 40-50 (merged at
    41-50, towers at 51-60), and neither gains after 60 while its validation loss keeps climbing
    (over-fitting). So 60 epochs: the plateau plus 10 epochs of margin for the slower seeds, and
    the best-validation figure does not depend on guessing the peak.

    Command: ``nice -n 10 python experiments/seed_cpu10.py --data DIR`` (towers / merged / half x
    seeds 0-9 into results/seed_cpu10, resumable; or ``alexnet-split compare --recipe seed_cpu10
    --layout seed --seeds 0,1,2,3,4,5,6,7,8,9``).
    Hardware: this project's 2-core x86 CPU machine (TensorFlow, towers on two logical CPU
    devices), two runs side by side, one core each (results/bench/cpu-2core-sweep.md).
    Runtime: about 3.5 h for the 30 runs (minutes per run side by side, measured: towers 11.3,
    merged 21.2, half 8.8). Expected accuracy (results/seed_cpu10/table.md, means of 10 seeds):
    test top-1 at the best validation epoch 53.4% towers, 52.7% merged, 53.3% half; of the last
    weights 47.9, 48.6 and 49.3%, with a much wider spread (a few runs end in a late dip).
    """
    return seed().replace(name="seed_cpu10", precision="mixed_bfloat16", epochs=60)


def quick() -> Recipe:
    """A smoke run: 2 epochs at 67x67 crops of 76x76 images, Adam 1e-4, fixed lr, batch 32.

    Command: ``alexnet-split train --recipe quick --out runs/quick``. Hardware: any CPU.
    Runtime and accuracy: a smoke test, not a result: it only shows that everything runs
    (the run folder's final.json records its runtime); the tests check that it learns their colour-coded
    synthetic data.
    """
    return paper().replace(name="quick", optimizer="adam", learning_rate=1e-4, weight_decay=None, steps=None,
                           eval_every=None, epochs=2, lr_drop_patience=None, chance_patience=None, image_size=76,
                           input_size=67, batch_size=32, ten_crop=False, pca_lighting=0.0)


PRESETS = {f.__name__: f for f in (paper, paper_cpu, seed, seed_cpu, seed_cpu10, quick)}

# A finished run is the result of the recipe asked for when they agree key by key (recipe_differences).
# Runs written before a field existed record no value for it: they trained as its dataclass default
# does, except for the fields below, added after runs were committed, with the value those runs had.
ADDED_SINCE = {"chance_patience": None, "resize": "crop", "kernels": ""}
# Recorded values that mean what today's value means for a finished run: (key, recorded, today). The
# seed presets spelled "fixed lr" lr_drop_patience=10**6 before it was None; a finished run without
# the dead-run rule left chance before it could fire or ran to its cap (its final.json says which).
EQUIVALENT = {("lr_drop_patience", 10**6, None), ("chance_patience", None, 5_000)}


def recipe_differences(recorded: dict, recipe: Recipe) -> list[str]:
    """"key recorded -> asked" for each key where a run's recorded recipe (config.json) is not
    `recipe`; empty when the run is that recipe's."""
    wanted = recipe.to_dict()
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}
    differ = []
    for key in sorted(set(recorded) | set(wanted)):
        if key not in wanted:
            differ.append(f"{key} {recorded[key]!r} -> (no such key)")
            continue
        had = recorded[key] if key in recorded else ADDED_SINCE.get(key, defaults[key])
        if had != wanted[key] and (key, had, wanted[key]) not in EQUIVALENT:
            was = repr(recorded[key]) if key in recorded else "(not recorded)"
            differ.append(f"{key} {was} -> {wanted[key]!r}")
    return differ


def get_recipe(name: str, **overrides) -> Recipe:
    try:
        recipe = PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; presets: {sorted(PRESETS)}") from None
    return recipe.replace(**overrides) if overrides else recipe
