"""Training recipes: one frozen dataclass and named presets (big_vision style).

``get_recipe("paper", epochs=20)`` returns the preset with overrides; unknown names and unknown
keys are errors that repeat the bad value.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str = "sgd"  # "sgd" (with momentum) | "adam"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float | None = 5e-4
    batch_size: int = 128
    epochs: int = 90
    lr_drop_patience: int = 5  # epochs without a better val accuracy before lr /= 10
    max_lr_drops: int = 3  # Section 5: "reduced three times prior to termination"
    augment: bool = True  # random input_size crops of image_size images + horizontal flips
    pca_lighting: float = 0.0  # sigma of the PCA colour augmentation (paper: 0.1)
    image_size: int = 256  # decoded square images
    input_size: int | None = None  # network input (crop); None: the layout's (227 / 224)
    ten_crop: bool = False  # test: average 4 corners + centre and their flips
    precision: str = "float32"  # "float32" | "mixed_bfloat16"
    bias_fill: float | None = None  # replace the paper's bias-1 init (Caffe found 0.1 trains)

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'mixed_bfloat16', got {self.precision!r}")
        for key in ("batch_size", "epochs", "image_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.input_size is not None and self.input_size > self.image_size:
            raise ValueError(f"input_size={self.input_size} is larger than image_size={self.image_size}")

    def replace(self, **overrides) -> "Recipe":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}; known: {sorted(known)}")
        return cls(**d)


def paper() -> Recipe:
    """The paper's recipe (Krizhevsky et al. 2012, Section 5), full protocol.

    SGD momentum 0.9, weight decay 5e-4, batch 128, N(0, 0.01) weights with biases 1 in conv2,
    conv4, conv5, fc6, fc7, lr 0.01 divided by 10 when validation accuracy plateaus (3 times),
    90 epochs; random 227 crops of 256x256 images + flips, PCA lighting 0.1, 10-crop test.

    Command: ``alexnet-split compare --recipe paper --modes towers,merged,half --seeds 0,1,2,3,4``
    Hardware: a GPU (the accelerator machine runs it with KERAS_BACKEND=jax, one device).
    Runtime: not yet measured on a GPU in this project; on this 2-core CPU one epoch of 680
    images takes about 20 s in mixed_bfloat16, so 90 epochs x 15 runs is out of reach there.
    Expected accuracy: not measured yet (see results/ for what was run).
    """
    return Recipe(name="paper", pca_lighting=0.1, ten_crop=True)


def paper_cpu() -> Recipe:
    """The paper's recipe under the reduced CPU protocol used for results/paper_cpu/.

    Same optimiser, init, augmentation and 10-crop test as ``paper``, but mixed_bfloat16,
    131x131 crops of 148x148 images (the net's feature maps shrink; fc6 reads 3x3x256), batch 32
    and a fixed number of epochs (see results/paper_cpu/table.md for the count, the runtime and
    the accuracy measured).

    Command: ``alexnet-split compare --recipe paper_cpu --modes towers,merged,half --seeds 0,1,2
    --reference ../seed_cpu:seed:merged:seed-as-written``
    Hardware: this project's 2-core x86 CPU machine (TensorFlow, two logical CPU devices).
    Runtime and accuracy: see results/paper_cpu/table.md. In this budget (20 epochs of 21 steps)
    the paper's SGD recipe does not leave chance level: the loss settles at ln 17.
    """
    return paper().replace(name="paper_cpu", precision="mixed_bfloat16", image_size=148, input_size=131,
                           batch_size=32, epochs=20)


def seed() -> Recipe:
    """The seed tutorial as written: Adam (Keras defaults), batch 64, categorical cross-entropy,
    no augmentation (the 224x224 images as they are), 100 epochs, plain centre-image test.

    Command: ``alexnet-split compare --recipe seed --layout seed --modes towers,merged,half``
    Hardware: a GPU (about 20 s for 100 epochs on an H200, REFERENCE.md §4).
    Expected accuracy: best validation 0.63-0.67 measured on an H200 (REFERENCE.md §4). This
    project's towers runs on an H200 (JAX, 2 seeds, results/precision_nvidia-h200/): best
    validation 0.56-0.57, test top-1 0.47 (float32) and 0.50 (mixed_bfloat16), 36-60 s per run
    including compilation.
    """
    return Recipe(name="seed", optimizer="adam", learning_rate=1e-3, weight_decay=None, batch_size=64,
                  epochs=100, lr_drop_patience=10 ** 6, max_lr_drops=0, augment=False, image_size=224)


def seed_cpu() -> Recipe:
    """The seed recipe under the reduced CPU protocol used for results/seed_cpu/: mixed_bfloat16,
    30 epochs instead of 100.

    Command: ``alexnet-split compare --recipe seed_cpu --layout seed --modes towers,merged,half --seeds 0,1,2``
    Hardware: this project's 2-core x86 CPU machine (TensorFlow, two logical CPU devices).
    Runtime: 2.3 (half) to 4.6 (merged) minutes of epochs per run, 9 runs.
    Accuracy measured: test top-1 47.0% (towers), 45.3% (merged), 45.1% (half), means over 3 seeds;
    the differences are not significant (results/seed_cpu/table.md).
    """
    return seed().replace(name="seed_cpu", precision="mixed_bfloat16", epochs=30)


def quick() -> Recipe:
    """A smoke run: 2 epochs at 67x67 crops of 76x76 images, Adam 1e-4 (the paper's SGD stays at
    chance for many epochs), batch 32.

    Command: ``alexnet-split train --recipe quick --out runs/quick``; about half a minute on 2 cores.
    Accuracy: near chance on Flowers 17 (it only shows that everything runs); it does learn the
    colour-coded synthetic data of the tests.
    """
    return paper().replace(name="quick", optimizer="adam", learning_rate=1e-4, weight_decay=None, epochs=2,
                           image_size=76, input_size=67, batch_size=32, ten_crop=False, pca_lighting=0.0)


PRESETS = {f.__name__: f for f in (paper, paper_cpu, seed, seed_cpu, quick)}


def get_recipe(name: str, **overrides) -> Recipe:
    try:
        recipe = PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; presets: {sorted(PRESETS)}") from None
    return recipe.replace(**overrides) if overrides else recipe
