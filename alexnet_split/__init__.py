"""alexnet_split: the 2012 two-tower AlexNet with each tower on its own device.

Call :func:`configure_devices` first thing in the process (it may create logical devices, which
TensorFlow only allows before its runtime starts), then :func:`build_model`.
"""

import os

# TensorFlow's C++ INFO/WARNING lines drown the output; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .models import build_model, tower_layer_names
from .optimizers import PaperSGD
from .placement import PlacedModel, configure_devices, describe_devices, place_optimizer
from .spec import LAYOUTS, MODES, NORMS

__all__ = [
    "LAYOUTS",
    "MODES",
    "NORMS",
    "PaperSGD",
    "PlacedModel",
    "build_model",
    "configure_devices",
    "describe_devices",
    "place_optimizer",
    "tower_layer_names",
]
__version__ = "0.1.0"
