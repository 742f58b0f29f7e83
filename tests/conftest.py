"""Test session set-up: two logical CPU devices, created before TensorFlow's runtime starts."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import alexnet_split  # noqa: E402

DEVICES = alexnet_split.configure_devices(2, prefer="cpu")

# Smallest square inputs each layout accepts (the feature map must survive every pooling).
SMALL_INPUT = {"paper": (67, 67, 3), "seed": (215, 215, 3)}


def run_python(code, backend="tensorflow", timeout=600):
    """Run `code` in a fresh interpreter (device configuration is per process)."""
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
