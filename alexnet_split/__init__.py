"""alexnet_split: the 2012 two-tower AlexNet with each tower on its own device.

Call :func:`configure_devices` first thing in the process (it may create logical devices, which
TensorFlow only allows before its runtime starts), then :func:`build_model`.
"""

from .runlog import quiet_tensorflow_import

quiet_tensorflow_import()  # before anything imports TensorFlow: its C++ banner reads like errors

from .devices import configure_devices, describe_devices  # noqa: E402
from .models import build_model, tower_layer_names, with_softmax  # noqa: E402
from .optimizers import PaperSGD  # noqa: E402
from .placement import PlacedModel, place_optimizer  # noqa: E402
from .spec import LAYOUTS, MODES, NORMS  # noqa: E402

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
    "with_softmax",
]
__version__ = "0.1.0"
