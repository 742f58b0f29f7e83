"""Checks of compile-once (alexnet_split.jax_setup), determinism and the worker pool
(alexnet_split.workers) under KERAS_BACKEND=jax on the CPU: ``python tests/jax_workers.py CHECK ARGS``.
tests/test_workers.py runs them in fresh interpreters (the persistent cache is per process); a
check raises on failure and prints one JSON line."""

import json
import os
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexnet_split import jax_setup, workers  # noqa: E402

# a tiny run of the quick recipe: 67x67 crops, 2 intervals of 2 steps
OVERRIDES = {"epochs": None, "steps": 4, "eval_every": 2, "batch_size": 16}


def spec(results, data, seed=0, estimate=60.0, **kw):
    return workers.RunSpec(str(results), "paper", "towers", "quick", seed, dict(OVERRIDES), str(data), estimate, **kw)


def train_once(cache, link, results, data):
    """One tiny run with the persistent cache in folder `cache`, used through the symbolic link
    `link`; prints the cache's hits and misses."""
    path = jax_setup.stable_link(cache, link)
    done = jax_setup.configure(path, deterministic=True, extra_xla_flags=("--xla_gpu_deterministic_ops=true",))
    assert "xla_gpu" not in done["XLA_FLAGS"], done  # on CPU the GPU flag is left out
    import jax

    events = {}
    jax.monitoring.register_event_listener(lambda name, **kw: events.__setitem__(name, events.get(name, 0) + 1))
    final = workers.train_spec(spec(results, data))
    print(json.dumps({"hits": events.get("/jax/compilation_cache/cache_hits", 0),
                      "misses": events.get("/jax/compilation_cache/cache_misses", 0),
                      "test_top1": final["test_top1"], "files": jax_setup.cache_files(cache)}))


def pool(cache, results, data, alone):
    """Three runs, a failing one and a compile-only one on two workers: longest first, every run
    finishes, the failure is reported, a run that cannot fit the deadline is not started, and the
    pool's run of `alone`'s spec writes the same history.csv as it did alone."""
    lines = []
    specs = [spec(results, data, seed=s, estimate=e) for s, e in ((1, 10.0), (0, 40.0), (2, 30.0))]
    specs += [spec(results, Path(data) / "missing", seed=3, estimate=20.0),
              spec(results, data, seed=4, estimate=1e6), spec(results, data, seed=5, estimate=50.0, kind="compile")]
    with workers.Pool(2, cache_dir=cache, deadline=time.monotonic() + 3000, log=lines.append) as pool:
        out = pool.run(specs)
    print("\n".join(lines), file=sys.stderr)
    status = {r["name"].split("/")[-1]: r["status"] for r in out}
    assert status == {"paper_towers_s0": "done", "paper_towers_s1": "done", "paper_towers_s2": "done",
                      "paper_towers_s3": "failed", "paper_towers_s4": "skipped",
                      "paper_towers_s5 (compile)": "compiled"}, status
    started = [line.split(" start ")[1].split()[0].split("/")[-1] for line in lines if " start " in line]
    assert started == ["paper_towers_s5", "paper_towers_s0", "paper_towers_s2", "paper_towers_s3",
                       "paper_towers_s1"], started
    compiled = next(r for r in out if r["status"] == "compiled")["compile"]
    assert set(compiled) == {"train_interval", "evaluate", "predict"}, compiled
    assert all(r["compile"].startswith("compiled train_interval") for r in out if r["status"] == "done"), out
    failed = next(r for r in out if r["status"] == "failed")
    assert "missing" in failed["error"], failed
    mine = Path(results) / "runs" / "paper_towers_s0" / "history.csv"
    theirs = Path(alone) / "runs" / "paper_towers_s0" / "history.csv"
    assert mine.read_bytes() == theirs.read_bytes(), (mine.read_text(), theirs.read_text())
    print(json.dumps(status))


CHECKS = {f.__name__: f for f in (train_once, pool)}

if __name__ == "__main__":
    CHECKS[sys.argv[1]](*sys.argv[2:])
    print(f"OK {sys.argv[1]}")
