"""Test session set-up: two logical CPU devices, created before TensorFlow's runtime starts."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import alexnet_split  # noqa: E402

DEVICES = alexnet_split.configure_devices(2, prefer="cpu")

# Smallest square inputs each layout accepts (the feature map must survive every pooling).
SMALL_INPUT = {"paper": (67, 67, 3), "seed": (215, 215, 3)}
