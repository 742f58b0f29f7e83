"""Declarative architecture tables.

One row per layer, in the style of timm's VGG ``cfgs``: the wiring is data that a reviewer can
check line by line against Krizhevsky, Sutskever and Hinton (2012), Section 3 and Figure 2, and
against the seed tutorial's net (described in docs/placement.md, "Which layer lives where").

Widths are the *merged* widths (both towers together); the builder divides them by the number
of towers. ``cross=True`` means every tower's copy of the layer reads the outputs of *all*
towers (the paper's cross-GPU connections); otherwise it reads its own tower only. The first
row always reads the shared input image.
"""

from __future__ import annotations

import dataclasses
import math

from .data import NUM_CLASSES

NORMS = ("lrn", "batchnorm")
MODES = ("towers", "merged", "half")
# Weight initialisations (alexnet_split.models.build_model): the paper's (Section 5), Caffe's
# bvlc_alexnet biases, or He-normal fan-in scaling
INITS = ("paper", "caffe", "fan_in")
# The networks alexnet_split.bench times: towers on two devices or one, one grouped-conv model, merged, half
VARIANTS = ("towers_2dev", "towers_1dev", "grouped", "merged", "half")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    """One layer of a tower, with its merged (all-tower) width. Fields are keyword-only; a table row
    names only what differs from these defaults."""

    name: str
    kind: str  # "conv" | "dense"
    width: int
    kernel: int = 0
    stride: int = 1
    padding: str = "valid"
    norm: bool = False  # normalised (LRN or BN, per the model's `norm`)
    pool: tuple[int, int] | None = None  # (size, stride) max-pooling
    cross: bool = False  # reads all towers' outputs
    dropout: float = 0.0
    bias: float = 0.0  # bias initial value under the paper's init
    halved: bool = False  # `half` mode keeps only half of this layer's kernels


@dataclasses.dataclass(frozen=True)
class Arch:
    """A whole architecture: the rows plus the few layout-wide choices."""

    name: str
    input_shape: tuple[int, int, int]
    rows: tuple[Row, ...]
    norm: str  # default normalisation
    norm_after_pool: bool  # seed: pool -> BN; paper: LRN -> pool
    init: str  # "paper": N(0, 0.01) and per-row biases; "keras": glorot + zeros


# Krizhevsky et al. 2012, Section 3.5 and Figure 2; per-tower widths 48/128/192/192/128/2048/2048.
# Section 3.3: LRN after the ReLU of conv1 and conv2; Section 3.4: overlapping 3x3/2 pooling
# after the LRNs and after conv5. Section 4.2: dropout 0.5 on the first two FC layers.
# Section 5: biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere.
# `halved`: the footnote's one-GPU net halves conv1-conv4 but keeps conv5 and the FC layers.
PAPER_ROWS = (
    Row(name="conv1", kind="conv", width=96, kernel=11, stride=4, padding="valid", norm=True, pool=(3, 2), halved=True),
    Row(name="conv2", kind="conv", width=256, kernel=5, padding="same", norm=True, pool=(3, 2), bias=1.0, halved=True),
    Row(name="conv3", kind="conv", width=384, kernel=3, padding="same", cross=True, halved=True),
    Row(name="conv4", kind="conv", width=384, kernel=3, padding="same", bias=1.0, halved=True),
    Row(name="conv5", kind="conv", width=256, kernel=3, padding="same", pool=(3, 2), bias=1.0),
    Row(name="fc6", kind="dense", width=4096, cross=True, dropout=0.5, bias=1.0),
    Row(name="fc7", kind="dense", width=4096, cross=True, dropout=0.5, bias=1.0),
)
PAPER = Arch(
    name="paper",
    input_shape=(227, 227, 3),  # 224 does not divide: (224 - 11) / 4 + 1 = 54.25
    norm="lrn",
    norm_after_pool=False,
    init="paper",
    rows=PAPER_ROWS,
)

# The seed tutorial's Keras Sequential net (docs/placement.md, "Which layer lives where"): valid padding everywhere,
# 2x2/2 pooling, BatchNorm after every block (after the pool), dropout 0.4 then BN on the
# dense layers. Its extra 1000-unit dense layer sits between fc7 and the classifier: `fc7b`.
SEED_ROWS = (
    Row(name="conv1", kind="conv", width=96, kernel=11, stride=4, padding="valid", norm=True, pool=(2, 2), halved=True),
    Row(name="conv2", kind="conv", width=256, kernel=11, padding="valid", norm=True, pool=(2, 2), halved=True),
    Row(name="conv3", kind="conv", width=384, kernel=3, padding="valid", norm=True, cross=True, halved=True),
    Row(name="conv4", kind="conv", width=384, kernel=3, padding="valid", norm=True, halved=True),
    Row(name="conv5", kind="conv", width=256, kernel=3, padding="valid", norm=True, pool=(2, 2)),
    Row(name="fc6", kind="dense", width=4096, norm=True, cross=True, dropout=0.4),
    Row(name="fc7", kind="dense", width=4096, norm=True, cross=True, dropout=0.4),
    Row(name="fc7b", kind="dense", width=1000, norm=True, cross=True, dropout=0.4),
)
SEED = Arch(
    name="seed",
    input_shape=(224, 224, 3),
    norm="batchnorm",
    norm_after_pool=True,
    init="keras",
    rows=SEED_ROWS,
)

LAYOUTS: dict[str, Arch] = {a.name: a for a in (PAPER, SEED)}


def get_layout(layout: str | Arch) -> Arch:
    if isinstance(layout, Arch):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"Unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}") from None


def tower_widths(arch: Arch, mode: str, n_towers: int) -> tuple[int, list[int]]:
    """Return (number of towers, per-tower width of each row) for a mode.

    `towers`: every width split evenly over `n_towers`; `merged`: one tower at full width;
    `half`: one tower with the `halved` rows at half width (the paper's footnote 1).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; expected one of {list(MODES)}")
    if mode == "merged":
        return 1, [r.width for r in arch.rows]
    if mode == "half":
        return 1, [r.width // 2 if r.halved else r.width for r in arch.rows]
    if not isinstance(n_towers, int) or n_towers < 1:
        raise ValueError(f"n_towers must be a positive integer, got {n_towers!r}")
    for r in arch.rows:
        if r.width % n_towers:
            raise ValueError(
                f"n_towers={n_towers} does not divide {arch.name}.{r.name}'s width {r.width}; "
                f"valid tower counts: {valid_tower_counts(arch)}"
            )
    return n_towers, [r.width // n_towers for r in arch.rows]


def valid_tower_counts(arch: Arch) -> list[int]:
    g = 0
    for r in arch.rows:
        g = math.gcd(g, r.width)
    return [n for n in range(1, g + 1) if g % n == 0]


def spatial_sizes(arch: Arch, input_shape: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(height, width) after each conv row (after its pooling); raises if the input is too small."""
    h, w = input_shape[0], input_shape[1]
    out = []
    for r in arch.rows:
        if r.kind != "conv":
            break
        h, w = _conv_out(h, r), _conv_out(w, r)
        if r.pool:
            h, w = (h - r.pool[0]) // r.pool[1] + 1, (w - r.pool[0]) // r.pool[1] + 1
        if h < 1 or w < 1:
            raise ValueError(
                f"input_shape={tuple(input_shape)} is too small for layout {arch.name!r}: "
                f"the feature map vanishes at {r.name} ({h}x{w})"
            )
        out.append((h, w))
    return out


def _conv_out(n: int, r: Row) -> int:
    if r.padding == "same":
        return -(-n // r.stride)
    return (n - r.kernel) // r.stride + 1


def layer_flops(arch: Arch, mode: str = "towers", n_towers: int = 2, input_shape=None,
                num_classes: int = NUM_CLASSES) -> dict[str, int]:
    """Forward FLOPs per image of each block (a multiply-add counts 2; ReLU, LRN, pooling and
    bias adds are not counted, as is usual for AlexNet's "0.7 GMAC")."""
    n, widths = tower_widths(arch, mode, n_towers)
    input_shape = tuple(input_shape or arch.input_shape)
    sizes = spatial_sizes(arch, input_shape)
    h, w, cin = input_shape
    flops: dict[str, int] = {}
    prev = None  # previous row's per-tower width
    for i, (row, width) in enumerate(zip(arch.rows, widths, strict=True)):
        fan_in_channels = cin if prev is None else prev * (n if row.cross else 1)
        if row.kind == "conv":
            ho, wo = _conv_out(h, row), _conv_out(w, row)
            per_tower = 2 * ho * wo * width * row.kernel * row.kernel * fan_in_channels
            h, w = sizes[i]
        else:
            per_tower = 2 * h * w * fan_in_channels * width
            h = w = 1
        for k in range(n):
            flops[f"t{k}_{row.name}"] = per_tower
        prev = width
    flops["fc8"] = 2 * prev * n * num_classes
    return flops


def training_flops(arch: Arch, mode: str = "towers", n_towers: int = 2, input_shape=None,
                   num_classes: int = NUM_CLASSES) -> int:
    """FLOPs of one training step per image: the forward pass, the weight gradients (each as
    costly as its layer's forward) and the input gradients (likewise, except for conv1, whose
    input is the image and needs none)."""
    fwd = layer_flops(arch, mode, n_towers, input_shape, num_classes)
    first = arch.rows[0].name
    return 3 * sum(fwd.values()) - sum(v for k, v in fwd.items() if k.endswith(f"_{first}"))


def cross_device_bytes(arch: Arch, n_towers: int = 2, input_shape=None, num_classes: int = NUM_CLASSES,
                       batch: int = 1, bytes_per_value: int = 4) -> list[tuple[str, int, int]]:
    """(connection, forward bytes, backward bytes) that cross devices in one training step with
    tower k on device k and the shared layers on device 0: every cross row receives each other
    tower's previous output (and sends its gradient back), tower 0's device feeds the image to the
    other towers, and the classifier on device 0 receives towers 1..n-1's last outputs."""
    _, widths = tower_widths(arch, "towers", n_towers)
    input_shape = tuple(input_shape or arch.input_shape)
    sizes = spatial_sizes(arch, input_shape)
    out = [("image -> conv1", (n_towers - 1) * math.prod(input_shape) * batch * bytes_per_value, 0)]
    prev_values = None
    for i, (row, width) in enumerate(zip(arch.rows, widths, strict=True)):
        if row.cross and prev_values is not None:
            b = n_towers * (n_towers - 1) * prev_values * batch * bytes_per_value
            out.append((f"{arch.rows[i - 1].name} -> {row.name}", b, b))
        prev_values = (sizes[i][0] * sizes[i][1] if row.kind == "conv" else 1) * width
    b = (n_towers - 1) * prev_values * batch * bytes_per_value
    out.append((f"{arch.rows[-1].name} -> fc8", b, b))
    return out


def parameter_count(arch: Arch, mode: str = "towers", n_towers: int = 2, input_shape=None,
                    num_classes: int = NUM_CLASSES, norm: str | None = None) -> int:
    """Weights and biases of the network :func:`alexnet_split.models.build_model` builds, counted
    from the rows (BatchNorm adds 4 per normalised channel: scale, offset, moving mean and
    variance, as Keras counts them)."""
    n, widths = tower_widths(arch, mode, n_towers)
    input_shape = tuple(input_shape or arch.input_shape)
    sizes = spatial_sizes(arch, input_shape)
    norm = norm or arch.norm
    total, prev, spatial = 0, input_shape[-1], 1
    for i, (row, width) in enumerate(zip(arch.rows, widths, strict=True)):
        fan_in = prev * (n if row.cross and i > 0 else 1)
        if row.kind == "conv":
            weights = row.kernel * row.kernel * fan_in
            spatial = sizes[i][0] * sizes[i][1]
        else:
            weights, spatial = fan_in * spatial, 1
        bn = 4 if row.norm and norm == "batchnorm" else 0
        total += n * width * (weights + 1 + bn)
        prev = width
    return total + (prev * n * spatial + 1) * num_classes
