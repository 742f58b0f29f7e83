"""What the machine can do, measured in the run that is compared against it: timed calls (synced on
their last result), the matmul peak in each precision and the device-memory bandwidth. The benchmark
tables read achieved GFLOP/s as a share of these, and the runner table its physical limit.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from .devices import is_tensorflow


def _sync(x):
    return keras.ops.convert_to_numpy(keras.ops.sum(keras.ops.cast(x, "float32")))


def time_calls(fn, warmup: int, repeats: int, inner: int = 1) -> list[float]:
    """Seconds per call: each repeat runs `inner` calls and waits for the last result (an
    accelerator step is milliseconds, so one call per repeat would time the host's jitter)."""
    for _ in range(warmup):
        _sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner - 1):
            fn()
        _sync(fn())
        times.append((time.perf_counter() - t0) / inner)
    return times


def matmul_peak(precision: str, n: int = 2048, repeats: int = 5, inner: int = 1) -> float:
    """GFLOP/s of an n x n matmul in `precision` (bf16 for mixed_bfloat16), best of `repeats`."""
    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    if is_tensorflow():
        import tensorflow as tf

        mm = tf.function(lambda: tf.linalg.matmul(a, b))
    else:
        import jax

        mm = jax.jit(lambda: keras.ops.matmul(a, b))
    best = min(time_calls(mm, 2, repeats, inner))
    return 2 * n ** 3 / best / 1e9


def memory_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5, inner: int = 1) -> float:
    """Device-memory bandwidth in GB/s: ``x + 1`` on a float32 array of `n_bytes`, which reads and
    writes each byte once (2 * n_bytes per call), best of `repeats`."""
    x = keras.ops.zeros((n_bytes // 4,), dtype="float32")
    if is_tensorflow():
        import tensorflow as tf

        add = tf.function(lambda a: a + 1.0)
    else:
        import jax

        add = jax.jit(lambda a: a + 1.0)  # x an argument, not a constant folded into the program
    best = min(time_calls(lambda: add(x), 2, repeats, inner))
    return 2 * (n_bytes // 4) * 4 / best / 1e9


def precision_note() -> str:
    """What float32 means for this run's matmuls, as a clause of a table's header ("" unless JAX on a GPU)."""
    if is_tensorflow():
        return ""
    import jax

    # XLA's DEFAULT precision runs float32 matmuls and convolutions as TF32 on NVIDIA tensor cores.
    return (f"; float32 at jax_default_matmul_precision={jax.config.jax_default_matmul_precision}, "
            "which on NVIDIA GPUs means TF32 tensor cores" if jax.devices()[0].platform == "gpu" else "")
