"""Every code block of the README and docs/ runs as written, so that no snippet rots.

- ```python blocks run in a fresh interpreter, as pasted;
- every ``alexnet-split ...`` line (in ```bash blocks, and after ``$ `` in shown output) goes through
  the real argument parser, its placeholders (DIR, spec.json) filled in; the quick commands
  (QUICK: seconds each) also run, against the synthetic data or a copy of the committed results.
  The others need the full data or hours: the parser is what can check them here;
- ``bash scripts/...`` lines name scripts that exist; ```json blocks parse.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from alexnet_split import cli as cli_module

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
QUICK = {"devices", "summary", "report", "cache"}


def blocks(lang) -> list[tuple[str, str]]:
    """(where, text) of every fenced block tagged `lang` ("" for untagged) in the documents."""
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m[1] == lang:
                found.append((f"{doc.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}", m[2]))
    return found


def shell_lines(text, prompt=False) -> list[str]:
    """The commands of a shell block (comments cut, continuations joined); with `prompt`, only the
    lines shown after ``$ ``."""
    lines = text.replace("\\\n", " ").splitlines()
    if prompt:
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    return [ln.split(" #")[0].strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def cli_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every documented ``alexnet-split`` line; ``[--flag x]`` gives the line
    with and without it."""
    found = []
    shown = [(where, text, False) for where, text in blocks("bash")] + \
        [(where, text, True) for where, text in blocks("")]
    for where, text, prompt in shown:
        for line in shell_lines(text, prompt):
            if not line.startswith("alexnet-split "):
                continue
            words = line.split()[1:]
            found.append((where, [w for w in words if not w.startswith("[") and not w.endswith("]")]))
            if any(w.startswith("[") for w in words):
                found.append((where, [w.strip("[]") for w in words]))
    return found


def filled(argv, data_root, spec_file) -> list[str]:
    return [str(data_root) if a == "DIR" else str(spec_file) if a == "spec.json" else a for a in argv]


def test_the_documents_have_code_to_check():
    assert len(blocks("python")) >= 1 and len(cli_commands()) >= 20


@pytest.mark.parametrize("where,code", blocks("python"), ids=[w for w, _ in blocks("python")])
def test_python_blocks_run_as_pasted(where, code, tmp_path):
    env = {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, f"{where}:\n{proc.stderr[-3000:]}"


def test_every_documented_command_parses(data_root, tmp_path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}))
    parser = cli_module.build_parser()
    for where, argv in cli_commands():
        try:
            parser.parse_args(filled(argv, data_root, spec_file))
        except SystemExit as e:
            pytest.fail(f"{where}: alexnet-split {' '.join(argv)} is refused by the parser (exit {e.code})")


def test_every_documented_script_exists():
    for where, text in blocks("bash"):
        for line in shell_lines(text):
            if line.startswith("bash "):
                assert (ROOT / line.split()[1]).is_file(), f"{where}: {line}"


def test_json_blocks_parse():
    for where, text in blocks("json"):
        assert isinstance(json.loads(text), dict), where


@pytest.mark.slow
def test_the_quick_documented_commands_run(data_root, tmp_path):
    ran = set()
    # the committed comparisons a report reads (and their references): a copy, so nothing here is rewritten
    shutil.copytree(ROOT / "results", tmp_path / "results", ignore=shutil.ignore_patterns("ckpt", "*.npz", "*.svg"))
    for where, argv in cli_commands():
        if argv[0] not in QUICK:
            continue
        proc = cli(*filled(argv, data_root, tmp_path / "spec.json"), cwd=tmp_path,
                   env={"ALEXNET_SPLIT_CACHE": str(tmp_path / "cache")})
        assert proc.returncode == 0, f"{where}: alexnet-split {' '.join(argv)}\n{proc.stderr[-2000:]}"
        ran.add(argv[0])
    assert ran == QUICK
