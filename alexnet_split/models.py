"""The model builder: one straight-line Functional builder for every layout and mode."""

from __future__ import annotations

import keras

from . import placement, spec
from .data import NUM_CLASSES
from .devices import check_devices
from .kernels import parse_kernels
from .layers import ConvBlock, DenseBlock, Preprocess, SharedConv

# Pixel values arrive in [0, 255]. The paper subtracts the mean activity (Section 2; these are
# the ImageNet means Caffe's AlexNet uses); the seed tutorial fed tflearn's [0, 1] pixels.
_PREPROCESS = {
    "paper": dict(scale=1.0, offset=(-123.68, -116.78, -103.94)),
    "seed": dict(scale=1.0 / 255.0, offset=(0.0, 0.0, 0.0)),
}


def build_model(layout="paper", mode="towers", num_classes=NUM_CLASSES, norm=None, input_shape=None, devices=None,
                n_towers=2, name=None, bias_fill=None, init="paper", logits=False, kernels=()):
    """Build AlexNet as an uncompiled Keras Functional model.

    Args:
      layout: ``"paper"`` (Krizhevsky et al. 2012, Section 3 and Figure 2: 227x227 input, LRN,
        overlapping 3x3/2 pooling, fc 2048 per tower, dropout 0.5) or ``"seed"`` (the merged
        Keras tutorial: 11x11 conv2, 2x2 pooling, BatchNorm everywhere, dense 4096/4096/1000).
      mode: ``"towers"`` (``n_towers`` towers of 1/n width; same-tower connections at conv2,
        conv4, conv5 and cross-connections at conv3 and every dense layer), ``"merged"`` (one
        tower at full width, the seed's form) or ``"half"`` (one tower with half the kernels in
        conv1-conv4 and conv5 and the dense layers at full size: the one-GPU baseline of the
        paper's Section 6.1 / footnote 1).
      num_classes: size of the softmax classifier ``fc8``.
      norm: ``"lrn"`` or ``"batchnorm"``; ``None`` takes the layout's own. LRN is applied within
        each tower; on dense layers only BatchNorm exists.
      input_shape: ``(height, width, 3)``; ``None`` takes the layout's (227 or 224 square).
      devices: device names, tower k on ``devices[k]``; shared layers (``preprocess``, ``fc8``)
        on ``devices[0]``. ``None`` places nothing. See :func:`alexnet_split.configure_devices`.
      n_towers: number of towers in ``"towers"`` mode; must divide every layer's width.
      name: model name; default ``alexnet_<layout>_<mode>``.
      bias_fill: under the paper's init, the value for the biases the paper sets to 1 (Caffe
        found 1 can stall training and used 0.1); ``None`` keeps 1.
      init: for the ``paper`` layout, one of :data:`alexnet_split.spec.INITS`: ``"paper"`` (Section 5: N(0, 0.01)
        weights, biases 1 in conv2, conv4, conv5, fc6, fc7, else 0), ``"caffe"`` (the same with
        those biases 0.1, as Caffe's bvlc_alexnet) or ``"fan_in"`` (He-normal weights, std
        sqrt(2 / fan_in) from each kernel's real fan-in, in conv2-conv5, fc6 and fc7: in towers
        mode the same-tower layers conv2, conv4 and conv5 have half the merged fan-in; conv1,
        which reads pixels rather than unit-variance inputs, and the classifier fc8 keep
        N(0, 0.01); all biases 0). The ``seed`` layout keeps Keras's defaults.
      logits: end at fc8's logits instead of its softmax: the model the runner trains, so that
        the loss is computed from logits on every backend (see :func:`with_softmax`).
      kernels: optional cheaper ops, names from :data:`alexnet_split.kernels.KERNELS` (a tuple or
        a comma-separated string); none keeps today's ops. See :mod:`alexnet_split.kernels`.

    Layers are named ``preprocess``, ``t{k}_conv1`` ... ``t{k}_conv5``, ``t{k}_fc6``,
    ``t{k}_fc7`` (and the seed's ``t{k}_fc7b``) and ``fc8``. Inputs are pixel values in [0, 255].
    """
    arch = spec.get_layout(layout)
    norm = arch.norm if norm is None else norm
    input_shape = tuple(arch.input_shape if input_shape is None else input_shape)
    _check_arguments(arch, norm, init, bias_fill, num_classes, input_shape)
    kernels = parse_kernels(kernels)
    n, widths = spec.tower_widths(arch, mode, n_towers)
    devices = check_devices(devices, n)
    # merged and half already compute conv1 as one conv over the image: shared_conv1 concerns towers only
    shared_conv1 = "shared_conv1" in kernels and mode == "towers"
    if shared_conv1 and devices and len(set(devices)) > 1:
        raise ValueError(f"kernels shared_conv1 computes every tower's conv1 in one op on one device; devices="
                         f"{list(devices)!r} places the towers on different devices (drop the option or the devices)")

    def device(k):
        return devices[k] if devices else None

    inputs = keras.Input(input_shape, name="image")
    image = Preprocess(**_PREPROCESS[arch.name], device=device(0), name="preprocess")(inputs)
    towers = [image] * n
    for i, (row, width) in enumerate(zip(arch.rows, widths, strict=True)):
        kernel_init, bias_init = _initializers(arch, row, bias_fill, init)
        norm_k = norm if row.norm and (row.kind == "conv" or norm == "batchnorm") else None
        sources = [(towers if n > 1 else towers[0]) if row.cross else towers[k] for k in range(n)]
        blocks = [_block(arch, row, width, norm_k, kernel_init, bias_init, device(k), f"t{k}_{row.name}", kernels)
                  for k in range(n)]
        if shared_conv1 and i == 0:  # every tower reads the image: one conv for all of them
            towers = list(SharedConv(blocks, device=device(0), name=row.name)(image))
        else:
            towers = [block(source) for block, source in zip(blocks, sources, strict=True)]
    kernel_init, _ = _initializers(arch, None, bias_fill, init)
    outputs = DenseBlock(num_classes, activation="logits" if logits else "softmax", kernel_initializer=kernel_init,
                         device=device(0), name="fc8")(towers if n > 1 else towers[0])
    model_cls = placement.model_class(devices)
    return model_cls(inputs, outputs, name=name or f"alexnet_{arch.name}_{mode}")


def _check_arguments(arch, norm, init, bias_fill, num_classes, input_shape):
    """What :func:`build_model` refuses, before building anything."""
    if init not in spec.INITS:
        raise ValueError(f"init must be one of {spec.INITS}, got {init!r}")
    if arch.init != "paper" and (init != "paper" or bias_fill is not None):
        raise ValueError(f"init={init!r}, bias_fill={bias_fill!r}: the {arch.name} layout keeps Keras's default "
                         "initialisation (glorot_uniform, zeros biases); init and bias_fill apply to the paper layout")
    if norm not in spec.NORMS:
        raise ValueError(f"norm must be one of {spec.NORMS} or None, got {norm!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}")
    spec.spatial_sizes(arch, input_shape)  # raises, naming the layer, if the input is too small


def _block(arch, row, width, norm, kernel_init, bias_init, device, name, kernels=()):
    """One tower's block of table row `row` at `width`: a ConvBlock (with the kernel options) or a DenseBlock."""
    if row.kind == "conv":
        return ConvBlock(width, row.kernel, row.stride, row.padding, norm=norm, norm_after_pool=arch.norm_after_pool,
                         pool=row.pool, kernel_initializer=kernel_init, bias_initializer=bias_init, kernels=kernels,
                         device=device, name=name)
    return DenseBlock(width, dropout=row.dropout, norm=norm, kernel_initializer=kernel_init,
                      bias_initializer=bias_init, device=device, name=name)


def with_softmax(model):
    """`model` (built with ``logits=True``) with a float32 softmax on its output: the same layers
    and weights, class probabilities out, as users load and call it."""
    probs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(model.output)
    return keras.Model(model.input, probs, name=model.name)


CAFFE_BIAS = 0.1  # bvlc_alexnet's value for the biases the paper sets to 1


def _initializers(arch, row, bias_fill=None, init="paper"):
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0 (or one
    of the alternatives in :func:`build_model`'s `init`). `row` None is the classifier fc8."""
    if arch.init != "paper":
        return "glorot_uniform", "zeros"
    if init == "fan_in":
        # He-normal where a ReLU layer reads ReLU outputs; conv1 reads raw pixels minus the mean
        # (std ~60, not 1) and fc8's fan-in is the same in every mode, so both keep N(0, 0.01).
        hidden = row is not None and row is not arch.rows[0]
        return (keras.initializers.HeNormal() if hidden else keras.initializers.RandomNormal(0.0, 0.01),
                keras.initializers.Constant(0.0))
    bias = row.bias if row is not None else 0.0
    if bias:
        bias = bias_fill if bias_fill is not None else CAFFE_BIAS if init == "caffe" else bias
    return keras.initializers.RandomNormal(0.0, 0.01), keras.initializers.Constant(bias)


def tower_blocks(model) -> list:
    """The model's layers, each :class:`~alexnet_split.layers.SharedConv` replaced by the tower
    blocks it holds (``t0_conv1``, ``t1_conv1``, ... of the ``shared_conv1`` option)."""
    return [block for layer in model.layers for block in (layer.blocks if isinstance(layer, SharedConv) else [layer])]


def tower_layer_names(model) -> dict[int, list[str]]:
    """{k: names of tower k's blocks}, read from the ``t{k}_`` prefixes."""
    towers: dict[int, list[str]] = {}
    for layer in tower_blocks(model):
        head, _, rest = layer.name.partition("_")
        if head.startswith("t") and head[1:].isdigit() and rest:
            towers.setdefault(int(head[1:]), []).append(layer.name)
    return towers


def build_grouped_model(layout="paper", num_classes=NUM_CLASSES, norm=None, input_shape=None, n_groups=2, name=None):
    """The towers network as a one-device grouped-convolution network (Caffe's ``group: 2``).

    Same-tower layers are ``Conv2D(groups=n_groups)``; layers where the towers cross (the first
    conv, which reads the image, and every ``cross`` row) are full layers whose output channels
    are the towers' outputs side by side; LRN is applied per group. Numerically the same network
    as ``build_model(layout, "towers", n_towers=n_groups)``; the benchmark's single-device baseline.
    """
    from keras import layers as kl

    arch = spec.get_layout(layout)
    norm = arch.norm if norm is None else norm
    input_shape = tuple(arch.input_shape if input_shape is None else input_shape)
    spec.spatial_sizes(arch, input_shape)
    spec.tower_widths(arch, "towers", n_groups)  # checks that n_groups divides the widths
    inputs = keras.Input(input_shape, name="image")
    x = Preprocess(**_PREPROCESS[arch.name], name="preprocess")(inputs)
    for i, row in enumerate(arch.rows):
        if row.kind == "conv":
            x = _grouped_conv(x, arch, row, 1 if (i == 0 or row.cross) else n_groups, norm, n_groups)
        else:
            x = _grouped_dense(x, arch, row, norm)
    kernel_init, _ = _initializers(arch, None)
    x = kl.Dense(num_classes, kernel_initializer=kernel_init, name="fc8")(x)
    probs = kl.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, probs, name=name or f"alexnet_{arch.name}_grouped")


def _grouped_conv(x, arch, row, groups, norm, n_groups):
    """One conv row of :func:`build_grouped_model`: Conv2D(groups) -> ReLU, then norm and pool."""
    from keras import layers as kl

    from .layers import LRN

    kernel_init, bias_init = _initializers(arch, row)
    x = kl.Conv2D(row.width, row.kernel, strides=row.stride, padding=row.padding, groups=groups, activation="relu",
                  kernel_initializer=kernel_init, bias_initializer=bias_init, name=row.name)(x)
    norm_layer = pool = None
    if row.norm:
        norm_layer = (LRN(groups=n_groups, name=f"{row.name}_norm") if norm == "lrn"
                      else kl.BatchNormalization(name=f"{row.name}_norm"))
    if row.pool:
        pool = kl.MaxPooling2D(row.pool[0], row.pool[1], name=f"{row.name}_pool")
    for stage in ([pool, norm_layer] if arch.norm_after_pool else [norm_layer, pool]):
        if stage is not None:
            x = stage(x)
    return x


def _grouped_dense(x, arch, row, norm):
    """One dense row of :func:`build_grouped_model` (every one crosses the towers)."""
    from keras import layers as kl

    if not row.cross:
        raise ValueError(f"{arch.name}.{row.name}: a dense layer without a cross-connection has no "
                         "grouped equivalent here")
    kernel_init, bias_init = _initializers(arch, row)
    if len(x.shape) > 2:
        x = kl.Flatten(name=f"{row.name}_flatten")(x)
    x = kl.Dense(row.width, activation="relu", kernel_initializer=kernel_init, bias_initializer=bias_init,
                 name=row.name)(x)
    if row.dropout:
        x = kl.Dropout(row.dropout, name=f"{row.name}_dropout")(x)
    if row.norm and norm == "batchnorm":
        x = kl.BatchNormalization(name=f"{row.name}_norm")(x)
    return x


def init_summary(layout="paper", bias_fill=None, init="paper") -> dict:
    """The initialisation `build_model` gives `layout` (Section 5), as a run's config.json records it:
    its scheme, the weights' initializer and the biases (runs written before this recorded the
    weights under "kernels", a word `build_model` keeps for its optional ops)."""
    arch = spec.get_layout(layout)
    if arch.init != "paper":  # the recipe's init (its default "paper") is the paper layout's: not used here
        return {"scheme": "keras", "weights": "glorot_uniform", "biases": "zeros",
                "recipe_init": f"{init!r} not used: the {layout} layout keeps Keras's defaults"}
    biases = {row.name: _initializers(arch, row, bias_fill, init)[1].value for row in arch.rows}
    weights = ("he_normal (truncated, std sqrt(2 / fan_in)) in conv2-fc7; conv1 and fc8 normal(0, 0.01)"
               if init == "fan_in" else "normal(0, 0.01)")
    return {"scheme": init, "weights": weights, "biases": {**biases, "fc8": 0.0}}


def format_summary(model, flops: dict[str, int]) -> str:
    """Per layer: output shape, parameters, forward MFLOPs (`flops`, from
    :func:`alexnet_split.spec.layer_flops`) and device; what `alexnet-split summary` prints."""
    rows = [("layer", "output shape", "params", "MFLOPs", "device")]
    for layer in model.layers[1:]:
        out = "x".join(str(d) for d in layer.output.shape[1:])
        mflops = f"{flops[layer.name] / 1e6:,.1f}" if layer.name in flops else "-"
        rows.append((layer.name, out, f"{layer.count_params():,}", mflops, getattr(layer, "device", None) or "default"))
    total = sum(flops.values())
    rows.append(("total", "", f"{model.count_params():,}", f"{total / 1e6:,.1f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, 4) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(-1, "-" * len(lines[0]))
    return "\n".join([f"{model.name}: forward FLOPs per image (multiply-add = 2)"] + lines)
