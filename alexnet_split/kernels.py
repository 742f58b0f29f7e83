"""Optional kernels for a cheaper training step, each selectable on its own.

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


def _ops():
    # keras is imported on first use, so that config (which validates names) stays importable without it
    from keras import ops

    return ops


def window_sum(v, depth_radius, groups=1):
    """``sum_{|j-c| <= depth_radius} v_j`` over the last axis, within each of `groups` blocks of
    channels: the channel axis padded by depth_radius at both ends of each block, then 2r+1 shifted
    slices added (elementwise work that fuses, where the band matmul reads and writes through memory)."""
    ops = _ops()
    c = v.shape[-1]
    if c % groups:
        raise ValueError(f"LRN groups={groups} does not divide the {c} channels")
    shape, width, r = ops.shape(v), c // groups, depth_radius
    padded = ops.pad(ops.reshape(v, (-1, groups, width)), [[0, 0], [0, 0], [r, r]])
    total = padded[:, :, :width]
    for i in range(1, 2 * r + 1):
        total = total + padded[:, :, i:i + width]
    return ops.reshape(total, shape)


def shifted_lrn(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, groups=1):
    """LRN (Section 3.3, ``x / (bias + alpha * window_sum(x^2)) ** beta``) that reads and writes
    x's dtype (bf16 under mixed_bfloat16) and computes in float32 in between, so that bias + alpha *
    sum does not round to bias in bf16. Its gradient recomputes the window sums from x: the only
    value the backward pass keeps is x itself, not float32 copies of s, s^-beta and y."""
    ops = _ops()

    def scale(xf):
        s = bias + alpha * window_sum(ops.square(xf), depth_radius, groups)
        if beta == 0.75:  # the paper's beta: s^-3/4 = rsqrt(s) * sqrt(rsqrt(s)), cheaper than Pow
            r = ops.rsqrt(s)
            return s, r * ops.sqrt(r)
        return s, ops.power(s, -beta)

    @ops.custom_gradient
    def lrn(x):
        xf = ops.cast(x, "float32")
        y = ops.cast(xf * scale(xf)[1], x.dtype)

        def grad(*args, upstream=None):
            # d/dx_j of sum_i g_i x_i p_i, p = s^-beta, the window symmetric:
            # g_j p_j - 2 alpha beta x_j sum_{i near j} g_i x_i p_i / s_i, all from x again
            g = ops.cast(args[0] if upstream is None else upstream, "float32")
            xf = ops.cast(x, "float32")
            s, p = scale(xf)
            dx = g * p - (2.0 * alpha * beta) * xf * window_sum(g * xf * p / s, depth_radius, groups)
            return ops.cast(dx, x.dtype)

        return y, grad

    return lrn(x)


def _pair(value, what):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{what} must be a positive integer or a pair of them, got {value!r}")
    return pair


def first_max_pool(x, pool_size, strides=None, padding="valid"):
    """Max-pooling of NHWC `x` (the value of ``keras.ops.max_pool``) whose gradient goes to the
    first maximum of each window in row-major order, as XLA's select_and_scatter and TensorFlow's
    MaxPoolGrad choose on ties, built from masks, pads and one interleave of the stride phases:
    no scatter, so no atomic adds and the same sum in the same order on every run (a GPU's
    select_and_scatter adds the overlapping windows' gradients with atomics)."""
    ops = _ops()
    pool = _pair(pool_size, "pool_size")
    strides = pool if strides is None else _pair(strides, "strides")
    if padding != "valid":
        raise ValueError(f"first_max_pool supports padding='valid' (every pooling row of spec.py), got {padding!r}")

    @ops.custom_gradient
    def max_pool(x):
        y = ops.max_pool(x, pool, strides, "valid")

        def grad(*args, upstream=None):
            return _first_max_grad(x, y, args[0] if upstream is None else upstream, pool, strides)

        return y, grad

    return max_pool(x)


def _first_max_grad(x, y, g, pool, strides):
    """dL/dx of max-pooling: each output's gradient to its window's first maximum.

    Input row ``i * sh + di`` (output row i, window offset di) is row ``i + di // sh`` of stride
    phase ``di % sh``: the offsets' masked gradients are padded into place on the phase grids
    (ceil(H / sh) x ceil(W / sw)), summed there, and the sh * sw phase grids interleaved into H x W
    by stacking and reshaping. The sums run in x's dtype in the order of the stock gradients (the
    outputs in row-major order, hence the offsets backwards), so that they round alike."""
    ops = _ops()
    (ph, pw), (sh, sw) = pool, strides
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    hg, wg = -(-h // sh), -(-w // sw)
    zero = ops.zeros_like(g)
    parts, taken = [], None
    for di in range(ph):
        for dj in range(pw):
            hit = ops.equal(x[:, di:di + sh * (ho - 1) + 1:sh, dj:dj + sw * (wo - 1) + 1:sw, :], y)
            if taken is not None:  # an earlier offset of the window already holds its maximum
                hit = ops.logical_and(hit, ops.logical_not(taken))
            taken = hit if taken is None else ops.logical_or(taken, hit)
            (qi, ri), (qj, rj) = divmod(di, sh), divmod(dj, sw)
            part = ops.pad(ops.where(hit, g, zero), [[0, 0], [qi, hg - ho - qi], [qj, wg - wo - qj], [0, 0]])
            parts.append(((ri, rj), part))
    phases = {}
    for key, part in reversed(parts):
        phases[key] = part if key not in phases else phases[key] + part
    none = ops.zeros_like(phases[0, 0])  # phases no window reaches (pool < stride)
    rows = [ops.reshape(ops.stack([phases.get((ri, rj), none) for rj in range(sw)], axis=3), (-1, hg, wg * sw, c))
            for ri in range(sh)]
    return ops.reshape(ops.stack(rows, axis=2), (-1, hg * sh, wg * sw, c))[:, :h, :w, :]


def padded_conv(x, kernel, strides, padding, channels=8):
    """``keras.ops.conv(x, kernel)`` with the input channels (x's last axis and the kernel's third)
    zero-padded to `channels`: the same sums, in a shape that tensor cores take (3 RGB channels are not a
    multiple of 8)."""
    ops = _ops()
    extra = channels - x.shape[-1]
    if extra > 0:
        x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        kernel = ops.pad(kernel, [[0, 0], [0, 0], [0, extra], [0, 0]])
    return ops.conv(x, kernel, strides=strides, padding=padding)
