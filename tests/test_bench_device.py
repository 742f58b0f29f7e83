"""The benchmark's compute-only scan (alexnet_split.bench_device) under JAX on CPU: it trains the
device engine's own step, so the runner / scanned ratio compares two timings of one computation."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="the jax CPU wheel is not installed (pip install -e '.[jax]')")


@pytest.mark.slow
def test_scanned_step_equals_the_runner_step():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    check = "scanned_step_equals_the_runner_step"
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("jax_bench.py")), check],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and f"OK {check}" in proc.stdout, proc.stderr[-3000:]


class _Compiled:
    def __init__(self, cost):
        self.cost = cost

    def cost_analysis(self):
        if isinstance(self.cost, Exception):
            raise self.cost
        return self.cost


@pytest.mark.parametrize("cost,expected", [({"flops": 2.0}, {"flops": 2.0}), ([{"flops": 2.0}], {"flops": 2.0}),
                                           ([], {}), (None, {}), (NotImplementedError("no"), {})])
def test_cost_analysis_is_one_dict_whatever_jax_returns(cost, expected):
    """jax 0.4 returned a list of dicts, later versions one dict; a backend without one gives {}."""
    from alexnet_split import bench_device

    assert bench_device.cost_analysis(_Compiled(cost)) == expected
