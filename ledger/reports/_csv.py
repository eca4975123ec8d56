"""The CSV report: one row per selected record, a header row first.

Text cells that a spreadsheet would take for a formula (starting, after any spaces,
with ``=``, ``+``, ``-``, ``@``, their full-width forms ``＝＋－＠`` which some
spreadsheets fold to ASCII, tab, carriage return or newline) are prefixed with ``'``
(OWASP CSV injection).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import Any, TextIO

from ledger.core import environment
from ledger.reports._build import ReportSource
from ledger.reports._environments import differences_text
from ledger.reports._model import RecordRow, Report

COLUMNS = (
    # first, on every row: whether the log verifies (report.integrity.status), and the
    # first divergence when it does not
    "log_verification",
    "record_id",
    "created_at",
    "modality",
    "model",
    "scheduler",
    "scheduler_kind",
    "backend",
    "source",
    "status",
    "seed",
    "seed_origin",
    "seed_capable",
    "explicit_seed",
    "deterministic_scheduler",
    "reproducible_by_design",
    "audit_run_id",
    "verdict",
    "outcome",
    "audited_at",
    "warnings",
    "pixel_sha256",
    "file_sha256",
    "leaf_index",
    "earlier_failure",
    "environment",
    "environment_differences",
    "prompt",
)

_FORMULA = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\t", "\r", "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return "'" + text if text.lstrip(" ").startswith(_FORMULA) else text


def log_verification(report: Report) -> str:
    failure = report.integrity.failure()
    return f"FAILED: {failure}" if failure is not None else report.integrity.status()


def row_values(r: RecordRow, verification: str = "") -> list[str]:
    earlier = None
    if r.earlier_failure is not None:
        earlier = f"failed in run {r.earlier_failure[0]} at {_cell(r.earlier_failure[1])}"
    values = (
        verification,
        r.id,
        r.created_at,
        r.modality,
        r.model,
        r.scheduler,
        r.scheduler_kind,
        r.backend,
        r.source,
        r.status,
        r.seed,
        r.seed_origin,
        r.seed_capable,
        r.explicit_seed,
        r.deterministic_scheduler,
        r.reproducible_by_design,
        r.audit_run_id,
        r.verdict,
        r.outcome,
        r.audited_at,
        ";".join(r.warnings),
        r.pixel_sha256,
        r.file_sha256,
        r.leaf_index,
        earlier,
        environment.summary(r.environment),
        None
        if r.environment_differences is None
        else differences_text(r.environment_differences, r.environment, r.replay_environment),
        r.prompt,
    )
    return [_cell(v) for v in values]


def render_csv(report: Report, source: ReportSource, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    verification = log_verification(report)
    for record in source.iter_records():
        writer.writerow(row_values(record, verification))
