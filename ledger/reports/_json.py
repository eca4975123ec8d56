"""The JSON report: one object, written piece by piece, valid against report.schema.json.

Seeds are decimal strings (JSON readers lose integers above 2^53); times are ISO 8601
UTC with a ``Z``. Per-record arrays (``records``, each warning's ``records``,
``evidence``) are streamed, so they can hold every record of the selection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from ledger.reports._build import ReportSource
from ledger.reports._model import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    AuditSection,
    EarlierFailure,
    EvidenceItem,
    IntegritySection,
    Methodology,
    RecordRow,
    Report,
    RunInfo,
    Summary,
    VerificationInfo,
)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seed(value: int | None) -> str | None:
    return None if value is None else str(value)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False, allow_nan=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, bytes):
        raise TypeError("bytes never go into a JSON report")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def summary_json(s: Summary) -> dict[str, Any]:
    return {
        "total": s.total,
        "by_modality": dict(s.by_modality),
        "by_model": dict(s.by_model),
        "by_scheduler": dict(s.by_scheduler),
        "by_backend": dict(s.by_backend),
        "by_source": dict(s.by_source),
        "by_status": dict(s.by_status),
        "by_scheduler_kind": dict(s.by_scheduler_kind),
        "by_seed_support": dict(s.by_seed_support),
        "counts": {
            "explicit_seed": s.explicit_seed,
            "deterministic_scheduler": s.deterministic_scheduler,
            "seed_capable_model": s.seed_capable_model,
            "reproducible_by_design": s.reproducible_by_design,
        },
        "shares": s.shares(),
    }


def run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "created_at": _time(run.created_at),
        "finished_at": _time(run.finished_at),
        "status": run.status,
        "backend": run.backend,
        "selected_count": run.selected_count,
        "policy": dict(run.policy),
        "results": run.results,
    }


def audit_json(a: AuditSection) -> dict[str, Any]:
    run = a.latest_run
    return {
        "available": a.available,
        "runs": a.runs,
        "latest_run": None if run is None else run_json(run),
        "runs_aggregated": [run_json(x) for x in a.run_list],
        "earlier_failures_count": a.earlier_failures,
        "audited": a.audited,
        "never_audited": a.never_audited,
        "evaluated": a.evaluated,
        "passed": a.passed,
        "expected_drift": a.expected_drift,
        "failed": a.failed,
        "errors": a.errors,
        "skipped": a.skipped,
        "pass_rate": a.pass_rate,
        "evidence_count": a.evidence,
        "by_verdict": dict(a.by_verdict),
        "by_outcome": dict(a.by_outcome),
        "by_model": {k: dict(v) for k, v in a.by_model.items()},
        "by_scheduler": {k: dict(v) for k, v in a.by_scheduler.items()},
    }


def integrity_json(i: IntegritySection) -> dict[str, Any]:
    cp, v, p = i.checkpoint, i.verification, i.previous
    return {
        "checkpoint": None
        if cp is None
        else {
            "origin": cp.origin,
            "size": cp.size,
            "root_hex": cp.root_hex,
            "key_name": cp.key_name,
            "key_id": cp.key_id,
            "public_key": cp.verifier,
            "created_at": _time(cp.created_at),
            "note": cp.note,
        },
        "checkpoints": i.checkpoints,
        "log_size": i.log_size,
        "sealed_records": i.sealed_records,
        "unsealed_records": i.unsealed_records,
        "status": i.status(),
        "verification": None if v is None else verification_json(v),
        "previous_checkpoint": None
        if p is None
        else {
            "origin": p.origin,
            "size": p.size,
            "root_hex": p.root_hex,
            "signature_ok": p.signature_ok,
            "consistent": p.consistent,
            "detail": p.detail,
        },
    }


def verification_json(v: VerificationInfo) -> dict[str, Any]:
    d, k = v.divergence, v.key
    return {
        "status": v.status,
        # null, not true, when rows were not re-hashed: nothing was found, nothing passed
        "ok": True if v.ok else (False if v.failed else None),
        "mode": v.mode,
        "scope": v.scope,
        "ran_at": _time(v.ran_at),
        "detail": v.detail,
        "leaves_checked": v.leaves_checked,
        "path": v.path,
        "divergence": None
        if d is None
        else {
            "kind": d.kind,
            "message": d.message,
            "leaf_index": d.leaf_index,
            "entry_type": d.entry_type,
            "entry_id": d.entry_id,
            "columns": list(d.columns),
        },
        "key": None
        if k is None
        else {
            "trusted": k.trusted,
            "name": k.name,
            "key_id": k.key_id,
            "public_key": k.verifier,
            "statement": k.statement(),
        },
    }


def earlier_failure_json(x: EarlierFailure) -> dict[str, Any]:
    return {
        "record_id": x.record_id,
        "failed_run_id": x.failed_run_id,
        "failed_at": _time(x.failed_at),
        "latest_run_id": x.latest_run_id,
        "latest_at": _time(x.latest_at),
        "latest_outcome": x.latest_outcome,
        "latest_verdict": x.latest_verdict,
    }


def methodology_json(m: Methodology) -> dict[str, Any]:
    return {
        "fingerprint_version": m.fingerprint_version,
        "thresholds": dict(m.thresholds),
        "verdicts": dict(m.verdicts),
        "policy": dict(m.policy),
        "definitions": dict(m.definitions),
        "warnings": dict(m.warnings),
        "known_limits": list(m.known_limits),
    }


def record_json(r: RecordRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "created_at": _time(r.created_at),
        "modality": r.modality,
        "model": r.model,
        "scheduler": r.scheduler,
        "scheduler_kind": r.scheduler_kind,
        "backend": r.backend,
        "source": r.source,
        "status": r.status,
        "seed": _seed(r.seed),
        "seed_origin": r.seed_origin,
        "seed_capable": r.seed_capable,
        "explicit_seed": r.explicit_seed,
        "deterministic_scheduler": r.deterministic_scheduler,
        "reproducible_by_design": r.reproducible_by_design,
        "prompt": r.prompt,
        "pixel_sha256": r.pixel_sha256,
        "file_sha256": r.file_sha256,
        "leaf_index": r.leaf_index,
        "audit_run_id": r.audit_run_id,
        "verdict": r.verdict,
        "outcome": r.outcome,
        "audited_at": _time(r.audited_at),
        "warnings": list(r.warnings),
        "earlier_failure": None
        if r.earlier_failure is None
        else {"run_id": r.earlier_failure[0], "at": _time(r.earlier_failure[1])},
        **_environment_json(r.environment, r.replay_environment, r.environment_differences),
    }


def _environment_json(
    environment: Mapping[str, Any] | None,
    replay: Mapping[str, Any] | None,
    differences: tuple[Mapping[str, Any], ...] | None,
) -> dict[str, Any]:
    return {
        "environment": None if environment is None else dict(environment),
        "replay_environment": None if replay is None else dict(replay),
        "environment_differences": None if differences is None else [dict(d) for d in differences],
    }


def evidence_json(x: EvidenceItem) -> dict[str, Any]:
    return {
        "record_id": x.record_id,
        "run_id": x.run_id,
        "model": x.model,
        "scheduler": x.scheduler,
        "seed": _seed(x.seed),
        "verdict": x.verdict,
        "outcome": x.outcome,
        "distances": {k: v for k, v in x.distances.items() if not isinstance(v, bytes)},
        "error_code": x.error_code,
        "pixel_sha256": x.pixel_sha256,
        "replay_pixel_sha256": x.replay_pixel_sha256,
        **_environment_json(x.environment, x.replay_environment, x.environment_differences),
    }


def _array(out: TextIO, items: Iterable[Any]) -> None:
    out.write("[")
    first = True
    for item in items:
        out.write("\n    " if first else ",\n    ")
        out.write(_dump(item))
        first = False
    out.write("\n  ]" if not first else "]")


def render_json(report: Report, source: ReportSource, out: TextIO) -> None:
    m = report.meta
    head = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        # first, as the HTML banner: whether the log verifies, and where it first does not
        "integrity_status": report.integrity.status(),
        "first_divergence": report.integrity.failure(),
        "meta": {
            "generated_at": _time(m.generated_at),
            "seedledger_version": m.seedledger_version,
            "engine": m.engine,
            "filters": dict(m.filters),
            "first_created_at": _time(m.first_created_at),
            "last_created_at": _time(m.last_created_at),
        },
        "summary": summary_json(report.summary),
        "audit": audit_json(report.audit),
    }
    out.write("{\n")
    for key, value in head.items():
        out.write(f"  {_dump(key)}: {_dump(value)},\n")
    out.write('  "risks": {\n')
    out.write(f'    "records_with_warnings": {report.risks.records_with_warnings},\n')
    out.write('    "items": [')
    for n, item in enumerate(report.risks.items):
        out.write("\n      " if n == 0 else ",\n      ")
        fixed = {"code": item.code, "severity": item.severity, "count": item.count, "meaning": item.meaning}
        out.write(_dump(fixed)[:-1] + ', "records": [')
        for k, record_id in enumerate(source.iter_affected_ids(item.code)):
            out.write(("" if k == 0 else ", ") + str(record_id))
        out.write("]}")
    out.write("\n    ]\n  },\n" if report.risks.items else "]\n  },\n")
    out.write('  "audit_history": ')
    _array(out, (earlier_failure_json(x) for x in source.iter_earlier_failures()))
    out.write(",\n")
    out.write('  "evidence": ')
    _array(out, (evidence_json(x) for x in source.iter_evidence(thumbnails=False)))
    out.write(",\n")
    out.write(f'  "integrity": {_dump(integrity_json(report.integrity))},\n')
    out.write(f'  "methodology": {_dump(methodology_json(report.methodology))},\n')
    out.write('  "records": ')
    _array(out, (record_json(r) for r in source.iter_records()))
    out.write("\n}\n")
