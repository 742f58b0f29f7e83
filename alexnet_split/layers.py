"""Backend-agnostic layers: LRN and the placed blocks that make up a tower.

Each block is one row of a :mod:`alexnet_split.spec` table for one tower (``t1_conv3``: tower 1's
conv3 with its ReLU, normalisation and pooling). A block enters its device in ``__init__``
(Dropout's seed state), ``build`` (weights) and ``call`` (forward ops), so a tower's variables and
forward ops sit on its device. Cross-connections are list inputs, concatenated *inside* the
receiving block, i.e. on the receiving tower's device: that is where tensors cross devices.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from . import kernels as kernel_ops
from .devices import device_scope

register = keras.saving.register_keras_serializable(package="alexnet_split")


@register
class LRN(layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012, Section 3.3).

    ``b_c = a_c / (k + alpha * sum_{|j-c| <= n//2} a_j^2) ** beta`` with the paper's k=2, n=5,
    alpha=1e-4, beta=0.75. ``alpha`` multiplies the plain sum, as in the paper's formula and
    ``tf.nn.local_response_normalization(depth_radius=2, bias=2, alpha=1e-4, beta=0.75)``;
    cuda-convnet and Caffe divide alpha by n (their alpha=1e-4 is 2e-5 here). Written with
    ``keras.ops`` so that it runs on every backend.

    ``groups`` > 1 normalises each block of C/groups channels on its own (the towers of a
    grouped-convolution network), so no window spans two towers.

    ``impl``: ``"band"`` (the window sums as one matmul, in float32 under mixed precision, the
    gradient from saved intermediates: the ops the committed runs used) or ``"shifted"``
    (:func:`alexnet_split.kernels.shifted_lrn`: the compute dtype in and out, float32 shifted adds
    inside, a gradient recomputed from x; the ``shifted_lrn`` kernel option).
    """

    IMPLS = ("band", "shifted")

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, groups=1, impl="band", **kwargs):
        super().__init__(**kwargs)
        if depth_radius < 0:
            raise ValueError(f"LRN depth_radius must be >= 0, got {depth_radius!r}")
        if groups < 1:
            raise ValueError(f"LRN groups must be >= 1, got {groups!r}")
        if impl not in self.IMPLS:
            raise ValueError(f"LRN impl must be one of {self.IMPLS}, got {impl!r}")
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta
        self.groups, self.impl = groups, impl

    def call(self, x):
        if self.impl == "shifted":
            return kernel_ops.shifted_lrn(x, self.depth_radius, self.bias, self.alpha, self.beta, self.groups)
        if x.dtype != "float32":
            # Under mixed precision the normalisation runs in float32, as Keras's own
            # BatchNormalization does: in bfloat16, k + alpha * sum rounds to k (its spacing at 2
            # is 2^-6), and CPU kernels for bf16 elementwise ops were slower than float32 ones
            # (results/bench/profile-cpu-2core-bf16-before.md).
            return ops.cast(self.call(ops.cast(x, "float32")), x.dtype)
        c = x.shape[-1]
        # The window sums are one matmul with a 0/1 band matrix (block-diagonal for groups): the
        # gradients of 2n+1 channel slices (StridedSliceGrad) were the top cost of a training step
        # (results/bench/profile-cpu-2core-before.md).
        band = ops.convert_to_tensor(self._band(c), dtype=x.dtype)
        shape = ops.shape(x)
        k, alpha, beta = self.bias, self.alpha, self.beta

        def window(v):
            return ops.reshape(ops.matmul(ops.reshape(v, (-1, c)), band), shape)

        @ops.custom_gradient
        def lrn(x):
            s = k + alpha * window(ops.square(x))
            if beta == 0.75:  # the paper's beta: s^-3/4 = rsqrt(s) * sqrt(rsqrt(s)), cheaper than Pow
                r = ops.rsqrt(s)
                p = r * ops.sqrt(r)
            else:
                p = ops.power(s, -beta)
            y = x * p

            def grad(*args, upstream=None):
                # d/dx_j of sum_i g_i x_i s_i^-beta, with s_i = k + alpha sum_{j near i} x_j^2 and the
                # band symmetric: g_j p_j - 2 alpha beta x_j sum_{i near j} g_i y_i / s_i. Autodiff of
                # the forward ops made ~10 elementwise passes here, the top cost of a bf16 step
                # (results/bench/profile-cpu-2core-bf16-before.md); this is 5 and one matmul.
                g = args[0] if upstream is None else upstream
                return g * p - (2.0 * alpha * beta) * x * window(g * y / s)

            return y, grad

        return lrn(x)

    def _band(self, c):
        if c % self.groups:
            raise ValueError(f"LRN groups={self.groups} does not divide the {c} channels")
        i = np.arange(c)
        same_group = (i[:, None] // (c // self.groups)) == (i[None, :] // (c // self.groups))
        return ((np.abs(i[:, None] - i[None, :]) <= self.depth_radius) & same_group).astype("float32")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta, "groups": self.groups, "impl": self.impl}


@register
class FirstMaxPooling2D(layers.MaxPooling2D):
    """``MaxPooling2D`` ("valid" padding) whose gradient goes to the first maximum of each window
    by masks, not by scatter (:func:`alexnet_split.kernels.first_max_pool`; the ``first_max_pool``
    kernel option): the same values and, on ties too, the same gradients, deterministic on a GPU."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        if padding != "valid":
            raise ValueError(f"FirstMaxPooling2D supports padding='valid', got {padding!r}")
        super().__init__(pool_size, strides, padding, **kwargs)

    def call(self, inputs):
        if self.data_format != "channels_last":
            raise ValueError(f"FirstMaxPooling2D takes channels_last inputs, got data_format={self.data_format!r}")
        return kernel_ops.first_max_pool(inputs, self.pool_size, self.strides)


def _norm_layer(norm, name="norm", lrn_impl="band"):
    if norm is None:
        return None
    if norm == "lrn":
        return LRN(impl=lrn_impl, name=name)
    if norm == "batchnorm":
        return layers.BatchNormalization(name=name)
    raise ValueError(f"norm must be None, 'lrn' or 'batchnorm', got {norm!r}")


class PlacedBlock(layers.Layer):
    """A layer whose variables and forward ops live on one device (``None``: the default)."""

    def __init__(self, device=None, **kwargs):
        super().__init__(**kwargs)
        self.device = device

    def _stages(self):
        raise NotImplementedError

    def build(self, input_shape):
        shape = _gathered_shape(input_shape)
        with device_scope(self.device):
            for layer in self._stages():
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        with device_scope(self.device):
            x = _gather(inputs)
            for layer in self._stages():
                x = layer(x, training=training) if _takes_training(layer) else layer(x)
            return x

    def compute_output_shape(self, input_shape):
        shape = _gathered_shape(input_shape)
        for layer in self._stages():
            shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {**super().get_config(), "device": self.device}


def _takes_training(layer):
    return isinstance(layer, (layers.BatchNormalization, layers.Dropout))


def _gather(inputs):
    """Concatenate a cross-connection's inputs (on the current device), flattening for dense."""
    if not isinstance(inputs, (list, tuple)):
        return inputs
    return inputs[0] if len(inputs) == 1 else ops.concatenate(list(inputs), axis=-1)


def _gathered_shape(input_shape):
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
        first = tuple(input_shape[0])
        return first[:-1] + (sum(s[-1] for s in input_shape),)
    return tuple(input_shape)


@register
class Preprocess(PlacedBlock):
    """``x * scale + offset`` per channel: pixel values in [0, 255] to the network's input range."""

    def __init__(self, scale=1.0, offset=(0.0, 0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), tuple(float(o) for o in offset)

    def _stages(self):
        return ()

    def call(self, inputs, training=None):
        with device_scope(self.device):
            x = ops.cast(inputs, self.compute_dtype)
            return x * self.scale + ops.convert_to_tensor(self.offset, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": list(self.offset)}


@register
class ConvBlock(PlacedBlock):
    """Conv -> ReLU, then normalisation and max-pooling (in the order the layout says)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", norm=None, norm_after_pool=False,
                 pool=None, kernel_initializer="glorot_uniform", bias_initializer="zeros", kernels=(), **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.norm, self.norm_after_pool = norm, norm_after_pool
        self.pool = tuple(pool) if pool else None
        # the kernel options that change a block's ops: shifted_lrn, first_max_pool
        self.kernels = tuple(k for k in kernel_ops.parse_kernels(kernels) if k != "shared_conv1")
        pool_cls = FirstMaxPooling2D if "first_max_pool" in self.kernels else layers.MaxPooling2D
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        with device_scope(self.device):
            self.conv = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, activation="relu",
                                      kernel_initializer=self.kernel_initializer,
                                      bias_initializer=self.bias_initializer, name="conv")
            self.norm_layer = _norm_layer(norm, lrn_impl="shifted" if "shifted_lrn" in self.kernels else "band")
            self.pool_layer = pool_cls(self.pool[0], self.pool[1], name="pool") if self.pool else None

    def _stages(self):
        tail = [self.pool_layer, self.norm_layer] if self.norm_after_pool else [self.norm_layer, self.pool_layer]
        return [self.conv] + [layer for layer in tail if layer is not None]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "norm": self.norm,
                "norm_after_pool": self.norm_after_pool, "pool": list(self.pool) if self.pool else None,
                "kernels": list(self.kernels),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}


@register
class SharedConv(PlacedBlock):
    """The towers' first conv blocks (``t{k}_conv1``, each with its own 11x11x3x48 kernel and bias) as
    ONE conv over the image: their kernels side by side, input channels zero-padded to
    `pad_channels` for tensor cores (:func:`alexnet_split.kernels.padded_conv`); then the ReLU and
    each tower's own normalisation and pooling on its slice of the channels. The same function and
    weights as the towers' separate convs (the ``shared_conv1`` kernel option, for one device).
    Output: the towers' outputs, a list. ``blocks`` are the towers' ConvBlocks (their weights, their
    names: :func:`alexnet_split.models.tower_blocks` lists them in this layer's place)."""

    def __init__(self, blocks, pad_channels=8, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [b if isinstance(b, ConvBlock) else keras.saving.deserialize_keras_object(b) for b in blocks]
        self.pad_channels = pad_channels
        first = self.blocks[0]
        if any((b.kernel_size, b.strides, b.padding) != (first.kernel_size, first.strides, first.padding)
               for b in self.blocks):
            raise ValueError(f"SharedConv {self.name}: the blocks' convs differ in kernel size, stride or padding")

    def build(self, input_shape):
        with device_scope(self.device):
            for block in self.blocks:
                if not block.built:  # from_config builds the blocks it deserialises
                    block.build(input_shape)

    def call(self, inputs, training=None):
        with device_scope(self.device):
            x = _gather(inputs)
            convs = [block.conv for block in self.blocks]
            kernel = ops.concatenate([ops.cast(c.kernel, self.compute_dtype) for c in convs], axis=-1)
            bias = ops.concatenate([ops.cast(c.bias, self.compute_dtype) for c in convs], axis=-1)
            y = ops.relu(kernel_ops.padded_conv(x, kernel, convs[0].strides, convs[0].padding, self.pad_channels)
                         + bias)
            outputs, start = [], 0
            for block in self.blocks:
                out = y[..., start:start + block.filters]
                start += block.filters
                for layer in block._stages()[1:]:  # after the conv: norm and pool, in the block's order
                    out = layer(out, training=training) if _takes_training(layer) else layer(out)
                outputs.append(out)
            return outputs

    def compute_output_shape(self, input_shape):
        return [block.compute_output_shape(input_shape) for block in self.blocks]

    def get_config(self):
        return {**super().get_config(), "pad_channels": self.pad_channels,
                "blocks": [keras.saving.serialize_keras_object(b) for b in self.blocks]}


@register
class DenseBlock(PlacedBlock):
    """(Flatten) -> Dense -> activation -> Dropout -> BatchNorm, the seed's order.

    The classifier takes ``activation="softmax"`` (probabilities) or ``"logits"`` (no
    activation): either way its output is float32, so that mixed precision does not round the
    probabilities or the loss's input.
    """

    def __init__(self, units, activation="relu", dropout=0.0, norm=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if norm == "lrn":
            raise ValueError("DenseBlock: LRN normalises across conv channels; use norm=None or 'batchnorm'")
        self.units, self.activation, self.dropout, self.norm = units, activation, float(dropout), norm
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        classifier = activation in ("softmax", "logits")
        with device_scope(self.device):
            self.flatten = layers.Flatten(name="flatten")
            self.dense = layers.Dense(units, activation=None if classifier else activation, name="dense",
                                      kernel_initializer=self.kernel_initializer,
                                      bias_initializer=self.bias_initializer)
            self.softmax = (layers.Activation("softmax" if activation == "softmax" else "linear", dtype="float32",
                                              name=activation) if classifier else None)
            self.dropout_layer = layers.Dropout(self.dropout, name="dropout") if self.dropout else None
            self.norm_layer = _norm_layer(norm)

    def _stages(self):
        stages = [self.flatten, self.dense, self.softmax, self.dropout_layer, self.norm_layer]
        return [layer for layer in stages if layer is not None]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "norm": self.norm,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
