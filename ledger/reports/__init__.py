"""Compliance reports: a model built from SQL aggregates, rendered as HTML, JSON, CSV
or Markdown, written atomically (a temp file renamed into place: no partial report).

    from ledger.reports import ReportOptions, write_report
    write_report(ledger, RecordFilter(), "html", Path("report.html"))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection

from ledger.core.files import atomic_open
from ledger.errors import UsageError
from ledger.reports._build import ReportOptions, ReportSource
from ledger.reports._csv import COLUMNS as CSV_COLUMNS
from ledger.reports._csv import render_csv
from ledger.reports._html import render_html
from ledger.reports._json import render_json
from ledger.reports._markdown import render_markdown
from ledger.reports._model import SCHEMA_ID, SCHEMA_VERSION, Report
from ledger.store import Ledger, RecordFilter

Renderer = Callable[[Report, ReportSource, TextIO], None]

RENDERERS: dict[str, Renderer] = {
    "html": render_html,
    "json": render_json,
    "csv": render_csv,
    "md": render_markdown,
}
FORMATS = tuple(RENDERERS)


@dataclass(frozen=True, kw_only=True)
class ReportResult:
    path: Path
    format: str
    bytes: int
    records: int
    report: Report


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON report."""
    import json

    schema: dict[str, Any] = json.loads(
        resources.files("ledger.reports").joinpath("report.schema.json").read_text("utf-8")
    )
    return schema


@contextlib.contextmanager
def _snapshot(ledger: Ledger) -> Iterator[Connection]:
    """One read transaction for the whole report, so every section counts the same rows."""
    with ledger.translate_errors(), ledger.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Many small keyset-page queries: JIT compilation (triggered by high cost
                # estimates, e.g. before statistics exist) costs more than it saves.
                conn.exec_driver_sql("SET LOCAL jit = off")
            yield conn


@contextlib.contextmanager
def atomic_text(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A text file at ``path`` that appears only if the block succeeds."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"directory for the report does not exist: {parent}")
    with atomic_open(path, "w", newline=newline) as fh:
        yield fh


def build_report(
    ledger: Ledger, where: RecordFilter | None = None, options: ReportOptions | None = None
) -> Report:
    """The report model alone (aggregates only), e.g. for tests and dashboards."""
    with _snapshot(ledger) as conn:
        return ReportSource(conn, where or RecordFilter(), options or ReportOptions(), ledger).build()


def write_report(
    ledger: Ledger,
    where: RecordFilter | None,
    fmt: str,
    out: Path,
    options: ReportOptions | None = None,
) -> ReportResult:
    """Render the report for the records ``where`` selects into ``out``, atomically."""
    if fmt not in RENDERERS:
        raise UsageError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{out} is a directory; give a file path for --out")
    with _snapshot(ledger) as conn:
        source = ReportSource(conn, where or RecordFilter(), options or ReportOptions(), ledger)
        report = source.build()
        with atomic_text(out, newline="" if fmt == "csv" else None) as fh:
            RENDERERS[fmt](report, source, fh)
    return ReportResult(
        path=out, format=fmt, bytes=out.stat().st_size, records=report.summary.total, report=report
    )


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "Report",
    "ReportOptions",
    "ReportResult",
    "build_report",
    "json_schema",
    "write_report",
]
