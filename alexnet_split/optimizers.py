"""The paper's SGD: weight decay that goes through the momentum (Krizhevsky et al. 2012, Section 5).

    v <- 0.9 v - 0.0005 * lr * w - lr * dL/dw
    w <- w + v

Keras's ``SGD(weight_decay=...)`` is decoupled instead (``w -= lr * wd * w`` outside the
momentum), which at momentum 0.9 is about 10x weaker in the steady state. Adding ``wd * w`` to
the gradient before Keras's momentum update gives the paper's rule exactly. Backend-agnostic
(``keras.ops``): it trains the same under TensorFlow and JAX; on TensorFlow,
:func:`alexnet_split.placement.place_optimizer` runs the same arithmetic on each weight's device.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="alexnet_split")
class PaperSGD(keras.optimizers.SGD):
    """SGD with momentum and the paper's coupled L2 weight decay.

    Args:
      learning_rate: the paper starts at 0.01.
      momentum: 0.9 in the paper.
      l2: the decay coefficient (0.0005 in the paper), applied to the weights (kernels) only:
        cuda-convnet's layer files, which trained the paper's net, set it per weight matrix and
        not on biases, as Caffe's bvlc_alexnet does (``decay_mult: 0`` on biases).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=5e-4, name="paper_sgd", **kwargs):
        if kwargs.get("weight_decay") is not None:
            raise ValueError(f"PaperSGD couples its decay through the momentum (l2={l2!r}); "
                             f"got Keras's decoupled weight_decay={kwargs['weight_decay']!r} as well")
        if not isinstance(l2, (int, float)) or l2 < 0:
            raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        self.l2 = float(l2)

    def decays(self, variable) -> bool:
        """Whether the decay applies to `variable`: weight matrices and conv kernels, not biases
        or normalisation parameters."""
        return self.l2 > 0 and len(variable.shape) >= 2

    def decayed_gradient(self, gradient, variable):
        """``gradient + l2 * w`` for decayed weights, else `gradient` (in the weight's dtype)."""
        gradient = ops.cast(gradient, variable.dtype)
        if not self.decays(variable):
            return gradient
        return ops.add(gradient, ops.multiply(ops.cast(self.l2, variable.dtype), variable))

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(self.decayed_gradient(gradient, variable), variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}
