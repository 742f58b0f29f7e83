"""Local devices: which ones exist, how many logical devices to carve for the towers, and the
``tf.device`` scope that every tower layer enters. Under a backend other than TensorFlow the
towers run on the backend's default device (:func:`configure_devices` returns ``[]``).

Towers on other machines: :mod:`alexnet_split.cluster`; the training step's placement:
:mod:`alexnet_split.placement`.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import keras

from .config import PREFER  # noqa: F401  (the choices live in config: --help imports no Keras)


def is_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def configure_devices(n_towers: int = 2, prefer: str = "auto", gpu_memory_mb: int | None = None):
    """Return the device names for `n_towers` towers, creating logical devices if needed.

    * 2+ GPUs (and ``prefer`` is not ``"cpu"``): ``/GPU:0`` ... ``/GPU:{n-1}``.
    * 1 GPU: by default every tower shares ``/GPU:0`` (a split gives no speed, only half the
      memory each). Pass ``gpu_memory_mb`` to split it into ``n_towers`` logical GPUs instead.
    * No GPU (or ``prefer="cpu"``): the CPU is split into ``n_towers`` logical devices.

    Towers on TensorFlow workers instead: :func:`alexnet_split.cluster.configure_cluster`.

    Logical devices can only be created before TensorFlow initialises its runtime (the first
    op, or listing logical devices, does that). If that already happened this returns the
    devices that exist when they suffice, and raises ``RuntimeError`` otherwise.
    """
    _check_arguments(n_towers, prefer)
    if not is_tensorflow():
        _warn_one_device("configure_devices: per-tower placement", stacklevel=3)
        return []
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")  # does not initialise the runtime
    if prefer == "gpu" and not gpus:
        raise RuntimeError("configure_devices(prefer='gpu'): TensorFlow sees no GPU")
    if not gpus or prefer == "cpu":
        return _cpu_towers(tf, gpus, n_towers)
    return _gpu_towers(tf, gpus, n_towers, gpu_memory_mb)


def _check_arguments(n_towers, prefer):
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER}, got {prefer!r}")
    if not isinstance(n_towers, int) or n_towers < 1:
        raise ValueError(f"n_towers must be a positive integer, got {n_towers!r}")


def _cpu_towers(tf, gpus, n_towers):
    """The CPU split into `n_towers` logical devices (the GPUs, if any, hidden first)."""
    if gpus:
        _before_init(lambda: tf.config.set_visible_devices([], "GPU"), "hide the GPUs", "CPU", n_towers)
    cpu = tf.config.list_physical_devices("CPU")[0]
    want = [tf.config.LogicalDeviceConfiguration() for _ in range(n_towers)]
    return _split(tf, cpu, want, "CPU", n_towers)


def _gpu_towers(tf, gpus, n_towers, gpu_memory_mb):
    """One GPU per tower; one GPU split by memory when asked; otherwise the towers dealt round-robin."""
    if len(gpus) >= n_towers:
        return [f"/GPU:{i}" for i in range(n_towers)]
    if len(gpus) == 1 and gpu_memory_mb:
        want = [tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory_mb) for _ in range(n_towers)]
        return _split(tf, gpus[0], want, "GPU", n_towers)
    return [f"/GPU:{i % len(gpus)}" for i in range(n_towers)]


def _warn_one_device(what: str, stacklevel: int):
    warnings.warn(f"{what} needs the TensorFlow backend; KERAS_BACKEND={keras.backend.backend()!r} runs the "
                  f"model on one device.", stacklevel=stacklevel)


def _split(tf, physical, want, kind, n):
    current = tf.config.get_logical_device_configuration(physical)
    if current is None or len(current) != len(want):
        _before_init(lambda: tf.config.set_logical_device_configuration(physical, want), f"split {physical.name}",
                     kind, n)
    return [f"/{kind}:{i}" for i in range(n)]


def _before_init(action, what, kind, n):
    import tensorflow as tf

    try:
        action()
    except RuntimeError as e:
        have = [d.name for d in tf.config.list_logical_devices(kind)]
        if len(have) >= n:
            return
        raise RuntimeError(
            f"configure_devices() must run before TensorFlow initialises its runtime: it could not "
            f"{what} into {n} logical {kind} devices because the runtime already exists with "
            f"{len(have)} ({have}). Call alexnet_split.configure_devices() first thing in the process, "
            f"before any TensorFlow op or model is created."
        ) from e


def describe_devices() -> dict:
    """Physical and logical devices, for the CLI and run metadata."""
    if not is_tensorflow():
        import jax  # the only other backend this project supports

        return {"backend": keras.backend.backend(), "devices": [str(d) for d in jax.devices()]}
    import tensorflow as tf

    return {
        "backend": "tensorflow",
        "physical": [f"{d.name} ({d.device_type})" for d in tf.config.list_physical_devices()],
        "logical": [d.name for d in tf.config.list_logical_devices()],
    }


def device_scope(device: str | None):
    """``tf.device(device)`` under TensorFlow; a no-op for ``None`` or another backend."""
    if device is None or not is_tensorflow():
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device(device)


def check_devices(devices, n_needed: int) -> list[str] | None:
    """Validate the `devices` argument of `build_model`; returns the list or None."""
    if devices is None:
        return None
    if isinstance(devices, str):
        raise TypeError(f"devices must be a list of device names, got the string {devices!r}")
    devices = list(devices)
    if not devices:
        return None
    if len(devices) < n_needed:
        raise ValueError(f"devices={devices} has {len(devices)} entries; this model has {n_needed} towers")
    if not is_tensorflow():
        _warn_one_device(f"devices={devices} ignored: explicit placement", stacklevel=4)
        return None
    import tensorflow as tf

    for d in devices:
        try:
            tf.DeviceSpec.from_string(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"devices: {d!r} is not a TensorFlow device name ({e})") from None
    return devices


def host_kind() -> str:
    """A short name for this machine's compute, for result file names: ``nvidia-h200``,
    ``gpu-<name>`` under TensorFlow, ``cpu-<n>core``."""
    if is_tensorflow():
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return "gpu-" + tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
                "device_name", "gpu").lower().replace(" ", "-")
    else:
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return d.device_kind.lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}core"


def format_plan(devices: list[str], info: dict) -> str:
    """What `alexnet-split devices` prints: the devices found (:func:`describe_devices`) and
    which tower goes where."""
    lines = [f"backend: {info['backend']}"]
    lines += [f"{key} devices: " + ", ".join(info[key]) for key in ("physical", "logical", "devices") if key in info]
    if not devices:
        return "\n".join(lines + ["plan: no explicit placement (the backend's default device runs every layer)"])
    lines += ["", "plan (layout paper, mode towers):", f"  {'shared (preprocess, fc8)':<28} {devices[0]}"]
    lines += [f"  {f'tower {k} (t{k}_conv1 .. t{k}_fc7)':<28} {d}" for k, d in enumerate(devices)]
    return "\n".join(lines)
