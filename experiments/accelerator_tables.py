"""One device call: the canary, the runner benchmark and the towers / merged / half tables,
resumable across calls.

Command on the device machine (KERAS_BACKEND=jax, one GPU; carry Keras and compact data copies
made with ``alexnet-split export-data --size 256`` and ``--size 224``, see docs/accelerator.md):

    KERAS_BACKEND=jax python experiments/accelerator_tables.py --data D256 --data-seed D224 \\
        --out $OUT --work results --cache .jax_cache --workers 2 --budget 540 \\
        --jobs canary,bench,paper,init:paper,init:caffe,init:fan_in,seed

The compile cache: ``--cache DIR`` is copied to OUT/jax_cache, which every process of the call
uses (JAX's persistent compilation cache and XLA's autotune results, alexnet_split.jax_setup)
through the fixed link /tmp/alexnet_split_jax_cache (JAX's cache keys hold the cache's path), and
which comes back with $OUT. Before the next call copy it back to DIR (an ignored folder, e.g.
``.jax_cache``) and name DIR in the ``run`` tool's ``carry`` list: carried paths share 64 MiB
with the data, so the script prints the cache's size at its start and end. A first call (no
DIR yet) compiles cold; the next ones load.

Jobs, in the order given, each skipped once the budget is spent:

* ``canary``: a short real-data run of the paper recipe (towers, mixed_bfloat16, ``--canary-steps``)
  in two fresh processes, then in ``--workers`` copies at once in the pool; every history.csv must
  equal the first byte for byte (printed PASS or FAIL, with the cold and warm compile seconds).
  Its programs are the paper towers runs' (same shapes), so it also precompiles them.
* ``bench``: the runner against the scanned compute-only loop, side by side
  (:func:`alexnet_split.bench_runner.runner_table`: mixed_bfloat16 rows per mode and kernel option, the
  PyTorch reference, XLA's concurrent command buffers), OUT/bench/, within ``--bench-seconds``.
  ``bench32``: the same in float32.
* ``paper``: the fixed paper recipe (layout paper, mixed_bfloat16, loss from logits), towers, merged, half.
* ``seed``: the seed recipe as written (layout seed, float32), towers, merged, half.
* ``init:paper``, ``init:caffe``, ``init:fan_in``: the paper recipe with that init, capped at
  ``--init-steps`` steps: enough for the step that leaves chance.
* ``paper20``: the paper recipe's seeds 10-19, into results/paper_logits_s10-19_<host> (if time remains).

``paper`` trains seeds 0-9 (10 paired seeds) into results/paper_logits_<host>, the others seeds
0-4 (``--seeds`` overrides both). Every run uses ``--kernels`` (default first_max_pool: the GPU's
deterministic mode refuses the stock max-pool gradient, a scatter with atomics).

The table jobs go through one queue of ``--workers`` processes (alexnet_split.workers; with CUDA
MPS when nvidia-cuda-mps-control is on PATH and there are several workers): every distinct
program is compiled first (the cold compile seconds are printed), then the runs, job by job and
seed by seed (a cut leaves complete seeds), the longest run of a seed first. A run is launched
only if its estimate fits before the budget ends: 1.3x the longest finished run of its mode in
that results folder plus ``--overhead``, or ``--first-estimate``. Each run prints a line with a
UTC timestamp when it starts and ends. After every run OUT/<name>.tar is refreshed with the
run folders' logs (config.json, history.csv, timing.csv, state.json, final.json, train.log,
conv1.npz; never checkpoints). Unpack it over results/<name>/ and rerun with the same arguments
in the next call: finished runs are skipped. With ``--work results`` the committed runs of the
repository copy on the device machine count as finished, so a call trains only what is missing.
"""

import argparse
import dataclasses
import filecmp
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexnet_split import runlog

runlog.quiet_tensorflow_import()  # before TensorFlow is imported: its C++ banner reads like errors

from alexnet_split import bench_runner, devices, jax_setup, report, sweep, workers  # noqa: E402

MODES = ("towers", "merged", "half")
TABLE_JOBS = ("paper", "init:paper", "init:caffe", "init:fan_in", "seed", "paper20")
CACHE_LINK = Path(tempfile.gettempdir()) / "alexnet_split_jax_cache"  # the same path in every call


def jobs(kind, init_steps, kernels):
    """name -> (results folder, recipe, layout, overrides, seeds), in the issue's order of need.

    The paper table gets a folder of its own: results/paper_<kind> holds the earlier runs
    trained with the clipped loss, which must not count as finished here."""
    base = {"precision": "mixed_bfloat16", "kernels": kernels}
    ten, five = tuple(range(10)), tuple(range(5))
    return {
        "paper": (f"paper_logits_{kind}", "paper", "paper", base, ten),
        **{f"init:{init}": (f"init_{init}_{kind}", "paper", "paper", {**base, "init": init, "steps": init_steps}, five)
           for init in ("paper", "caffe", "fan_in")},
        "seed": (f"seed_{kind}", "seed", "seed", {"kernels": kernels}, five),
        # seeds 10-19 in a folder of their own: a comparison folder declares its seeds once (compare.json)
        "paper20": (f"paper_logits_s10-19_{kind}", "paper", "paper", base, tuple(range(10, 20))),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="Flowers 17 folder for the paper recipe (256 px export is enough)")
    p.add_argument("--data-seed", default=None, help="folder for the seed recipe's 224 px images (default: --data)")
    p.add_argument("--out", required=True, help="where the tars, the bench tables and the cache go ($OUT)")
    p.add_argument("--work", default=None, help="where the results folders live (default: OUT)")
    p.add_argument("--cache", default=None, help="a carried compile cache folder, copied to OUT/jax_cache")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the accelerator")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    p.add_argument("--jobs", default="canary,bench,paper,init:paper,init:caffe,init:fan_in,seed,paper20")
    p.add_argument("--seeds", default=None, help="comma list; default: each job's own (paper 0-9, others 0-4)")
    p.add_argument("--kernels", default="first_max_pool",
                   help="Recipe.kernels of every run; first_max_pool: XLA's deterministic mode refuses the "
                        "stock max-pool gradient (a scatter)")
    p.add_argument("--init-steps", type=int, default=2000)
    p.add_argument("--canary-steps", type=int, default=100)
    p.add_argument("--first-estimate", type=float, default=60.0, help="seconds assumed for a mode's first run")
    p.add_argument("--overhead", type=float, default=15.0, help="seconds a run costs beyond its training")
    p.add_argument("--bench-seconds", type=float, default=240.0, help="the most the bench job may take")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe overrides (smoke tests)")
    return p.parse_args(argv)


def log(line):
    print(line, flush=True)


def prepare_cache(carried, out: Path) -> Path:
    """OUT/jax_cache, seeded with the carried cache folder when there is one, behind the link
    CACHE_LINK: the cache keys hold the cache's path, which must be the same in every call."""
    cache = out / "jax_cache"
    if carried and Path(carried).is_dir():
        shutil.copytree(carried, cache, dirs_exist_ok=True)
    carried = carried if carried and Path(carried).is_dir() else None
    log(cache_line(cache) + (f" (carried from {carried})" if carried else " (cold: nothing carried)"))
    return jax_setup.stable_link(cache, CACHE_LINK)


def cache_line(cache: Path) -> str:
    """The cache's size: carried paths share the run tool's 64 MiB with the data."""
    mib = jax_setup.folder_bytes(cache) / 2**20
    return f"compile cache {os.path.realpath(cache)}: {jax_setup.cache_files(cache)} entries, {mib:.1f} MiB"


def main(argv=None):
    args = parse_args(argv)
    deadline = time.monotonic() + args.budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = prepare_cache(args.cache, out)
    # this process runs the benchmark; it takes memory as it needs it, leaving the rest to the workers
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    log(f"jax_setup: {json.dumps(jax_setup.configure(cache, deterministic=True), sort_keys=True)}")
    import keras

    kind = devices.host_kind()
    log(f"backend {keras.backend.backend()}, host {kind}, {runlog.machine()}, {args.workers} worker(s)")
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    ctx = {"args": args, "out": out, "work": Path(args.work or out), "cache": cache, "extra": extra,
           "deadline": deadline, "table": jobs(kind, args.init_steps, args.kernels),
           "seeds": [int(s) for s in args.seeds.split(",")] if args.seeds else None}
    names = args.jobs.split(",")
    with workers.mps_daemon(enable=args.workers > 1, log=log) as mps_env, \
            workers.Pool(args.workers, cache, deadline=deadline, env=mps_env, log=log, platform=jax_setup.platform(),
                         on_result=lambda spec, result: pack(spec, out)) as pool:
        ctx["pool"] = pool
        for job in [n for n in names if n not in TABLE_JOBS]:
            guarded(job, run_job, job, ctx)
        tables = [n for n in names if n in TABLE_JOBS]
        if tables:
            guarded("tables", run_tables, tables, ctx)
    log(cache_line(cache))
    log(f"done in {args.budget - (deadline - time.monotonic()):.0f} s")


def guarded(what, fn, *a):
    try:
        fn(*a)
    except Exception:  # one job's failure must not cost the call's other jobs
        traceback.print_exc()
        log(f"{what}: FAILED (traceback above)")


def run_job(job, ctx):
    left = ctx["deadline"] - time.monotonic()
    if job == "canary":
        canary(ctx)
    elif job in ("bench", "bench32"):
        if left < 60:
            log(f"{job}: skipped, {left:.0f} s left")
            return
        bench_runner.runner_table("paper", ("mixed_bfloat16",) if job == "bench" else ("float32",),
                                  out_dir=ctx["out"] / "bench", suffix="" if job == "bench" else "-float32",
                                  log=log, deadline=min(left - 30, ctx["args"].bench_seconds))
    else:
        raise ValueError(f"unknown job {job!r}; jobs: canary, bench, bench32, {', '.join(TABLE_JOBS)}")


def canary_spec(ctx, folder) -> workers.RunSpec:
    args = ctx["args"]
    overrides = {"precision": "mixed_bfloat16", "kernels": args.kernels, "steps": args.canary_steps,
                 "eval_every": args.canary_steps // 2,
                 **ctx["extra"]}
    return workers.RunSpec(str(ctx["out"] / "canary" / folder), "paper", "towers", "paper", 0, overrides, args.data,
                           estimate=60.0)


def canary(ctx):
    """The same short run in two fresh processes, then N copies at once in the pool: all
    history.csv files byte-identical (PASS) or not (FAIL)."""
    shutil.rmtree(ctx["out"] / "canary", ignore_errors=True)
    results = []
    for folder in ("alone_1", "alone_2"):
        # the same memory settings as the pool's workers: the autotuner's choices may depend on them
        with workers.Pool(1, ctx["cache"], deadline=ctx["deadline"], log=log, platform=jax_setup.platform()) as single:
            results += single.run([canary_spec(ctx, folder)])
    copies = [canary_spec(ctx, f"pool_{i}") for i in range(ctx["args"].workers)]
    results += ctx["pool"].run(copies)
    files = [Path(r["name"]) for r in results if r["status"] == "done"]
    history = [ctx["out"] / "canary" / f.parent.name / "runs" / f.name / "history.csv" for f in files]
    for r in results:
        log(f"canary {r['name']}: {r['status']}; {r.get('compile', '')}")
    same = [h for h in history[1:] if filecmp.cmp(history[0], h, shallow=False)]
    verdict = "PASS" if len(history) == len(results) >= 3 and len(same) == len(history) - 1 else "FAIL"
    log(f"canary: {verdict}: {len(same)} of {len(history) - 1} history.csv equal to {history[0] if history else '-'}"
        f" (cmp), {len(results) - len(history)} run(s) not finished")


def estimate(root: Path, mode: str, layout: str, ctx) -> float:
    """Seconds a run of `mode` is expected to take: from the finished runs of that mode in `root`."""
    done = [runlog.read_json(f)["train_seconds"] for f in (root / "runs").glob(f"{layout}_{mode}_s*/final.json")]
    return 1.3 * max(done) + ctx["args"].overhead if done else ctx["args"].first_estimate


def table_specs(tables, ctx) -> tuple[list, list]:
    """(compile specs, one per distinct program set; run specs, the runs not finished yet)."""
    runs, programs = [], {}
    for j, job in enumerate(tables):
        name, recipe, layout, overrides, seeds = ctx["table"][job]
        overrides, seeds = {**overrides, **ctx["extra"]}, ctx["seeds"] or seeds
        root = ctx["work"] / name
        sweep.write_manifest(root, recipe, layout, MODES, seeds, overrides=overrides)
        data = ctx["args"].data_seed if (layout == "seed" and ctx["args"].data_seed) else ctx["args"].data
        for s, seed in enumerate(seeds):
            for mode in MODES:
                spec = workers.RunSpec(str(root), layout, mode, recipe, seed, overrides, data,
                                       estimate(root, mode, layout, ctx), group=1000 * j + s)
                if not (spec.out / "final.json").is_file():
                    runs.append(spec)
                    same = {k: v for k, v in overrides.items() if k not in ("init", "steps")}  # same programs
                    key = (layout, mode, recipe, json.dumps(same, sort_keys=True))
                    programs.setdefault(key, dataclasses.replace(spec, kind="compile",
                                                                 estimate=ctx["args"].first_estimate))
    return list(programs.values()), runs


def run_tables(tables, ctx):
    compiles, runs = table_specs(tables, ctx)
    log(f"tables {', '.join(tables)}: {len(runs)} runs to train, {len(compiles)} program sets to compile first")
    for r in ctx["pool"].run(compiles):
        log(f"cold compile {r['name']}: {r['status']} {r.get('compile', r.get('error', ''))}")
    ctx["pool"].run(runs)
    for job in tables:
        root = ctx["work"] / ctx["table"][job][0]
        try:
            log(report.report(root))
        except ValueError as e:  # no finished run yet
            log(str(e))
        sweep.pack_logs(root, ctx["out"] / f"{root.name}.tar")


def pack(spec: workers.RunSpec, out: Path):
    """After each table run: its results folder's logs into OUT/<name>.tar (not for the canary)."""
    root = Path(spec.results)
    if spec.kind == "train" and "canary" not in root.parts:
        sweep.pack_logs(root, out / f"{root.name}.tar")


if __name__ == "__main__":
    main()
