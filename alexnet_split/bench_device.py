"""The benchmark's JAX side: the device engine's step as a compute-only scan, and its XLA cost.

:class:`ScannedCompute` is what the runner row is compared with: the training step of
:mod:`alexnet_split.engine_device` (the same model call, loss :func:`engine_device.cross_entropy`
and ``stateless_apply``), run as one ``lax.scan`` over batches already assembled on the device.
The ratio runner / scanned is then what the engine's data handling (gather, crop, flip, PCA
shift) and its validations cost, on the same number of steps; ``train_on_batch`` instead pays a
host round trip per step.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp

from . import engine_device


class ScannedCompute:
    """`steps` training steps of `loop`'s model as one compiled ``lax.scan``, cycling through
    `n_batches` batches that `loop` assembled on the device beforehand (steps 0, 1, ...): pure
    compute, the upper bound of what the runner can reach."""

    def __init__(self, loop: engine_device.DeviceLoop, steps: int, n_batches: int = 4):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        n = max(1, min(n_batches, steps))
        batches = [loop.batch(s) for s in range(n)]
        self.xs = jnp.stack([b[0] for b in batches])
        self.ys = jnp.stack([b[1] for b in batches])
        self.steps, self.batch_size, self.loop = steps, loop.batch_size, loop
        step = engine_device.train_step(loop.model, loop.optimizer)  # the engine's own step

        def run(state, xs, ys):
            def body(state, i):
                state, metrics = step(state, xs[i % n], ys[i % n])
                return state, metrics[0]

            return jax.lax.scan(body, state, jnp.arange(steps))

        t0 = time.perf_counter()
        self.compiled = jax.jit(run).lower(loop.state(), self.xs, self.ys).compile()
        self.compile_seconds = time.perf_counter() - t0

    def __call__(self, state):
        """(new state, each step's loss)."""
        return self.compiled(state, self.xs, self.ys)

    def images_per_second(self, calls: int = 3) -> float:
        """Training images/s over `calls` timed calls of the scan, after one warm-up call."""
        state, losses = self(self.loop.state())
        losses.block_until_ready()
        t0 = time.perf_counter()
        for _ in range(calls):
            state, losses = self(state)
        losses.block_until_ready()
        return calls * self.steps * self.batch_size / (time.perf_counter() - t0)

    def cost_per_image(self, expected_flops: float | None = None) -> dict:
        """XLA's cost analysis of the compiled scan, per training image: ``flops`` and ``bytes``
        (accessed), and ``counted_steps``. XLA counts a while loop's body once (jax 0.10 on CPU)
        or times its trip count; which one is read off `expected_flops` (an independent count of
        one step's FLOPs per image, :func:`alexnet_split.spec.training_flops`) when given."""
        cost = cost_analysis(self.compiled)
        flops, nbytes = cost.get("flops", 0.0), cost.get("bytes accessed", 0.0)
        counted = 1
        if expected_flops and flops > math.sqrt(self.steps) * expected_flops * self.batch_size:
            counted = self.steps
        return {"flops": flops / counted / self.batch_size, "bytes": nbytes / counted / self.batch_size,
                "counted_steps": counted}


def cost_analysis(compiled) -> dict:
    """``compiled.cost_analysis()`` as one dict: jax returns a dict, older versions a list with one
    dict per program (None or [] where the backend has none; {} where it raises: the timing of a
    row must not be lost to its estimate)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # an unsupported backend or version
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})
