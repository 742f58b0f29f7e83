"""Command line: ``alexnet-split devices | summary | check-placement | figure3 | train | worker | compare |
report | sync-docs | pipeline-speed | cache | bench | bench-cluster | export-data | profile``.

Each command is a pair: ``_add_<command>`` declares its arguments and ``cmd_<command>`` checks
them, calls one library function and prints what it returns. The library is imported inside
the commands, so ``--help`` answers without starting TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from . import config, runlog, spec
from .data import NUM_CLASSES

SET_HELP = ("recipe overrides KEY=VALUE, each VALUE read as JSON (else as a string); repeatable; null unsets a key, "
            "e.g. --set epochs=null steps=100 eval_every=50 (default: the recipe's values)")

# --------------------------------------------------------------------------- shared arguments


def _prefer_arg(p):
    p.add_argument("--prefer", choices=config.PREFER, default="auto",
                   help="device kind for the towers (default: auto, GPUs if there are any)")


def _device_args(p):
    p.add_argument("--towers", type=int, default=2, help="number of towers")
    _prefer_arg(p)


def _layout_arg(p):
    p.add_argument("--layout", choices=sorted(spec.LAYOUTS), default="paper",
                   help="paper: the 2012 paper's net; seed: the seed tutorial's")


def _recipe_arg(p):
    p.add_argument("--recipe", choices=sorted(config.PRESETS), default="paper", help="recipe preset")


def _data_arg(p, help="Flowers 17: a folder, or the archive or tflearn pickle itself, which must exist "
                      "(default $FLOWERS17_DIR, else ~/.cache/alexnet_split/17flowers, downloading there)"):
    p.add_argument("--data", default=None, help=help)
    p.add_argument("--download", action="store_true",
                   help="download the official 17flowers.tgz into --data when it holds no Flowers 17 (creating it)")


def _find_data(args):
    """The data source, found (or downloaded, see data_sources.locate) before the command makes anything."""
    from . import data_sources

    return data_sources.locate(args.data, download=args.download)


def _model_args(p):
    _layout_arg(p)
    p.add_argument("--mode", choices=spec.MODES, default="towers",
                   help="towers: two towers on two devices; merged: one net of the same width; half: one tower")
    p.add_argument("--norm", choices=spec.NORMS, default=None, help="(default: the layout's own)")
    p.add_argument("--classes", type=int, default=NUM_CLASSES, help="output classes")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the layout's, 227 / 224)")


def _run_args(p):
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--engine", choices=config.ENGINES, default="auto",
                   help="fit: Keras fit fed by the NumPy pipeline (TensorFlow places the towers); device: the "
                        "jitted JAX loop with the data on the accelerator; auto (default): device under "
                        "KERAS_BACKEND=jax, else fit")
    p.add_argument("--checkpoint-seconds", type=float, default=0.0,
                   help="checkpoint after a validation interval only once this many seconds passed since the "
                        "last checkpoint (default 0: after every interval; on a GPU, where intervals take well "
                        "under a second, use ~30)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard curves (loss, accuracy, top-5, lr per validation interval) here "
                        "(default: none)")
    _prefer_arg(p)


def _overrides(items):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _check_folder(path, flag):
    from .runlog import check_folder

    check_folder(path, flag)


def _csv_list(text, cast=str):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"expected a comma-separated list, got {text!r}")
    return [cast(t) for t in items]


def _sync_readme(written):
    from . import report

    readme = report.sync_readme_for(written)
    if readme:
        print(f"updated the generated blocks in {readme}")


def _print_line(line):
    print(line, flush=True)


# --------------------------------------------------------------------------- devices, summary


def _add_devices(sub):
    p = sub.add_parser("devices", help="show the devices found and which tower goes where")
    _device_args(p)
    p.set_defaults(func=cmd_devices)


def cmd_devices(args):
    import alexnet_split as A

    from . import devices

    placed = A.configure_devices(args.towers, prefer=args.prefer)
    print(devices.format_plan(placed, A.describe_devices()))
    return 0


def _add_summary(sub):
    p = sub.add_parser("summary", help="per layer: output shape, parameters, FLOPs and device")
    _model_args(p)
    _device_args(p)
    p.set_defaults(func=cmd_summary)


def cmd_summary(args):
    import alexnet_split as A

    from . import models

    placed = A.configure_devices(args.towers if args.mode == "towers" else 1, prefer=args.prefer)
    shape = (args.input_size, args.input_size, 3) if args.input_size else None
    model = A.build_model(args.layout, args.mode, args.classes, norm=args.norm, input_shape=shape,
                          devices=placed or None, n_towers=args.towers)
    flops = spec.layer_flops(spec.get_layout(args.layout), args.mode, args.towers, shape, args.classes)
    print(models.format_summary(model, flops))
    return 0


# --------------------------------------------------------------------------- placement proofs, figures


def _add_check_placement(sub):
    p = sub.add_parser("check-placement", help="train a few steps and prove placement from TF's runtime log")
    _model_args(p)
    p.add_argument("--optimizer", choices=config.OPTIMIZERS, default="sgd", help="sgd: PaperSGD; adam: Keras's")
    p.add_argument("--steps", type=int, default=2, help="training steps")
    p.add_argument("--naive", action="store_true", help="show the stock Keras path instead (misplaced on purpose)")
    p.add_argument("--loopback-cluster", action="store_true",
                   help="towers on two worker processes over 127.0.0.1 gRPC: what each worker ran, and the "
                        "weights against one process")
    p.add_argument("--out", default=None, help="also write the report here, e.g. results/placement/... (default: none)")
    p.add_argument("--figure", default=None, metavar="FILE.svg|.png",
                   help="also draw the paper's Figure 2 from the same runtime evidence, e.g. "
                        "results/placement/towers.svg (default: none)")
    p.set_defaults(func=cmd_check_placement)


def cmd_check_placement(args):
    from . import placement_check, placement_log

    if args.figure and (args.loopback_cluster or Path(args.figure).suffix not in (".svg", ".png")):
        raise SystemExit(f"--figure {args.figure}: give a .svg or .png file, and without --loopback-cluster "
                         "(the figure draws the one-process proof)")
    if args.loopback_cluster:
        return _check_cluster(args)
    how = "Keras's stock Model and optimizer (the naive baseline)" if args.naive else "PlacedModel"
    print(f"Training {args.steps} steps of {args.layout}/{args.mode} ({args.optimizer}, {how}) on 2 logical CPU "
          "devices with TensorFlow's placement log on ...", flush=True)
    report = placement_check.check(args.layout, args.mode, optimizer=args.optimizer, steps=args.steps,
                                   input_size=args.input_size or (67 if args.layout == "paper" else 215),
                                   naive=args.naive)
    text = placement_check.format_report(report)
    print(text)
    if args.out:
        command = (f"alexnet-split check-placement --layout {args.layout} --mode {args.mode} "
                   f"--optimizer {args.optimizer}{' --naive' if args.naive else ''}")
        placement_check.write_proof(args.out, command, text)
        _sync_readme(args.out)
    if args.figure:
        from . import figure2

        arrows = figure2.draw(report, args.figure, title=(
            f"Figure 2 from TensorFlow's runtime: {args.layout} layout, {args.mode}, {args.optimizer}, "
            f"{args.steps} training steps on {' and '.join(placement_log.short_device(d) for d in report.devices)}"))
        print(f"wrote {args.figure}: {len(arrows)} cross-device arrows, one per tensor edge above")
    return 0 if report.passed() or args.naive else 1


def _check_cluster(args):
    from . import placement_check as pc

    print("Starting two loopback workers and training 3 steps with tower k on worker task k ...", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="alexnet_split_cluster_"))
    report = pc.check_cluster(folder, args.layout, input_size=args.input_size or 67, steps=3)
    text = pc.format_cluster(report)
    print(text)
    if args.out:
        pc.write_proof(args.out, "alexnet-split check-placement --loopback-cluster", text)
        _sync_readme(args.out)
    return 0 if report.passed() else 1


def _add_figure3(sub):
    p = sub.add_parser("figure3", help="the paper's Figure 3 from saved conv1 kernels: grids, colour scores, "
                                       "the towers' split against random splits, the verdict")
    p.add_argument("results_dir", metavar="RESULTS_DIR", nargs="+",
                   help="folders holding finished runs with conv1.npz (at any depth)")
    p.add_argument("--out", default="results/figure3", help="output folder")
    p.add_argument("--permutations", type=int, default=10_000, help="random 48/48 relabellings per run")
    p.set_defaults(func=cmd_figure3)


def cmd_figure3(args):
    from . import figure3

    for folder in args.results_dir:
        if not Path(folder).is_dir():
            raise SystemExit(f"figure3: {folder} is not a folder")
    if args.permutations < 100:
        raise SystemExit(f"figure3: --permutations {args.permutations} is too few for a p-value; use 100 or more")
    _check_folder(args.out, "--out")
    try:
        md = figure3.figure3(args.results_dir, args.out, n_permutations=args.permutations)
    except ValueError as e:
        raise SystemExit(f"figure3: {e}") from None
    print(md)
    _sync_readme(Path(args.out) / "figure3.md")
    return 0


# --------------------------------------------------------------------------- training


def _cluster_arg(p, help):
    p.add_argument("--cluster", default=None, metavar="SPEC.json", help=help)


def _cluster_source(args):
    """--cluster FILE, else $TF_CONFIG when set, else None (no cluster)."""
    if args.cluster:
        return args.cluster
    return "TF_CONFIG" if os.environ.get("TF_CONFIG") else None


def _add_train(sub):
    p = sub.add_parser("train", help="train (or resume) one run into a run folder")
    _model_args(p)
    _recipe_arg(p)
    p.add_argument("--seed", type=int, default=0, help="the split, initialisation and batches")
    p.add_argument("--out", required=True, help="run folder (resumed if it exists; required)")
    _data_arg(p)
    p.add_argument("--splits", default=None,
                   help="official datasplits.mat (split 1) instead of a seeded split (default: none, a seeded split)")
    p.add_argument("--deterministic", action="store_true", help="TensorFlow deterministic ops")
    p.add_argument("--save-model", action="store_true",
                   help="also write OUT/model.keras: the trained network with its softmax output")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every interval's checkpoint in OUT/ckpt (default: a finished run keeps none)")
    _run_args(p)
    _cluster_arg(p, "train with tower k on worker task k of this cluster (default: $TF_CONFIG if set)")
    p.set_defaults(func=cmd_train)


def cmd_train(args):
    overrides = _overrides(args.set)
    config.get_recipe(args.recipe, **overrides)  # a bad recipe, --out or --data fails before TensorFlow starts
    _check_folder(args.out, "--out")
    _find_data(args)
    import alexnet_split as A

    from . import train

    def run(placed):
        return train.train(args.out, args.layout, args.mode, args.recipe, seed=args.seed, data_root=args.data,
                           devices=placed or None, overrides=overrides, deterministic=args.deterministic,
                           splits_mat=args.splits, checkpoint_seconds=args.checkpoint_seconds, engine=args.engine,
                           tensorboard=args.tensorboard, save_model=args.save_model,
                           keep_checkpoints=args.keep_checkpoints)

    n = 2 if args.mode == "towers" else 1
    source = _cluster_source(args)
    if source is None:
        final = run(A.configure_devices(n, prefer=args.prefer))
    else:
        from . import cluster as cl

        cluster, placed, where = cl.configure_cluster(source, n, args.prefer)
        print(f"connected to {where}; " + ", ".join(f"tower {k} on {d}" for k, d in enumerate(placed)), flush=True)
        with cl.guard_workers(cluster, lambda message: train.resume_hint(args.out, message),
                              prefix="alexnet-split train: error"):
            final = run(placed)
    print(train.format_final(args.out, final))
    shown = runlog.shell_path(args.out)
    print(f"wrote {shown}/final.json, history.csv, config.json and conv1.npz; summary: alexnet-split report {shown}")
    return 0


def _add_worker(sub):
    p = sub.add_parser("worker", help="run one TensorFlow worker of a cluster until SIGTERM")
    _cluster_arg(p, "cluster spec (default: $TF_CONFIG)")
    p.add_argument("--task", type=int, default=None,
                   help="this worker's index in the spec's worker list (default: the spec's own task)")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args):
    from . import cluster as cl

    cluster, task, where = cl.load_cluster(_cluster_source(args))
    task = args.task if args.task is not None else task
    if task is None:
        raise cl.ClusterError(f"{where}: which worker is this? pass --task N")
    return cl.serve_worker(cluster, task, where, log=_print_line)


# --------------------------------------------------------------------------- tables


def _reference(text):
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"--reference expects RESULTS_DIR:LAYOUT:MODE:LABEL, got {text!r}")
    results, layout, mode, label = parts
    return {"results": results, "layout": layout, "mode": mode, "label": label}


def _add_compare(sub):
    p = sub.add_parser("compare", help="run or resume towers/merged/half over seeds, then write the table")
    _recipe_arg(p)
    _layout_arg(p)
    p.add_argument("--modes", default="towers,merged,half", help="comma-separated modes")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--name", default=None, help="results folder name (default: the recipe's)")
    p.add_argument("--results", default="results", help="the folder that holds the comparison's folder")
    p.add_argument("--reference", action="extend", nargs="+", default=[], metavar="DIR:LAYOUT:MODE:LABEL",
                   help="extra rows from another comparison, e.g. ../seed_cpu:seed:merged:'seed as written'; "
                        "repeatable (default: none)")
    _data_arg(p)
    _run_args(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args):
    import alexnet_split as A

    from . import report, sweep

    modes = _csv_list(args.modes)
    for m in modes:
        if m not in spec.MODES:
            raise ValueError(f"unknown mode {m!r} in --modes; expected {list(spec.MODES)}")
    seeds = _csv_list(args.seeds, int)
    references = [_reference(r) for r in args.reference or []]
    overrides = _overrides(args.set)
    config.get_recipe(args.recipe, **overrides)
    results = Path(args.results) / (args.name or args.recipe)
    _check_folder(results, "--results")
    _find_data(args)
    placed = A.configure_devices(2, prefer=args.prefer)
    sweep.compare(results, args.recipe, args.layout, modes, seeds, references=references, data_root=args.data,
                  devices=placed or None, overrides=overrides, checkpoint_seconds=args.checkpoint_seconds,
                  engine=args.engine, tensorboard=args.tensorboard)
    print(report.for_terminal(report.report(results), results))
    return 0


def _add_report(sub):
    p = sub.add_parser("report", help="rebuild a comparison's table.md, table.csv and curves.png from its run logs, "
                                      "or summarise one train run",
                       description="Given a comparison folder (what `alexnet-split compare` wrote: compare.json and "
                                   "runs/), rebuild its table.md, table.csv and curves.png from the run logs, byte for "
                                   "byte, and print the table. Given a run folder (`alexnet-split train --out`), print "
                                   "that run's summary and write nothing.")
    p.add_argument("results_dir", metavar="FOLDER", help="a comparison folder, e.g. results/paper_cpu, or a run folder")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    from . import report, run_summary

    if run_summary.is_run_folder(args.results_dir):
        print(run_summary.run_summary(args.results_dir))
        return 0
    print(report.for_terminal(report.report(args.results_dir), args.results_dir))
    _sync_readme(args.results_dir)
    return 0


def _add_sync_docs(sub):
    p = sub.add_parser("sync-docs", help="refresh results/headline.md and the generated blocks of README.md and docs/",
                       description="Rewrite results/headline.md from the committed tables, then every "
                                   "<!-- begin PATH --> ... <!-- end PATH --> block of README.md and docs/*.md from "
                                   "PATH. `report`, `figure3`, `bench` and the other writers do this after writing.")
    p.add_argument("--root", default=".", help="the project folder (holds README.md and results/)")
    p.set_defaults(func=cmd_sync_docs)


def cmd_sync_docs(args):
    from . import report

    root = Path(args.root)
    if not (root / "README.md").is_file() or not (root / "results").is_dir():
        raise ValueError(f"--root {args.root}: not a project folder (README.md and results/)")
    changed = report.refresh_docs(root)
    for document in changed:
        print(f"updated the generated blocks in {document}")
    if not changed:
        print(f"the generated blocks of {root / 'README.md'} and {root / 'docs'} are up to date")
    return 0


# --------------------------------------------------------------------------- speed


def _add_cache(sub):
    p = sub.add_parser("cache", help="list the decoded-image cache (what it holds, its size), or clear it",
                       description="Decoded images are cached per source, image size and resize (about 205 MB "
                                   "per size at 224 px), in $ALEXNET_SPLIT_CACHE or ~/.cache/alexnet_split/"
                                   "decoded. List them, or delete them with --clear (the next run decodes again).")
    p.add_argument("--clear", action="store_true", help="delete the cached files")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args):
    from . import data_cache

    folder, entries = data_cache.cache_dir(), data_cache.cache_entries()
    if args.clear:
        freed = data_cache.clear_cache()
        print(f"{folder}: deleted {len(entries)} cached file(s), {freed / 1e6:,.0f} MB freed")
        return 0
    print(f"{folder}: {len(entries)} cached file(s), {sum(e['bytes'] for e in entries) / 1e6:,.0f} MB")
    for e in entries:
        print(f"  {e['bytes'] / 1e6:7,.0f} MB  {e['size']} px, resize {e['resize']}, from the {e['kind']}: "
              f"{e['path'].name}")
    if entries:
        print("(alexnet-split cache --clear deletes them; a run decodes again when it needs them)")
    return 0


def _add_pipeline_speed(sub):
    p = sub.add_parser("pipeline-speed", help="images/s the input pipeline produces, vs the training speed")
    _recipe_arg(p)
    _layout_arg(p)
    _data_arg(p)
    p.add_argument("--against", default=None,
                   help="a results folder whose table.csv has training images/s (default: none)")
    p.set_defaults(func=cmd_pipeline_speed)


def cmd_pipeline_speed(args):
    recipe = config.get_recipe(args.recipe)
    _find_data(args)
    from . import pipeline, report

    crop, speed = pipeline.recipe_throughput(recipe, args.layout, args.data)
    print(f"input pipeline, recipe {recipe.name} ({crop}x{crop} from {recipe.image_size}, augment "
          f"{recipe.augment}, PCA {recipe.pca_lighting}, batch {recipe.batch_size}): {speed:,.0f} images/s")
    if args.against:
        print("\n".join(report.pipeline_against_runs(speed, args.against)))
    return 0


def _add_bench(sub):
    p = sub.add_parser("bench", help="training/inference images/s of every variant, FLOPs, peak, bytes crossing")
    p.add_argument("--quick", action="store_true", help="batch 64 only, 3 repeats (under 5 minutes on 2 cores)")
    _layout_arg(p)
    p.add_argument("--batches", default=None, help="comma-separated (default: 32,64,128; 64 with --quick)")
    p.add_argument("--precisions", default=None, help="comma-separated (default: " + ",".join(config.PRECISIONS) + ")")
    p.add_argument("--variants", default=None, help="comma-separated (default: " + ",".join(spec.VARIANTS) + ")")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the layout's)")
    p.add_argument("--out", default="results/bench", help="output folder")
    p.add_argument("--runner", action="store_true",
                   help="only the runner against the scanned compute-only loop, per mode, precision and kernel "
                        "option, with the physical limit, PyTorch and XLA's concurrent command buffers "
                        "(bench_runner.runner_table; --batches: the first, then extra towers rows)")
    p.add_argument("--deadline", type=float, default=None,
                   help="--runner: seconds; no measurement is started that would end after it")
    p.add_argument("--kernels", default=None,
                   help="--runner: comma-separated kernel options to compare ('' none; default: all)")
    p.add_argument("--no-torch", action="store_true", help="--runner: no PyTorch rows")
    p.add_argument("--no-command-buffer", action="store_true", help="--runner: no XLA command-buffer row")
    _prefer_arg(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench_runner(args):
    from . import bench_runner

    batches = _csv_list(args.batches, int) if args.batches else [128]
    precisions = _csv_list(args.precisions) if args.precisions else config.PRECISIONS
    kernels = None if args.kernels is None else [k.strip() for k in args.kernels.split(",") if k.strip()]
    print(bench_runner.runner_table(args.layout, precisions=precisions, batch=batches[0],
                                    extra_batches=tuple(batches[1:]), out_dir=args.out, log=_print_line,
                                    deadline=args.deadline, kernels=kernels, torch=not args.no_torch,
                                    command_buffer=not args.no_command_buffer, input_size=args.input_size))
    _sync_readme(args.out)
    return 0


def cmd_bench(args):
    import alexnet_split as A

    from . import bench

    _check_folder(args.out, "--out")
    if args.runner:
        return cmd_bench_runner(args)
    placed = A.configure_devices(2, prefer=args.prefer)
    bench.run(args.layout, quick=args.quick, batches=_csv_list(args.batches, int) if args.batches else None,
              precisions=_csv_list(args.precisions) if args.precisions else config.PRECISIONS,
              variants=_csv_list(args.variants) if args.variants else None, out_dir=args.out,
              input_size=args.input_size, devices=placed or None, log=_print_line)
    _sync_readme(args.out)
    return 0


def _add_bench_cluster(sub):
    p = sub.add_parser("bench-cluster", help="training step time: towers on two loopback workers vs in-process")
    _layout_arg(p)
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the layout's)")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--steps", type=int, default=8, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each arm")
    p.add_argument("--out", default="results/bench", help="output folder")
    p.set_defaults(func=cmd_bench_cluster)


def cmd_bench_cluster(args):
    from . import bench

    _check_folder(args.out, "--out")
    print(bench.cluster_step_ratio(args.layout, args.input_size, args.batch, args.steps, args.rounds, args.out,
                                   log=_print_line))
    _sync_readme(args.out)
    return 0


def _add_profile(sub):
    p = sub.add_parser("profile", help="where a training step's time goes (TF profiler trace)")
    _layout_arg(p)
    p.add_argument("--variant", choices=spec.VARIANTS, default="towers_2dev", help="the network to profile")
    p.add_argument("--precision", choices=config.PRECISIONS, default="float32", help="Keras mixed-precision policy")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the layout's)")
    p.add_argument("--out", default=None, help="also write the markdown here (default: none)")
    _prefer_arg(p)
    p.set_defaults(func=cmd_profile)


def cmd_profile(args):
    import alexnet_split as A

    from . import profiling

    placed = A.configure_devices(2, prefer=args.prefer)
    print(profiling.run(args.layout, args.variant, args.precision, args.batch, devices=placed or None, out=args.out,
                      input_size=args.input_size))
    if args.out:
        _sync_readme(args.out)
    return 0


# --------------------------------------------------------------------------- data


def _add_export_data(sub):
    p = sub.add_parser("export-data", help="write a compact official-layout copy of Flowers 17 (JPEGs at --size)")
    _data_arg(p, help="the source, which must exist (default $FLOWERS17_DIR, else a download into "
                      "~/.cache/alexnet_split/17flowers)")
    p.add_argument("--size", type=int, default=256, help="square image side")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--out", required=True, help="output folder (required)")
    p.set_defaults(func=cmd_export_data)


def cmd_export_data(args):
    from . import data

    _check_folder(args.out, "--out")
    ds = data.load(args.data, size=args.size, download=args.download)
    out = data.export_folder(ds, args.out, quality=args.quality)
    mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"wrote {len(ds)} images ({args.size}x{args.size}, JPEG quality {args.quality}, {mb:.1f} MB) to {out}")
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = (_add_devices, _add_summary, _add_check_placement, _add_figure3, _add_train, _add_worker, _add_compare,
            _add_report, _add_sync_docs, _add_pipeline_speed, _add_cache, _add_bench, _add_bench_cluster,
            _add_export_data, _add_profile)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help: argparse's "(default: X)", unless the help says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.required or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if action.default is False:  # a switch
            return f"{text} (default: off)"
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alexnet-split", description=__doc__.split("\n\n")[0],
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ log (its start-up banner reads like errors)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(_Subcommands(sub))
    return parser


class _Subcommands:
    """The subparsers action, with every subcommand's help formatted by _HelpFormatter."""

    def __init__(self, action):
        self.action = action

    def add_parser(self, name, **kw):
        kw.setdefault("description", kw.get("help"))
        p = self.action.add_parser(name, formatter_class=_HelpFormatter, **kw)
        # accepted after the command too (`train --verbose`); absent, the top-level value stands
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show TensorFlow's C++ log (default: off)")
        return p


# User errors: one line and exit code 2 (OSError: a path that cannot be read or written).
USER_ERRORS = (ValueError, RuntimeError, OSError)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.verbose:  # TensorFlow's C++ log on the terminal, whatever TF_CPP_MIN_LOG_LEVEL says
        os.environ.update(ALEXNET_SPLIT_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="0")
        os.environ.pop("_ALEXNET_SPLIT_QUIET", None)
    else:
        runlog.quiet_tensorflow_import()
    try:
        return args.func(args)
    except KeyboardInterrupt as e:  # train.Interrupted names the step a rerun resumes from
        resumes = "; run the same command to resume" if args.command in ("train", "compare") else ""
        if sys.stdout.isatty():
            print(flush=True)  # end a progress bar's line
        print(f"alexnet-split {args.command}: {str(e) or 'interrupted' + resumes}", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"alexnet-split {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
