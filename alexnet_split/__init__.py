"""alexnet_split: the 2012 two-tower AlexNet with each tower on its own device.

Call :func:`configure_devices` first thing in the process (it may create logical devices, which
TensorFlow only allows before its runtime starts), then :func:`build_model`.

Importing the package changes nothing global and imports neither Keras nor TensorFlow: each name
below loads its module on first use (PEP 562), so ``alexnet-split --help`` answers in well under a
second. The command line keeps TensorFlow's start-up banner off the terminal where it starts
(:func:`alexnet_split.cli.main`), not here. :func:`load_model` loads a saved ``.keras`` file with
the package's registered classes (PlacedModel, PaperSGD, the blocks) imported first.
"""

import importlib as _importlib

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
__all__ = sorted([*_EXPORTS, "load_model"])
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*__all__, "__version__"])


def load_model(path, **kwargs):
    """``keras.models.load_model(path, **kwargs)`` with the package's saved classes registered
    (``keras.models.load_model`` alone works too once ``alexnet_split.models`` is imported)."""
    import keras

    _importlib.import_module(".models", __name__)  # imports every module that registers a class

    return keras.models.load_model(path, **kwargs)
