"""The training step's placement: with every tower layer inside ``tf.device`` (forward ops and
variables: :func:`alexnet_split.devices.device_scope`, entered by :mod:`alexnet_split.layers`),
two more things must hold for the towers to really live on separate devices (docs/placement.md, "How
the placement is made real" shows each failing without its fix):

1. Backward ops: Keras's default ``train_step`` differentiates with ``GradientTape``, whose
   gradient ops carry no device and land on device 0. :class:`PlacedModel` differentiates with
   ``tf.gradients``, which colocates each gradient op with its forward op.
2. Optimizer state and updates: Keras creates slot variables and runs ``update_step`` outside any
   device scope. :func:`place_optimizer` wraps both so that they run on the variable's device.

Under any other Keras backend neither applies: the model runs on the backend's default device.
"""

from __future__ import annotations

import warnings

import keras

from .devices import is_tensorflow
from .optimizers import PaperSGD

# --------------------------------------------------------------------------- optimizer


def _device_of(variable) -> str:
    v = variable.value if isinstance(variable, keras.Variable) else variable
    return v.device


def place_optimizer(optimizer):
    """Make `optimizer` create each slot variable on, and update it on, its weight's device.

    Wraps per-instance methods, so the optimizer's class (and its saved config) is unchanged:

    * ``add_variable_from_reference``: slots (momentum, Adam's m and v) are created on the
      device of the weight they belong to.
    * ``_backend_update_step``: runs once per device group. Keras's TF backend passes all
      gradients through one ``IdentityN`` (a single-replica all-reduce) that would otherwise
      pull every tower's gradients to device 0 and back; the shared learning rate is read once
      and sent to each device as one scalar.
    * ``update_step`` and ``_apply_weight_decay``: the per-weight arithmetic runs on the
      weight's device, under a name scope ``update_<weight>`` that the placement log shows.

    Idempotent.
    """
    if getattr(optimizer, "_alexnet_split_placed", False):
        return optimizer
    import tensorflow as tf

    add_ref = optimizer.add_variable_from_reference
    backend_update_step = optimizer._backend_update_step
    update_step = optimizer.update_step

    def add_variable_from_reference(reference_variable, name=None, initializer="zeros"):
        with tf.device(_device_of(reference_variable)):
            return add_ref(reference_variable, name=name, initializer=initializer)

    def placed_backend_update_step(grads, variables, learning_rate):
        learning_rate = tf.convert_to_tensor(learning_rate, name="shared_learning_rate")
        for device, idx in _group_by_device(variables).items():
            with tf.device(device):
                backend_update_step([grads[i] for i in idx], [variables[i] for i in idx],
                                    tf.identity(learning_rate))

    fused_momentum = (type(optimizer) in (keras.optimizers.SGD, PaperSGD) and optimizer.momentum
                      and not optimizer.nesterov)
    # PaperSGD's decay goes into the gradient, so the fused kernel applies it through the momentum.
    decayed = optimizer.decayed_gradient if isinstance(optimizer, PaperSGD) else None

    def placed_update_step(gradient, variable, learning_rate):
        with tf.device(variable.device), tf.name_scope(_update_scope(variable)):
            if not fused_momentum:
                return update_step(gradient, variable, learning_rate)
            # Keras's SGD makes 4 passes over each weight (m*momentum, g*lr, m.assign,
            # w.assign_add); this fused kernel computes the same m <- momentum*m - lr*g, w <- w + m
            # in one, which matters for the memory-bound fc6/fc7 updates.
            m = optimizer.momentums[optimizer._get_variable_index(variable)].value
            gradient = decayed(gradient, variable) if decayed else gradient
            return tf.raw_ops.ResourceApplyKerasMomentum(
                var=variable.handle, accum=m.handle, lr=tf.cast(learning_rate, variable.dtype),
                grad=tf.cast(gradient, variable.dtype), momentum=tf.cast(optimizer.momentum, variable.dtype),
                use_nesterov=False)

    def apply_weight_decay(variables):
        # Keras's decoupled decay, w -= w * wd * lr, but per device and with the shared
        # learning rate read once (Keras reads it once per weight, each read on device 0).
        if optimizer.weight_decay is None:
            return
        learning_rate = tf.convert_to_tensor(optimizer.learning_rate, name="shared_learning_rate")
        for device, idx in _group_by_device(variables).items():
            with tf.device(device):
                lr = tf.identity(learning_rate)
                for i in idx:
                    v = variables[i]
                    if optimizer._use_weight_decay(v):
                        v = v.value if isinstance(v, keras.Variable) else v
                        with tf.name_scope(_update_scope(v)):
                            v.assign_sub(v * tf.cast(optimizer.weight_decay, v.dtype) * tf.cast(lr, v.dtype))

    optimizer.add_variable_from_reference = add_variable_from_reference
    optimizer._backend_update_step = placed_backend_update_step
    optimizer.update_step = placed_update_step
    optimizer._apply_weight_decay = apply_weight_decay
    optimizer._alexnet_split_placed = True
    return optimizer


def _group_by_device(variables) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(variables):
        groups.setdefault(_device_of(v), []).append(i)
    return groups


def _update_scope(variable) -> str:
    # tf.Variable names are "t1_conv2/conv/kernel:0"; keep the layer path so the runtime log
    # shows which tower an update op belongs to.
    return "update_" + variable.name.split(":")[0].replace("/", "_")


# --------------------------------------------------------------------------- model


class PlacedModel(keras.Model):
    """A Functional model whose training step keeps every op on its tower's device.

    Built under TensorFlow with explicit devices; the graph is the same Functional graph as an
    unplaced model, so it saves, loads and summarises like any Keras model. Loaded under another
    backend it behaves as a plain Functional model.
    """

    def compile(self, optimizer="rmsprop", *args, jit_compile="auto", **kwargs):
        if not is_tensorflow():
            return super().compile(optimizer, *args, jit_compile=jit_compile, **kwargs)
        if jit_compile is True:
            warnings.warn(
                "PlacedModel: jit_compile=True would fuse all towers into one XLA cluster on one "
                "device; compiling without XLA to keep the per-tower placement.",
                stacklevel=2,
            )
        super().compile(optimizer, *args, jit_compile=False, **kwargs)
        place_optimizer(self.optimizer)

    def compile_from_config(self, config):
        # Keras skips a custom compile() on load unless this is overridden; the restored
        # optimizer must be placed *before* it builds its slots.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, *args):
        if not is_tensorflow():
            return super().train_step(*args)  # JAX's train_step(state, data)
        import tensorflow as tf

        (data,) = args
        if tf.executing_eagerly():
            warnings.warn(
                "PlacedModel: run_eagerly=True builds backward ops without devices; "
                "use the default graph mode for per-tower placement of gradients.",
                stacklevel=2,
            )
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        variables = self.trainable_variables
        # tf.gradients colocates every gradient op with its forward op (GradientTape does not).
        grads = tf.gradients(self.optimizer.scale_loss(loss), [v.value for v in variables])
        self.optimizer.apply(grads, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def model_class(devices):
    """The Model class for `build_model`: PlacedModel when placing, else plain keras.Model."""
    return PlacedModel if devices and is_tensorflow() else keras.Model


keras.saving.register_keras_serializable(package="alexnet_split")(PlacedModel)
