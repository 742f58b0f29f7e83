"""The CLI, run as users run it (a fresh process each)."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from alexnet_split import cli as cli_module
from alexnet_split import spec


@pytest.mark.slow
def test_devices_prints_the_plan():
    proc = cli("devices")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "logical devices: /device:CPU:0, /device:CPU:1" in proc.stdout
    assert re.search(r"tower 1 \(t1_conv1 \.\. t1_fc7\)\s+/CPU:1", proc.stdout)


BANNER = re.compile(r"^[IWE]0000 |absl::InitializeLog|failed call to cuInit", re.M)


@pytest.mark.slow
def test_the_terminal_is_quiet_unless_asked():
    """No TensorFlow C++ start-up banner whatever TF_CPP_MIN_LOG_LEVEL says (unset, as a new user
    runs it; 3, TensorFlow's own quiet switch; 0); ``--verbose``, before or after the command,
    brings TensorFlow's C++ log back."""
    fresh = {"_ALEXNET_SPLIT_QUIET": None, "ALEXNET_SPLIT_VERBOSE": None}
    quiet = None
    for level in (None, "3", "0"):
        proc = cli("devices", env=dict(fresh, TF_CPP_MIN_LOG_LEVEL=level))
        assert proc.returncode == 0 and "logical devices" in proc.stdout, proc.stderr[-2000:]
        assert not BANNER.search(proc.stderr), (level, proc.stderr[-2000:])
        quiet = quiet or proc
    for args in (("--verbose", "devices"), ("devices", "--verbose")):
        loud = cli(*args, env=dict(fresh, TF_CPP_MIN_LOG_LEVEL="3"))
        assert loud.returncode == 0 and loud.stdout == quiet.stdout, loud.stderr[-2000:]
        assert BANNER.search(loud.stderr), (args, loud.stderr[-2000:])


def test_importing_the_package_changes_nothing_global():
    """``import alexnet_split`` in a notebook: no Keras or TensorFlow import, no import hook, fd 2
    and the environment untouched, and only the package's own names in dir()."""
    code = ("import os, sys; env = dict(os.environ); hooks = list(sys.meta_path); fd2 = os.fstat(2); "
            "import alexnet_split as a; "
            "print(os.path.samestat(os.fstat(2), fd2), "
            "'keras' in sys.modules, 'tensorflow' in sys.modules, sys.meta_path == hooks, dict(os.environ) == env, "
            "[n for n in dir(a) if not n.startswith('_')] == sorted(a.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.stdout.split() == ["True", "False", "False", "True", "True", "True"], proc.stdout + proc.stderr


@pytest.mark.slow
def test_summary_prints_shapes_params_flops_and_devices():
    proc = cli("summary", "--layout", "paper", "--mode", "towers", "--classes", "1000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("t1_conv3"))
    # conv3 of tower 1 reads both towers: 3*3*256*192 + 192 weights, 2*13*13*192*9*256 FLOPs
    assert line.split() == ["t1_conv3", "13x13x192", "442,560", "149.5", "/CPU:1"]
    assert "60,965,224" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_summary_rejects_a_bad_tower_count_with_the_value():
    proc = cli("summary", "--towers", "5")
    assert proc.returncode == 2
    assert "n_towers=5 does not divide" in proc.stderr


def test_independent_flop_count_paper():
    """Per-image forward FLOPs of the two-tower net, counted by hand (multiply-add = 2)."""
    conv = 2 * (55 * 55 * 96 * 11 * 11 * 3 + 27 * 27 * 256 * 5 * 5 * 48 + 13 * 13 * 384 * 3 * 3 * 256
                + 13 * 13 * 384 * 3 * 3 * 192 + 13 * 13 * 256 * 3 * 3 * 192)
    fc = 2 * (9216 * 4096 + 4096 * 4096 + 4096 * 1000)
    assert sum(spec.layer_flops(spec.PAPER, "towers", num_classes=1000).values()) == conv + fc
    merged_conv = 2 * (55 * 55 * 96 * 363 + 27 * 27 * 256 * 25 * 96 + 13 * 13 * 384 * 9 * 256
                       + 13 * 13 * 384 * 9 * 384 + 13 * 13 * 256 * 9 * 384)
    assert sum(spec.layer_flops(spec.PAPER, "merged", num_classes=1000).values()) == merged_conv + fc


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd"])
def test_check_placement_command_succeeds(optimizer, tmp_path):
    proc = cli("check-placement", "--optimizer", optimizer, "--figure", tmp_path / "f.png")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "misplaced tower ops: 0" in proc.stdout
    assert "Optimizer slots on their weight's device: 30/30" in proc.stdout
    assert "f.png: 22 cross-device arrows" in proc.stdout and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_check_placement_refuses_a_figure_it_cannot_draw(tmp_path):
    proc = cli("check-placement", "--figure", tmp_path / "f.pdf")
    assert proc.returncode != 0 and "--figure " in proc.stderr and "f.pdf: give a .svg or .png" in proc.stderr


# --- the command line's own behaviour: help, --set, one-line errors, Ctrl-C outside a run -----------


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["report", "--help"]])
def test_help_starts_no_tensorflow(argv):
    """`alexnet-split --help` imports neither TensorFlow, Keras nor JAX (seconds to import; the
    help answers in a fraction of one), as the command runs it: `python -m alexnet_split.cli`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "alexnet_split.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "usage: alexnet-split" in proc.stdout, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert "alexnet_split" in imported and not imported & {"tensorflow", "keras", "jax"}
    if argv[0] == "report":
        assert "usage: alexnet-split report [-h] [--verbose] FOLDER" in proc.stdout and "a run folder" in proc.stdout


def subcommand_parsers():
    parser = cli_module.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"alexnet-split": parser, **sub.choices}


def test_every_option_shows_its_default():
    formatter = cli_module._HelpFormatter("alexnet-split")
    missing = [f"{name} {action.option_strings[-1]}" for name, p in subcommand_parsers().items()
               for action in p._actions if action.option_strings and action.dest != "help" and not action.required
               and "default" not in formatter._get_help_string(action)]
    assert not missing, missing
    assert "(default: 0,1,2,3,4)" in subcommand_parsers()["compare"].format_help()


def test_set_is_repeatable_and_null_unsets_a_key():
    args = cli_module.build_parser().parse_args(["train", "--out", "x", "--set", "epochs=1", "--set", "bias_fill=30",
                                          "steps=null"])
    assert cli_module._overrides(args.set) == {"epochs": 1, "bias_fill": 30, "steps": None}
    assert "null unsets a key" in " ".join(subcommand_parsers()["train"].format_help().split())


def test_user_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    Path("empty").mkdir()
    cases = [
        (["train", "--recipe", "quick", "--out", "afile"], "--out afile is a file; give a folder path"),
        (["train", "--recipe", "quick", "--out", "afile/run"], "--out afile/run lies under afile, a file"),
        (["compare", "--recipe", "quick", "--results", "afile"], "--results afile/quick lies under afile, a file"),
        (["export-data", "--out", "afile"], "--out afile is a file"),
        (["train", "--recipe", "quick", "--out", "new", "--set", "learning_rate=fast"],
         "learning_rate must be a number > 0, got 'fast'"),
        (["train", "--recipe", "quick", "--out", "new", "--set", "epochs"], "--set expects key=value, got 'epochs'"),
        (["report", "missing"], "missing: no such folder"),
        (["report", "empty"], "empty: neither a comparison folder (no compare.json) nor a train run folder"),
    ]
    for argv, message in cases:
        assert cli_module.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"alexnet-split {argv[0]}: error: {message}") and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty"] and not any(Path("empty").iterdir())


def test_ctrl_c_before_a_run_starts_exits_130_without_a_folder(tmp_path, monkeypatch, capsys):
    from alexnet_split import data_sources

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_sources, "locate", interrupted)
    argv = ["train", "--recipe", "quick", "--out", str(tmp_path / "run"), "--data", str(tmp_path)]
    assert cli_module.main(argv) == 130
    assert capsys.readouterr().err == "alexnet-split train: interrupted; run the same command to resume\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--recipe", "quick", "--out", "OUT"],
                                     ["compare", "--recipe", "quick", "--results", "OUT"], ["pipeline-speed"]])
def test_a_missing_data_path_is_refused_before_tensorflow_is_imported(tmp_path, command):
    """An argument error answers at once: the data path is checked before anything imports TensorFlow."""
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "alexnet_split.cli", *args, "--data",
                           str(tmp_path / "nonexistent")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"error: {tmp_path / 'nonexistent'}: no such file or folder" in proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "numpy" in imported and not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "jax")]
    assert not (tmp_path / "out").exists()
