"""Device placement: the only module that knows about TensorFlow devices.

Three things must hold for the towers to really live on separate devices (the README's "How the
placement is made real" shows each failing without its fix):

1. Forward ops and variables: every tower layer enters ``tf.device`` in ``build`` and ``call``
   (:func:`device_scope`, used by :mod:`alexnet_split.layers`).
2. Backward ops: Keras's default ``train_step`` differentiates with ``GradientTape``, whose
   gradient ops carry no device and land on device 0. :class:`PlacedModel` differentiates with
   ``tf.gradients``, which colocates each gradient op with its forward op.
3. Optimizer state and updates: Keras creates slot variables and runs ``update_step`` outside any
   device scope. :func:`place_optimizer` wraps both so that they run on the variable's device.

Under any other Keras backend :func:`device_scope` is a no-op and :func:`configure_devices`
returns no devices: the model then runs on the backend's default device.
"""

from __future__ import annotations

import contextlib
import warnings

import keras

from .optimizers import PaperSGD

PREFER = ("auto", "gpu", "cpu")


def is_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


# --------------------------------------------------------------------------- devices


def configure_devices(n_towers: int = 2, prefer: str = "auto", gpu_memory_mb: int | None = None, cluster=None):
    """Return the device names for `n_towers` towers, creating logical devices if needed.

    * ``cluster`` (a spec file, a spec dict, or ``"TF_CONFIG"``): connect this process to those
      TensorFlow workers and put tower k on worker task k (see :func:`connect`,
      :func:`cluster_devices`); the rules below then apply to nothing local.

    * 2+ GPUs (and ``prefer`` is not ``"cpu"``): ``/GPU:0`` ... ``/GPU:{n-1}``.
    * 1 GPU: by default every tower shares ``/GPU:0`` (a split gives no speed, only half the
      memory each). Pass ``gpu_memory_mb`` to split it into ``n_towers`` logical GPUs instead.
    * No GPU (or ``prefer="cpu"``): the CPU is split into ``n_towers`` logical devices.

    Logical devices can only be created before TensorFlow initialises its runtime (the first
    op, or listing logical devices, does that). If that already happened this returns the
    devices that exist when they suffice, and raises ``RuntimeError`` otherwise.
    """
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER}, got {prefer!r}")
    if not isinstance(n_towers, int) or n_towers < 1:
        raise ValueError(f"n_towers must be a positive integer, got {n_towers!r}")
    if cluster is not None:
        if not is_tensorflow():
            raise RuntimeError(f"a cluster needs the TensorFlow backend; KERAS_BACKEND={keras.backend.backend()!r}")
        spec, _, _ = load_cluster(cluster)
        connect(spec)
        return cluster_devices(spec, n_towers, prefer)
    if not is_tensorflow():
        _warn_one_device("configure_devices: per-tower placement", stacklevel=3)
        return []
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")  # does not initialise the runtime
    if prefer == "gpu" and not gpus:
        raise RuntimeError("configure_devices(prefer='gpu'): TensorFlow sees no GPU")
    use_gpu = bool(gpus) and prefer != "cpu"
    if not use_gpu:
        if gpus:
            _before_init(lambda: tf.config.set_visible_devices([], "GPU"), "hide the GPUs", "CPU", n_towers)
        cpu = tf.config.list_physical_devices("CPU")[0]
        want = [tf.config.LogicalDeviceConfiguration() for _ in range(n_towers)]
        return _split(tf, cpu, want, "CPU", n_towers)
    if len(gpus) >= n_towers:
        return [f"/GPU:{i}" for i in range(n_towers)]
    if len(gpus) == 1 and gpu_memory_mb:
        want = [tf.config.LogicalDeviceConfiguration(memory_limit=gpu_memory_mb) for _ in range(n_towers)]
        return _split(tf, gpus[0], want, "GPU", n_towers)
    # Fewer GPUs than towers: deal the towers round-robin.
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


# --------------------------------------------------------------------------- clusters
#
# Towers on separate machines use TensorFlow's own distributed runtime: each worker runs a
# tf.distribute.Server; the training process ("chief") connects with
# tf.config.experimental_connect_to_cluster and places tower k on /job:worker/task:k. The
# traced training step is then partitioned by TensorFlow across the tasks and the tensors at the
# cross-connections travel over gRPC (_Send/_Recv), exactly as between two local devices.

JOBS = ("worker", "chief")


class ClusterError(ValueError):
    """A bad cluster spec, task or port; the message names the file and the value."""


def load_cluster(source=None) -> tuple[dict, int | None, str]:
    """Read a cluster spec: a JSON file path, a dict, or (``None`` or ``"TF_CONFIG"``) ``$TF_CONFIG``.

    Accepts a bare spec ``{"worker": ["host:port", ...], "chief": ["host:port"]}`` (chief
    optional) or the ``TF_CONFIG`` form ``{"cluster": {...}, "task": {"type": "worker",
    "index": 1}}``. Returns ``(cluster, task index or None, where it came from)``.
    """
    import json
    import os

    if source is None or source == "TF_CONFIG":
        if not os.environ.get("TF_CONFIG"):
            raise ClusterError("no cluster given: pass --cluster SPEC.json or set TF_CONFIG")
        where, text = "$TF_CONFIG", os.environ["TF_CONFIG"]
    elif isinstance(source, dict):
        where, text = "cluster dict", None
    else:
        where = str(source)
        try:
            with open(source) as f:
                text = f.read()
        except OSError as e:
            raise ClusterError(f"{where}: cannot read the cluster spec ({e.strerror})") from None
    if text is not None:
        try:
            source = json.loads(text)
        except json.JSONDecodeError as e:
            raise ClusterError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(source, dict):
        raise ClusterError(f"{where}: expected a JSON object, got {type(source).__name__}")
    task = None
    if "cluster" in source:
        spec, task_def = source["cluster"], source.get("task")
        if task_def is not None:
            if not isinstance(task_def, dict) or task_def.get("type", "worker") != "worker" \
                    or not isinstance(task_def.get("index"), int):
                raise ClusterError(f"{where}: task must be {{\"type\": \"worker\", \"index\": N}}, got {task_def!r}")
            task = task_def["index"]
    else:
        spec = source
    if not isinstance(spec, dict) or not isinstance(spec.get("worker"), list) or not spec["worker"]:
        raise ClusterError(f"{where}: the cluster needs a non-empty \"worker\" list of \"host:port\", got {spec!r}")
    unknown = sorted(set(spec) - set(JOBS))
    if unknown:
        raise ClusterError(f"{where}: unknown job(s) {unknown}; expected {list(JOBS)}")
    if len(spec.get("chief", [None])) != 1:
        raise ClusterError(f"{where}: \"chief\" must list exactly one address, got {spec['chief']!r}")
    seen = {}
    for job, addresses in spec.items():
        if not isinstance(addresses, list):
            raise ClusterError(f"{where}: {job!r} must be a list of \"host:port\", got {addresses!r}")
        for i, address in enumerate(addresses):
            _split_address(address, f"{where}: {job} task {i}")
            if address in seen:
                raise ClusterError(f"{where}: {address!r} is listed twice ({seen[address]} and {job} task {i})")
            seen[address] = f"{job} task {i}"
    cluster = {job: list(spec[job]) for job in JOBS if job in spec}
    if task is not None:
        check_task(cluster, task, where)
    return cluster, task, where


def _split_address(address, what) -> tuple[str, int]:
    if not isinstance(address, str) or address.count(":") < 1:
        raise ClusterError(f"{what}: expected \"host:port\", got {address!r}")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"{what}: expected \"host:port\" with a port in 1..65535, got {address!r}")
    return host.strip("[]"), int(port)


def check_task(cluster: dict, task, where="the cluster spec") -> int:
    n = len(cluster["worker"])
    if not isinstance(task, int) or not 0 <= task < n:
        raise ClusterError(f"{where}: there is no worker task {task!r}; the spec has worker tasks 0..{n - 1} "
                           f"({', '.join(cluster['worker'])})")
    return task


def task_device(task: int, kind: str = "CPU", index: int = 0) -> str:
    return f"/job:worker/replica:0/task:{task}/device:{kind}:{index}"


def serve_worker(cluster: dict, task: int, where="the cluster spec", log=print) -> int:
    """Run worker `task` of `cluster` until SIGTERM or SIGINT; returns the exit status (0).

    Blocks in Python (not in ``server.join()``) so that the signal handlers run."""
    import signal
    import socket
    import threading

    import tensorflow as tf

    check_task(cluster, task, where)
    address = cluster["worker"][task]
    host, port = _split_address(address, f"{where}: worker task {task}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR as gRPC sets it: a restarted worker may bind over the TIME_WAIT connections
        # its killed predecessor left, but not beside a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # gRPC would only log the clash and carry on without a server
            probe.bind(("", port))
        except OSError as e:
            raise ClusterError(f"worker task {task}: cannot listen on port {port} ({address} in {where}): "
                               f"{e.strerror}; is another process using it?") from None
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # the towers share the card politely
    stop = threading.Event()
    received = []

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name="worker", task_index=task, protocol="grpc")
    devices = [d.name for d in tf.config.list_logical_devices()]
    log(f"worker task {task} listening on {address} ({server.target}); devices: {', '.join(devices)}")
    while not stop.wait(0.5):
        pass
    log(f"worker task {task}: {received[0]} received, stopping")
    return 0


def connect(cluster: dict) -> str:
    """Connect this process (the chief) to `cluster`; returns the job name it runs as.

    With a "chief" address in the spec the chief listens there (a fixed port to open in a
    firewall); without one TensorFlow picks a free port and calls the job "localhost"."""
    import tensorflow as tf

    job = "chief" if "chief" in cluster else "localhost"
    unreachable = [f"worker task {i} ({a})" for i, a in enumerate(cluster["worker"]) if not _port_open(a)]
    if unreachable:
        raise ClusterError(f"cannot reach {', '.join(unreachable)}: start it with "
                           "`alexnet-split worker --cluster SPEC.json --task N` (and open its port)")
    tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(cluster), job_name=job, task_index=0)
    return job


def cluster_devices(cluster: dict, n_towers: int, prefer: str = "auto") -> list[str]:
    """Tower k's device on worker task k (round-robin when there are fewer workers): the task's
    first GPU, or its CPU when it has none or ``prefer="cpu"``. Call after :func:`connect`."""
    import tensorflow as tf

    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {PREFER}, got {prefer!r}")
    names = [d.name for d in tf.config.list_logical_devices()]
    devices = []
    for k in range(n_towers):
        task = k % len(cluster["worker"])
        gpu = task_device(task, "GPU")
        if prefer != "cpu" and gpu in names:
            devices.append(gpu)
        elif prefer == "gpu":
            raise RuntimeError(f"prefer='gpu': worker task {task} ({cluster['worker'][task]}) has no GPU")
        else:
            devices.append(task_device(task, "CPU"))
    return devices


def _port_open(address: str, timeout: float = 2.0) -> bool:
    import socket

    host, port = _split_address(address, address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class WorkerWatchdog:
    """Probes every worker's port once a `interval`; after `misses` failed probes in a row it
    calls ``on_lost(message)`` (which must end the process: a training step waiting for a dead
    task's tensors never returns by itself).

    A killed worker's port refuses connections at once, so the chief stops within about
    interval * misses seconds."""

    def __init__(self, cluster: dict, on_lost, interval: float = 1.0, misses: int = 3):
        import threading

        self.cluster, self.on_lost, self.interval, self.misses = cluster, on_lost, interval, misses
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def lost(self) -> list[str]:
        return [f"worker task {i} ({a})" for i, a in enumerate(self.cluster["worker"])
                if not _port_open(a, self.interval)]

    def _run(self):
        failed = {}
        while not self._stop.wait(self.interval):
            for i, address in enumerate(self.cluster["worker"]):
                failed[i] = 0 if _port_open(address, self.interval) else failed.get(i, 0) + 1
                if failed[i] >= self.misses and not self._stop.is_set():
                    self.on_lost(f"lost worker task {i} ({address}): its port refused {failed[i]} probes "
                                 f"{self.interval:g} s apart")
                    return


# --------------------------------------------------------------------------- optimizer


def _device_of(variable) -> str:
    v = variable.value if isinstance(variable, keras.Variable) else variable
    return v.device


def place_optimizer(optimizer):
    """Make `optimizer` create each slot variable on, and update it on, its weight's device.

    Wraps per-instance methods, so the optimizer's class (and its saved config) is unchanged:

    * ``add_variable_from_reference``: slots (momentum, Adam's m and v) are created on the
      device of the weight they belong to.
    * ``_backend_update_step``: runs once per device group. Keras's TF backend passes all
      gradients through one ``IdentityN`` (a single-replica all-reduce) that would otherwise
      pull every tower's gradients to device 0 and back; the shared learning rate is read once
      and sent to each device as one scalar.
    * ``update_step`` and ``_apply_weight_decay``: the per-weight arithmetic runs on the
      weight's device, under a name scope ``update_<weight>`` that the placement log shows.

    Idempotent.
    """
    if getattr(optimizer, "_alexnet_split_placed", False):
        return optimizer
    import tensorflow as tf

    add_ref = optimizer.add_variable_from_reference
    backend_update_step = optimizer._backend_update_step
    update_step = optimizer.update_step

    def add_variable_from_reference(reference_variable, name=None, initializer="zeros"):
        with tf.device(_device_of(reference_variable)):
            return add_ref(reference_variable, name=name, initializer=initializer)

    def placed_backend_update_step(grads, variables, learning_rate):
        learning_rate = tf.convert_to_tensor(learning_rate, name="shared_learning_rate")
        for device, idx in _group_by_device(variables).items():
            with tf.device(device):
                backend_update_step([grads[i] for i in idx], [variables[i] for i in idx],
                                    tf.identity(learning_rate))

    fused_momentum = (type(optimizer) in (keras.optimizers.SGD, PaperSGD) and optimizer.momentum
                      and not optimizer.nesterov)
    # PaperSGD's decay goes into the gradient, so the fused kernel applies it through the momentum.
    decayed = optimizer.decayed_gradient if isinstance(optimizer, PaperSGD) else None

    def placed_update_step(gradient, variable, learning_rate):
        with tf.device(variable.device), tf.name_scope(_update_scope(variable)):
            if not fused_momentum:
                return update_step(gradient, variable, learning_rate)
            # Keras's SGD makes 4 passes over each weight (m*momentum, g*lr, m.assign,
            # w.assign_add); this fused kernel computes the same m <- momentum*m - lr*g, w <- w + m
            # in one, which matters for the memory-bound fc6/fc7 updates.
            m = optimizer.momentums[optimizer._get_variable_index(variable)].value
            gradient = decayed(gradient, variable) if decayed else gradient
            return tf.raw_ops.ResourceApplyKerasMomentum(
                var=variable.handle, accum=m.handle, lr=tf.cast(learning_rate, variable.dtype),
                grad=tf.cast(gradient, variable.dtype), momentum=tf.cast(optimizer.momentum, variable.dtype),
                use_nesterov=False)

    def apply_weight_decay(variables):
        # Keras's decoupled decay, w -= w * wd * lr, but per device and with the shared
        # learning rate read once (Keras reads it once per weight, each read on device 0).
        if optimizer.weight_decay is None:
            return
        learning_rate = tf.convert_to_tensor(optimizer.learning_rate, name="shared_learning_rate")
        for device, idx in _group_by_device(variables).items():
            with tf.device(device):
                lr = tf.identity(learning_rate)
                for i in idx:
                    v = variables[i]
                    if optimizer._use_weight_decay(v):
                        v = v.value if isinstance(v, keras.Variable) else v
                        with tf.name_scope(_update_scope(v)):
                            v.assign_sub(v * tf.cast(optimizer.weight_decay, v.dtype) * tf.cast(lr, v.dtype))

    optimizer.add_variable_from_reference = add_variable_from_reference
    optimizer._backend_update_step = placed_backend_update_step
    optimizer.update_step = placed_update_step
    optimizer._apply_weight_decay = apply_weight_decay
    optimizer._alexnet_split_placed = True
    return optimizer


def _group_by_device(variables) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(variables):
        groups.setdefault(_device_of(v), []).append(i)
    return groups


def _update_scope(variable) -> str:
    # tf.Variable names are "t1_conv2/conv/kernel:0"; keep the layer path so the runtime log
    # shows which tower an update op belongs to.
    return "update_" + variable.name.split(":")[0].replace("/", "_")


# --------------------------------------------------------------------------- model


class PlacedModel(keras.Model):
    """A Functional model whose training step keeps every op on its tower's device.

    Built under TensorFlow with explicit devices; the graph is the same Functional graph as an
    unplaced model, so it saves, loads and summarises like any Keras model. Loaded under another
    backend it behaves as a plain Functional model.
    """

    def compile(self, optimizer="rmsprop", *args, jit_compile="auto", **kwargs):
        if not is_tensorflow():
            return super().compile(optimizer, *args, jit_compile=jit_compile, **kwargs)
        if jit_compile is True:
            warnings.warn(
                "PlacedModel: jit_compile=True would fuse all towers into one XLA cluster on one "
                "device; compiling without XLA to keep the per-tower placement.",
                stacklevel=2,
            )
        super().compile(optimizer, *args, jit_compile=False, **kwargs)
        place_optimizer(self.optimizer)

    def compile_from_config(self, config):
        # Keras skips a custom compile() on load unless this is overridden; the restored
        # optimizer must be placed *before* it builds its slots.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, *args):
        if not is_tensorflow():
            return super().train_step(*args)  # JAX's train_step(state, data)
        import tensorflow as tf

        (data,) = args
        if tf.executing_eagerly():
            warnings.warn(
                "PlacedModel: run_eagerly=True builds backward ops without devices; "
                "use the default graph mode for per-tower placement of gradients.",
                stacklevel=2,
            )
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        variables = self.trainable_variables
        # tf.gradients colocates every gradient op with its forward op (GradientTape does not).
        grads = tf.gradients(self.optimizer.scale_loss(loss), [v.value for v in variables])
        self.optimizer.apply(grads, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def model_class(devices):
    """The Model class for `build_model`: PlacedModel when placing, else plain keras.Model."""
    return PlacedModel if devices and is_tensorflow() else keras.Model


keras.saving.register_keras_serializable(package="alexnet_split")(PlacedModel)
