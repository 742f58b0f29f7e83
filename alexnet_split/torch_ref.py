"""The same AlexNet in PyTorch: the reference users would pick instead, for the benchmark only.

Imported only where ``torch`` is installed; it is not a dependency of the project.
:class:`TorchAlexNet` builds the network from :mod:`alexnet_split.spec`'s rows as
:func:`alexnet_split.models.build_model` does (paper layout: two towers, each its own convs,
cross-connected at conv3 and the fc layers; LRN after conv1 and conv2, Section 3.3; overlapping
3x3/2 pooling, Section 3.4; dropout 0.5 in fc6 and fc7, Section 4.2). Weights keep torch's
default initialisation: the benchmark times steps, it does not train to an accuracy.
:func:`time_training` times SGD steps (momentum 0.9, weight decay 5e-4, Section 5) on batches
already on the device, channels-last, under bf16 autocast, with ``torch.compile`` where it works.

``python -m alexnet_split.torch_ref --batch 128 --steps 200`` prints one result line per model
(this net and torchvision's ``alexnet``) for :func:`alexnet_split.bench_runner.runner_table`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import spec
from .bench_runner import RESULT_PREFIX
from .data import NUM_CLASSES
from .models import _PREPROCESS


def local_response_norm(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75) -> nn.LocalResponseNorm:
    """Section 3.3's LRN (k=2, n=5, alpha=1e-4, beta=0.75, as :class:`alexnet_split.layers.LRN`):
    torch divides its alpha by the window size n, the paper's formula does not, so torch gets n * alpha."""
    n = 2 * depth_radius + 1
    return nn.LocalResponseNorm(n, alpha=alpha * n, beta=beta, k=bias)


def _conv_block(arch, row, fan_in, width, norm) -> nn.Sequential:
    if row.padding == "same" and row.stride != 1:
        raise ValueError(f"{arch.name}.{row.name}: 'same' padding with stride {row.stride} has no fixed torch padding")
    layers = [nn.Conv2d(fan_in, width, row.kernel, row.stride, padding=row.kernel // 2 if row.padding == "same" else 0),
              nn.ReLU(inplace=True)]
    norm_layer = None
    if row.norm:
        norm_layer = local_response_norm() if norm == "lrn" else nn.BatchNorm2d(width)
    pool = nn.MaxPool2d(row.pool[0], row.pool[1]) if row.pool else None
    tail = [pool, norm_layer] if arch.norm_after_pool else [norm_layer, pool]
    return nn.Sequential(*layers, *(m for m in tail if m is not None))


def _dense_block(row, fan_in, width, norm) -> nn.Sequential:
    layers = [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
    if row.dropout:
        layers.append(nn.Dropout(row.dropout))
    if row.norm and norm == "batchnorm":
        layers.append(nn.BatchNorm1d(width))
    return nn.Sequential(*layers)


class TorchAlexNet(nn.Module):
    """:func:`alexnet_split.models.build_model`'s network in PyTorch (NCHW images in [0, 255],
    logits out); ``mode`` and ``n_towers`` as there."""

    def __init__(self, layout="paper", mode="towers", num_classes=NUM_CLASSES, n_towers=2, input_shape=None):
        super().__init__()
        arch = spec.get_layout(layout)
        self.n, widths = spec.tower_widths(arch, mode, n_towers)
        input_shape = tuple(input_shape or arch.input_shape)
        sizes = spec.spatial_sizes(arch, input_shape)
        pre = _PREPROCESS[arch.name]
        self.scale = pre["scale"]
        self.register_buffer("offset", torch.tensor(pre["offset"]).view(1, 3, 1, 1), persistent=False)
        self.rows = arch.rows
        self.blocks = nn.ModuleList()
        prev, spatial = input_shape[-1], 1
        for i, (row, width) in enumerate(zip(arch.rows, widths, strict=True)):
            fan_in = prev * (self.n if row.cross and i > 0 else 1)
            if row.kind == "conv":
                block = [_conv_block(arch, row, fan_in, width, arch.norm) for _ in range(self.n)]
                spatial = sizes[i][0] * sizes[i][1]
            else:
                block = [_dense_block(row, fan_in * spatial, width, arch.norm) for _ in range(self.n)]
                spatial = 1
            self.blocks.append(nn.ModuleList(block))
            prev = width
        self.fc8 = nn.Linear(prev * self.n * spatial, num_classes)

    def forward(self, x):
        x = x * self.scale + self.offset
        towers = [x] * self.n
        for i, (row, blocks) in enumerate(zip(self.rows, self.blocks, strict=True)):
            if row.cross and self.n > 1 and i > 0:
                towers = [torch.cat(towers, 1)] * self.n  # every tower reads all towers (the cross-connection)
            if row.kind == "dense":
                towers = [t.flatten(1) for t in towers]
            towers = [block(t) for block, t in zip(blocks, towers, strict=True)]
        return self.fc8(torch.cat([t.flatten(1) for t in towers], 1))


def parameter_count(model: nn.Module) -> int:
    """Parameters as Keras counts them: weights plus BatchNorm's moving mean and variance."""
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def time_training(model, batch, steps, input_size, precision="mixed_bfloat16", device=None, compile=True,
                  warmup=3, n_batches=4) -> dict:
    """Training images/s of `model` over `steps` SGD steps (momentum 0.9, weight decay 5e-4) on
    `n_batches` random batches already on `device`, channels-last, bf16 autocast for
    ``mixed_bfloat16``; after `warmup` steps (which compile). ``torch.compile`` falls back to eager
    if it fails; the result's ``note`` says which ran."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator(device="cpu").manual_seed(0)
    xs = [(torch.rand(batch, 3, input_size, input_size, generator=gen) * 255).to(device)
          .contiguous(memory_format=torch.channels_last) for _ in range(n_batches)]
    ys = [torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device) for _ in range(n_batches)]
    bf16 = precision == "mixed_bfloat16"

    def run(net, n):
        for i in range(n):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(xs[i % n_batches]), ys[i % n_batches])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return float(loss.detach())

    how = "eager"
    net = model
    if compile:
        try:
            net = torch.compile(model)
            run(net, warmup)
            how = "torch.compile"
        except Exception as e:  # any compiler failure: time eager instead, and say why
            how = f"eager (torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
            net = model
    if how != "torch.compile":
        run(net, warmup)
    t0 = time.perf_counter()
    run(net, steps)
    seconds = time.perf_counter() - t0
    note = (f"{how}, channels_last, {'bf16 autocast' if bf16 else 'float32'}, torch {torch.__version__}, "
            f"{device.type}")
    return {"img_s": steps * batch / seconds, "note": note}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="PyTorch reference rows for alexnet_split.bench_runner.runner_table")
    p.add_argument("--layout", default="paper")
    p.add_argument("--mode", default="towers", choices=spec.MODES)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--precision", default="mixed_bfloat16", choices=("float32", "mixed_bfloat16"))
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)
    size = args.input_size or spec.get_layout(args.layout).input_shape[0]
    models = {f"torch {args.layout} {args.mode}": lambda: TorchAlexNet(args.layout, args.mode,
                                                                        input_shape=(size, size, 3))}
    try:
        import torchvision

        models["torchvision alexnet"] = lambda: torchvision.models.alexnet(num_classes=NUM_CLASSES)
    except ImportError as e:
        print(RESULT_PREFIX + json.dumps({"variant": "torchvision alexnet", "img_s": None, "note": f"failed: {e}"}))
    ok = 0
    for name, build in models.items():
        try:
            r = time_training(build(), args.batch, args.steps, size, args.precision, args.device,
                              compile=not args.no_compile)
            ok += 1
        except Exception as e:  # one model's failure is its row, not the other's loss
            r = {"img_s": None, "note": f"failed: {type(e).__name__}: {str(e)[:200]}"}
        print(RESULT_PREFIX + json.dumps({"variant": name, **r}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
