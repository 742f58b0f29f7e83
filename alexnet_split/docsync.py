"""Generated blocks in the README and docs/: each ``<!-- begin PATH -->`` ... ``<!-- end PATH -->``
holds the current content of PATH (relative to the project root: the folder with README.md and
results/), so no figure in the documentation is typed by hand.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .runlog import atomic_write

_BEGIN, _END = "<!-- begin {} -->", "<!-- end {} -->"


def documents(root) -> list[Path]:
    """The project's documents that may hold generated blocks: README.md and docs/*.md."""
    root = Path(root)
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def body(source: Path, document: Path | None = None) -> str:
    """How PATH appears in a block: text files fenced, markdown with its titles one level down
    (``# `` becomes ``### ``) and its relative links and images pointed from `document`'s folder."""
    text = source.read_text()
    if source.suffix == ".txt":
        return f"```\n{text.strip()}\n```"
    if document is not None:
        text = _LINK.sub(lambda m: m[1] + _moved(m[2], source, document) + ")", text)
    return "### " + text.replace("\n# ", "\n### ").lstrip("# ").rstrip("\n")


_LINK = re.compile(r"(\]\()([^)\s]+)\)")


def _moved(target: str, source: Path, document: Path) -> str:
    """A link `target` written in `source`, as `document` reaches the same file."""
    if re.match(r"[a-z]+:|#|/", target):
        return target
    path = (source.parent / target).resolve()
    return Path(os.path.relpath(path, document.resolve().parent)).as_posix()


def block(document, key) -> str | None:
    """The text between `document`'s ``<!-- begin KEY -->`` and ``<!-- end KEY -->`` markers."""
    text = Path(document).read_text()
    begin, end = _BEGIN.format(key), _END.format(key)
    if begin not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0]


def sync_document(document, root) -> bool:
    """Refresh every block of `document` whose PATH exists under `root`; returns whether it changed."""
    document, root = Path(document), Path(root)
    text = old = document.read_text()
    for key in re.findall(r"<!-- begin (\S+) -->", text):
        source = root / key
        begin, end = _BEGIN.format(key), _END.format(key)
        if not source.is_file() or end not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{body(source, document)}\n{end}{tail}"
    if text != old:
        atomic_write(document, text)
    return text != old


def sync(root) -> list[Path]:
    """Refresh the blocks of every document of the project at `root`; returns those that changed."""
    return [d for d in documents(root) if sync_document(d, root)]


def project_root(written) -> Path | None:
    """The project that `written` (a file or folder under its ``results/``) belongs to."""
    for folder in Path(written).resolve().parents:
        if folder.name == "results" and (folder.parent / "README.md").is_file():
            return folder.parent
    return None
