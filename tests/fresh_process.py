"""Checks that need a fresh TensorFlow process (device configuration is per process).

tests/test_devices.py and tests/test_cluster.py run each one as ``python tests/fresh_process.py CHECK``
with the environment (KERAS_BACKEND, TF_CONFIG, ...) set by the caller. A check raises on failure;
after one that passes the script prints ``OK CHECK``.
"""

import sys


def configure_devices_after_the_runtime_started():
    """Starts TensorFlow's runtime with one CPU device, then asks for two: raises."""
    import tensorflow as tf

    tf.constant(1.0) + 1  # starts the runtime with one CPU device
    import alexnet_split

    alexnet_split.configure_devices(2)


def configure_devices_prefer_gpu():
    import alexnet_split

    alexnet_split.configure_devices(2, prefer="gpu")


def configure_four_devices():
    import alexnet_split

    print(alexnet_split.configure_devices(4))


def configure_cluster_from_tf_config():
    """Prints the tower devices configure_cluster reads from $TF_CONFIG for two towers."""
    from alexnet_split.cluster import configure_cluster

    print(configure_cluster("TF_CONFIG", 2)[1])


CHECKS = {f.__name__: f for f in (configure_devices_after_the_runtime_started, configure_devices_prefer_gpu,
                                  configure_four_devices, configure_cluster_from_tf_config)}

if __name__ == "__main__":
    name, *args = sys.argv[1:]
    CHECKS[name](*args)
    print("OK", name, flush=True)
