"""alexnet_split: the 2012 two-tower AlexNet with each tower on its own device.

Call :func:`configure_devices` first thing in the process (it may create logical devices, which
TensorFlow only allows before its runtime starts), then :func:`build_model`.
"""

import importlib
import sys
from pathlib import Path

from .runlog import quiet_tensorflow_import

quiet_tensorflow_import()  # before anything imports TensorFlow: its C++ banner reads like errors

_EXPORTS = {
    "LAYOUTS": "spec",
    "MODES": "spec",
    "NORMS": "spec",
    "PaperSGD": "optimizers",
    "PlacedModel": "placement",
    "build_model": "models",
    "configure_devices": "devices",
    "describe_devices": "devices",
    "place_optimizer": "placement",
    "tower_layer_names": "models",
    "with_softmax": "models",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def _started_as_cli() -> bool:
    """Whether this process is ``alexnet-split`` (or ``python -m alexnet_split.cli``)."""
    argv = getattr(sys, "orig_argv", [])
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    return Path(sys.argv[0]).name == "alexnet-split" or (sys.argv[0] == "-m" and module == "alexnet_split.cli")


# The command line imports what each command needs, so that its --help answers without starting
# TensorFlow. Any other import loads everything now: Keras finds the package's saved classes
# (PlacedModel, PaperSGD, the blocks) only once their modules are imported.
if not _started_as_cli():
    for _name in _EXPORTS:
        __getattr__(_name)
