"""configure_devices: the device plan, and its errors when called too late or with bad values."""

import pytest
from conftest import DEVICES, run_check

import alexnet_split as A


def test_two_logical_cpu_devices_and_idempotent():
    assert DEVICES == ["/CPU:0", "/CPU:1"]
    assert A.configure_devices(2, prefer="cpu") == DEVICES  # the runtime exists: returns what suffices
    import tensorflow as tf

    assert [d.name.split("device:")[-1] for d in tf.config.list_logical_devices("CPU")] == ["CPU:0", "CPU:1"]


@pytest.mark.slow
def test_called_too_late_raises_a_clear_error():
    proc = run_check("fresh_process", "configure_devices_after_the_runtime_started")
    assert proc.returncode != 0
    assert "configure_devices() must run before TensorFlow initialises its runtime" in proc.stderr
    assert "with 1 (" in proc.stderr  # says what exists now


def test_more_towers_than_the_runtime_has_raises_in_process():
    with pytest.raises(RuntimeError, match="must run before TensorFlow initialises"):
        A.configure_devices(3, prefer="cpu")


@pytest.mark.parametrize("kwargs,message", [
    (dict(prefer="tpu"), "'tpu'"),
    (dict(n_towers=0), "got 0"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.configure_devices(**kwargs)


@pytest.mark.slow
def test_prefer_gpu_without_gpu_says_so():
    proc = run_check("fresh_process", "configure_devices_prefer_gpu")
    assert proc.returncode != 0 and "TensorFlow sees no GPU" in proc.stderr


@pytest.mark.slow
def test_four_logical_devices_in_a_fresh_process():
    proc = run_check("fresh_process", "configure_four_devices")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['/CPU:0', '/CPU:1', '/CPU:2', '/CPU:3']" in proc.stdout
