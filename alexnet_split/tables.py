"""The one CSV writer and the one markdown-table writer behind every table the project writes."""

from __future__ import annotations

import csv
import io


def csv_text(fields, rows) -> str:
    """CSV text (``\\n`` line ends) with header `fields` and one line per dict of `rows`; keys
    outside `fields` are left out, missing ones are empty. Values are written as given: format
    floats before."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(fields), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def markdown_table(header, rows, align) -> list[str]:
    """A markdown table as lines: `header`, then the rule, then `rows` (lists of cells, already
    text). `align`: one letter per column, ``l`` left or ``r`` right."""
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but align {align!r}")

    def line(cells):
        return "| " + " | ".join(cells) + " |"

    return [line(header), "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|", *map(line, rows)]
