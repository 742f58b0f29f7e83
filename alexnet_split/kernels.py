"""Optional kernels for a cheaper training step (issue 24, "A cheaper step"), each selectable on its own.

A recipe's ``kernels`` field names the options a run uses (``--set kernels=shifted_lrn,first_max_pool``);
the default, none, keeps the ops the committed results were trained with. Each option computes the
same function as the op it replaces; the GPU measurement decides which ones stay.

* ``shifted_lrn``: the LRN (Section 3.3) reads and writes the compute dtype, sums its window of
  squares in float32 by shifted adds instead of a band matmul, and recomputes its gradient from x
  instead of keeping float32 intermediates (:class:`alexnet_split.layers.LRN`, ``impl="shifted"``).
* ``first_max_pool``: max-pooling whose gradient goes to the first maximum of each window, built
  from masks and strided placement: no scatter, hence no atomics and a deterministic sum on a GPU.
* ``shared_conv1``: in towers mode both towers' conv1 as one conv over the image, input channels
  zero-padded to 8 (:class:`alexnet_split.layers.SharedConv`).
"""

from __future__ import annotations

KERNELS = ("shifted_lrn", "first_max_pool", "shared_conv1")


def parse_kernels(value) -> tuple[str, ...]:
    """The kernel options named in `value` ("a,b" or a sequence of names; "" or None: none), in
    :data:`KERNELS` order, each once (a repeated name counts once)."""
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [0]
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"kernels must be comma-separated names from {KERNELS}, got {value!r}")
    names = {n.strip() for n in names} - {""}
    unknown = sorted(names - set(KERNELS))
    if unknown:
        raise ValueError(f"unknown kernels {unknown} in {value!r}; choices: {', '.join(KERNELS)} "
                         "(comma-separated, '' for none)")
    return tuple(k for k in KERNELS if k in names)
