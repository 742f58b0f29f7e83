"""Signal scale at initialisation: each block's output std and kernel-gradient std at step 0, per
mode and init, from one batch (docs/findings.md, "Initialisation").

Under the paper's init (Section 5: every weight N(0, 0.01), whatever the fan-in) a layer's output
std is about 0.01 * sqrt(fan_in) times its input's; in towers mode conv2, conv4 and conv5 see half
the merged fan-in (48, 192 and 192 input channels instead of 96, 384 and 384).
"""

from __future__ import annotations

import numpy as np

from .data import NUM_CLASSES
from .models import build_model
from .runlog import write_figure
from .tables import markdown_table

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def _blocks(model, layer):
    if layer == "fc8":
        return [model.get_layer("fc8")]
    return [lay for lay in model.layers if lay.name.split("_", 1)[-1] == layer and lay.name[0] == "t"]


def step0_stats(images, labels, layout="paper", mode="towers", init="paper", bias_fill=None, seed=0,
                num_classes=NUM_CLASSES) -> list[dict]:
    """One row per layer: the std of the block's output (pre-softmax logits for fc8, averaged over
    towers) and of its kernel's gradient of the mean cross-entropy, at the initial weights, on
    `images` (float32 pixels in [0, 255]) in training mode (dropout on, seeded)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(layout, mode, num_classes, input_shape=images.shape[1:], bias_fill=bias_fill, init=init)
    blocks = {layer: _blocks(model, layer) for layer in LAYERS}
    activation_std = _activation_stds(model, images, blocks)
    kernels = {layer: [b.conv.kernel if hasattr(b, "conv") else b.dense.kernel for b in blocks[layer]]
               for layer in LAYERS}
    grads = _kernel_gradients(model, images, keras.utils.to_categorical(labels, num_classes),
                              [k for layer in LAYERS for k in kernels[layer]])
    gradient_std = _mean_std_per_layer(grads, LAYERS, blocks)
    return [{"mode": mode, "init": init, "layer": layer, "fan_in": int(np.prod(kernels[layer][0].shape[:-1])),
             "activation_std": activation_std[layer],
             "kernel_std": float(np.mean([np.asarray(k).std() for k in kernels[layer]])),
             "gradient_std": gradient_std[layer]} for layer in LAYERS]


def _activation_stds(model, images, blocks) -> dict:
    """{layer: std of its blocks' outputs, averaged over towers}; fc8: the std of the logits."""
    import keras

    probe = keras.Model(model.input, [b.output for layer in LAYERS[:-1] for b in blocks[layer]])
    acts = [np.asarray(a, dtype=np.float64) for a in probe(images, training=False)]
    out = _mean_std_per_layer(acts, LAYERS[:-1], blocks)
    out["fc8"] = float(_logits(model, images).std())
    return out


def _logits(model, images) -> np.ndarray:
    """fc8's output before the softmax, float64."""
    import keras

    fc8 = model.get_layer("fc8")
    fc8_in = keras.Model(model.input, fc8.input)(images, training=False)
    if isinstance(fc8_in, list):
        fc8_in = keras.ops.concatenate(fc8_in, -1)
    return np.asarray(keras.ops.matmul(fc8_in, fc8.dense.kernel) + fc8.dense.bias, dtype=np.float64)


def _mean_std_per_layer(arrays, layers, blocks) -> dict:
    """{layer: mean std of its arrays}; `arrays` lists each layer's blocks in turn."""
    out, i = {}, 0
    for layer in layers:
        n = len(blocks[layer])
        out[layer] = float(np.mean([np.asarray(a, dtype=np.float64).std() for a in arrays[i:i + n]]))
        i += n
    return out


def _kernel_gradients(model, x, y, variables):
    """Gradients of the mean categorical cross-entropy with respect to `variables` (kernels)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        trainable = model.trainable_variables
        index = [next(i for i, v in enumerate(trainable) if v is k) for k in variables]

        def loss(values):
            out, _ = model.stateless_call(values, [v.value for v in model.non_trainable_variables], x, training=True)
            return keras.ops.mean(keras.losses.categorical_crossentropy(y, out))

        g = jax.grad(loss)([v.value for v in trainable])
        return [g[i] for i in index]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, model(x, training=True)))
    return tape.gradient(loss, [k.value for k in variables])


def markdown(rows, source: str) -> str:
    lines = ["# Signal scale at initialisation (step 0)", "",
             f"One batch: {source}. Activation std: the std of each block's output (ReLU, LRN and pooling "
             "included; fc8: the logits), averaged over towers; gradient std: the std of the block kernel's "
             "gradient of the mean cross-entropy (dropout on, seed 0). Fan-in: per kernel (per tower).", ""]
    header = ["init", "layer", "fan-in towers / merged", "activation std towers", "merged", "half", "towers / merged",
              "gradient std towers", "merged", "half"]
    by = {(r["init"], r["mode"], r["layer"]): r for r in rows}
    cells = []
    for init in dict.fromkeys(r["init"] for r in rows):
        for layer in LAYERS:
            t, m, h = (by[(init, mode, layer)] for mode in ("towers", "merged", "half"))
            cells.append([init, layer, f"{t['fan_in']:,} / {m['fan_in']:,}", f"{t['activation_std']:.3g}",
                          f"{m['activation_std']:.3g}", f"{h['activation_std']:.3g}",
                          f"{t['activation_std'] / m['activation_std']:.2f}", f"{t['gradient_std']:.3g}",
                          f"{m['gradient_std']:.3g}", f"{h['gradient_std']:.3g}"])
    return "\n".join(lines + markdown_table(header, cells, "lllrrrrrrr")) + "\n"


def plot(rows, path):
    """The activation std per layer at step 0, one panel per init, written to `path`."""
    from matplotlib.figure import Figure

    inits = list(dict.fromkeys(r["init"] for r in rows))
    fig = Figure(figsize=(4.2 * len(inits), 3.8))
    axes = fig.subplots(1, len(inits), sharey=True, squeeze=False)
    for ax, init in zip(axes[0], inits, strict=True):
        for mode, style in (("towers", "o-"), ("merged", "s--"), ("half", "^:")):
            values = [next(r["activation_std"] for r in rows
                           if (r["init"], r["mode"], r["layer"]) == (init, mode, layer))
                      for layer in LAYERS]
            ax.plot(LAYERS, values, style, label=mode)
        ax.set_yscale("log")
        ax.set_title(f"init {init}")
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("activation std at step 0")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    write_figure(fig, path, dpi=100)
