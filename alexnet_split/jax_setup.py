"""JAX process set-up for the device engine: compile once, ever, and deterministically.

Imported only under ``KERAS_BACKEND=jax``. :func:`configure` must run before JAX starts a backend
(before the first array or ``jax.devices()``):

* JAX's persistent compilation cache in `cache_dir`, keeping every program (no minimum compile
  time or size), with XLA's per-fusion autotune results in its ``xla_gpu_per_fusion_autotune_cache_dir``
  subfolder (JAX's ``jax_persistent_cache_enable_xla_caches``), so that a second process, or a
  second device call that carries the folder back, neither compiles nor autotunes again. Reusing
  the autotune results also makes compilation deterministic: a re-autotune could pick another
  convolution algorithm, with other rounding.
* JAX puts the autotune folder's path into every program's cache key, so a cache copied to
  another folder (the next device call's $OUT) would miss everything: :func:`stable_link` gives
  the cache a fixed path, a symbolic link to wherever the folder is this time.
* Determinism on GPU goes per program, not through ``XLA_FLAGS``: :func:`compiler_options` gives
  ``xla_gpu_exclude_nondeterministic_ops`` (deterministic scatter, GEMM and convolution kernels,
  autotuning kept; ``xla_gpu_deterministic_ops`` would also switch autotuning off). XLA refuses to
  compile a select-and-scatter (the built-in max-pool gradient) under it, and an unknown or refused
  XLA_FLAGS entry aborts the whole process at start-up, whereas a refused program can be compiled
  again without the option (:func:`alexnet_split.engine_device.compile_executable` does, and says so).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

# XLA's option names, checked in jaxlib 0.10.2's libjax_common.so (the flags table of
# xla/debug_options_flags.cc); an unknown XLA_FLAGS entry aborts the process at start-up.
DETERMINISTIC_GPU = {"xla_gpu_exclude_nondeterministic_ops": True}
AUTOTUNE_CACHE = "xla_gpu_per_fusion_autotune_cache_dir"  # a value of jax_persistent_cache_enable_xla_caches

_settings = {"deterministic": False}


def platform() -> str:
    """"gpu" or "cpu", found without starting a backend: JAX_PLATFORMS when set, else whether the
    CUDA plugin of the jax[cuda] wheels is installed and a driver is present."""
    chosen = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
    if chosen:
        return "gpu" if chosen in ("cuda", "gpu", "rocm") else chosen
    plugin = any(importlib.util.find_spec(m) is not None for m in ("jax_cuda12_plugin", "jax_cuda13_plugin"))
    return "gpu" if plugin and shutil.which("nvidia-smi") else "cpu"


def configure(cache_dir=None, deterministic=True, extra_xla_flags=()) -> dict:
    """Set up this process's JAX before its backend starts; returns what was set (for the log).

    `cache_dir`: the persistent compilation cache (made if missing; None: no cache).
    `deterministic`: :func:`compiler_options` asks XLA for deterministic kernels on GPU.
    `extra_xla_flags`: more ``--xla_...`` flags for XLA_FLAGS; ``--xla_gpu_*`` ones are added only
    on GPU. Raises RuntimeError if the backend already started (the flags would be ignored)."""
    import jax
    from jax._src import xla_bridge

    if getattr(xla_bridge, "backends_are_initialized", lambda: False)():
        raise RuntimeError("jax_setup.configure must run before JAX starts its backend (before the first array)")
    where = platform()
    done = {"platform": where, "deterministic": bool(deterministic)}
    _settings["deterministic"] = bool(deterministic)
    if cache_dir is not None:
        cache_dir = Path(os.path.abspath(cache_dir))  # not resolved: a stable_link stays the key's path
        cache_dir.mkdir(parents=True, exist_ok=True)
        options = {"jax_compilation_cache_dir": str(cache_dir),
                   "jax_persistent_cache_min_compile_time_secs": 0.0,
                   "jax_persistent_cache_min_entry_size_bytes": -1,  # -1: keep entries of every size
                   "jax_persistent_cache_enable_xla_caches": AUTOTUNE_CACHE}
        for name, value in options.items():
            try:
                jax.config.update(name, value)
                done[name] = value
            except AttributeError:  # an option this jax does not have: say so, run without it
                done[name] = f"unavailable in jax {jax.__version__}"
    flags = [f for f in extra_xla_flags if where == "gpu" or not f.startswith("--xla_gpu_")]
    for flag in flags:
        if not flag.startswith("--xla_"):
            raise ValueError(f"extra_xla_flags: {flag!r} is not an --xla_... flag")
    if flags:
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()
    done["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return done


def stable_link(cache_dir, link) -> Path:
    """`link`, a symbolic link to the folder `cache_dir` (made if missing), to pass to
    :func:`configure`: the cache keys then name `link`, so the same cache content hits wherever it
    was copied to. Replaces a link to another folder atomically; refuses a `link` that is a real
    file or folder."""
    target, link = Path(os.path.abspath(cache_dir)), Path(link)
    target.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return link
    if link.exists() and not link.is_symlink():
        raise ValueError(f"cache link {link} exists and is not a symbolic link; choose another path")
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)
    return link


def compiler_options(backend: str) -> dict:
    """Per-program XLA options for `backend` ("gpu", "cpu", ...): the deterministic kernels on
    GPU when :func:`configure` asked for them. The CPU backend is deterministic as it is."""
    return dict(DETERMINISTIC_GPU) if _settings["deterministic"] and backend in ("gpu", "cuda", "rocm") else {}


def cache_files(cache_dir) -> int:
    """How many entries the persistent cache folder holds (its subfolders not counted)."""
    folder = Path(cache_dir)
    return sum(1 for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0


def folder_bytes(folder) -> int:
    folder = Path(folder)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
