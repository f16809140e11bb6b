"""JSON and CSV reports: rows in, one file out (written atomically)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from convkit.errors import UsageError
from convkit.imageio import write_atomic

REPORT_FIELDS = (
    "image", "kernel", "kernel_shape", "backend", "padding", "flip",
    "runs", "median_ms", "min_ms", "max_abs_diff", "output", "crop",
)  # fmt: skip
REPORT_SUFFIXES = (".json", ".csv")
BENCH_FIELDS = (
    "size", "kernel", "kernel_shape", "backend", "runs", "median_ms", "min_ms", "extrapolated",
)  # fmt: skip


def check_report_path(path: str | Path) -> Path:
    """A report path whose suffix says JSON or CSV; a `UsageError` otherwise."""
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"report {path}: the file name must end in .json or .csv")
    return path


def write_report(
    rows: Sequence[dict], path: str | Path, version: str, fields: Sequence[str] = REPORT_FIELDS
) -> Path:
    """Write ``rows`` as ``{"convkit": version, "rows": [...]}`` or as CSV with a header.

    In CSV, ``kernel_shape`` is written as ``kHxkW`` and a missing output as an empty cell.
    """
    path = check_report_path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps({"convkit": version, "rows": list(rows)}, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            flat = dict(row)
            flat["kernel_shape"] = "x".join(str(n) for n in row["kernel_shape"])
            writer.writerow(flat)
        text = buffer.getvalue()
    return write_atomic(path, text.encode("utf-8"))
