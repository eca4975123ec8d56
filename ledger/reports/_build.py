"""Build the report model from SQL aggregates; stream the per-record sections."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ledger import __version__
from ledger.core.models import supports_seed
from ledger.core.schedulers import SchedulerKind, classify
from ledger.reports import _environments, _history
from ledger.reports import _queries as q
from ledger.reports import _queries_environments as qe
from ledger.reports._integrity import integrity_section, no_log
from ledger.reports._methodology import methodology, warning_meaning
from ledger.reports._model import (
    AffectedRecord,
    AuditSection,
    EarlierFailure,
    EvidenceItem,
    IntegritySection,
    Meta,
    RecordRow,
    Report,
    RiskItem,
    RiskSection,
    RunInfo,
    Summary,
)
from ledger.store import Ledger
from ledger.store.filters import RecordFilter

NO_SCHEDULER = "(default)"


@lru_cache(maxsize=8192)
def _design(model: str, scheduler: str | None, backend: str) -> tuple[str, bool | None]:
    """(scheduler kind, seed support) from the catalogs: a few distinct keys per ledger."""
    kind = classify(scheduler, backend, {"model": model}).kind
    return str(kind), supports_seed(model)


def scheduler_label(scheduler: str | None, requested: str | None) -> str:
    return scheduler or requested or NO_SCHEDULER


def _sorted(counter: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    #: How many affected records per warning, and evidence items, HTML/Markdown show.
    html_limit: int = 25
    evidence_limit: int = 50
    previous_checkpoint: Path | None = None
    #: "full" (default): ``seedledger verify`` (every leaf recomputed from its row):
    #: finds any changed row. "leaf-hashes": only the latest checkpoint's signature and
    #: the stored leaf hashes recomputed into its root (rows not re-hashed: never
    #: reported as passed). "none": skip. See ``_integrity``.
    verify: str = "full"
    #: Public keys to check signatures with (plus SEEDLEDGER_VERIFIER_KEY); when none
    #: is given, the key stored beside the checkpoint is used and the report says so.
    keys: tuple[str, ...] = ()


class ReportSource:
    """Reads one snapshot of the ledger: aggregates for the model, pages for the rest."""

    def __init__(
        self, conn: Connection, where: RecordFilter, options: ReportOptions, ledger: Ledger | None = None
    ) -> None:
        self.conn = conn
        self.ledger = ledger
        self.where = where
        self.options = options
        self.has_audits = q.has_tables(conn, "audit_results", "audit_runs", "record_warnings")
        self.has_log = q.has_tables(conn, "log_entries", "checkpoints", "log_state")
        self.has_environments = q.has_tables(conn, "record_environments")

    # -- the model ---------------------------------------------------------------------

    def build(self) -> Report:
        summary = self._summary()
        first, last = q.time_span(self.conn, self.where)
        meta = Meta(
            generated_at=datetime.now(UTC),
            seedledger_version=__version__,
            engine=self.conn.dialect.name,
            filters=_filters(self.where),
            first_created_at=first,
            last_created_at=last,
        )
        return Report(
            meta=meta,
            summary=summary,
            audit=self._audit(summary.total),
            risks=self._risks(),
            integrity=self._integrity(summary.total),
            methodology=methodology(),
            options={"html_limit": self.options.html_limit, "evidence_limit": self.options.evidence_limit},
        )

    def _summary(self) -> Summary:
        counters: dict[str, Counter[str]] = defaultdict(Counter)
        explicit = deterministic = capable = by_design = total = 0
        for g in q.summary_groups(self.conn, self.where):
            n = int(g["n"])
            total += n
            sched = scheduler_label(g["scheduler"], g["scheduler_requested"])
            kind, seed = _design(g["model"], g["scheduler"] or g["scheduler_requested"], g["backend"])
            has_seed = bool(g["has_seed"])
            for name, key in (
                ("modality", g["modality"]),
                ("model", g["model"]),
                ("scheduler", sched),
                ("backend", g["backend"]),
                ("source", g["source"]),
                ("status", g["status"]),
                ("scheduler_kind", kind),
                ("seed_support", {True: "yes", False: "no", None: "unknown"}[seed]),
            ):
                counters[name][key] += n
            is_det = kind == SchedulerKind.DETERMINISTIC
            explicit += n if has_seed else 0
            deterministic += n if is_det else 0
            capable += n if seed is True else 0
            by_design += n if (has_seed and is_det and seed is True) else 0
        return Summary(
            total=total,
            by_modality=_sorted(counters["modality"]),
            by_model=_sorted(counters["model"]),
            by_scheduler=_sorted(counters["scheduler"]),
            by_backend=_sorted(counters["backend"]),
            by_source=_sorted(counters["source"]),
            by_status=_sorted(counters["status"]),
            by_scheduler_kind=_sorted(counters["scheduler_kind"]),
            by_seed_support=_sorted(counters["seed_support"]),
            explicit_seed=explicit,
            deterministic_scheduler=deterministic,
            seed_capable_model=capable,
            reproducible_by_design=by_design,
        )

    def _audit(self, total: int) -> AuditSection:
        if not self.has_audits:
            return _no_audit(total)
        verdicts: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        by_model: dict[str, Counter[str]] = defaultdict(Counter)
        by_sched: dict[str, Counter[str]] = defaultdict(Counter)
        audited = 0
        for g in q.audit_groups(self.conn, self.where):
            n = int(g["n"])
            audited += n
            verdicts[g["verdict"]] += n
            outcomes[g["outcome"]] += n
            by_model[g["model"]][g["verdict"]] += n
            by_sched[scheduler_label(g["scheduler"], g["scheduler_requested"])][g["verdict"]] += n
        if not audited:
            return _no_audit(total)
        run_list = tuple(_run(row) for row in _history.audit_run_list(self.conn, self.where))
        latest = max(run_list, key=lambda x: (x.created_at, x.id), default=None)
        return AuditSection(
            available=True,
            runs=len(run_list),
            latest_run=latest,
            run_list=run_list,
            earlier_failures=_history.earlier_failure_count(self.conn, self.where),
            audited=audited,
            never_audited=total - audited,
            by_verdict=_sorted(verdicts),
            by_outcome=_sorted(outcomes),
            by_model={k: _sorted(v) for k, v in sorted(by_model.items())},
            by_scheduler={k: _sorted(v) for k, v in sorted(by_sched.items())},
            evidence=q.evidence_count(self.conn, self.where),
        )

    def _risks(self) -> RiskSection:
        if not self.has_audits:
            return RiskSection(items=(), records_with_warnings=0)
        items = tuple(
            RiskItem(
                code=g["code"], severity=g["severity"], count=int(g["n"]), meaning=warning_meaning(g["code"])
            )
            for g in q.warning_groups(self.conn, self.where)
        )
        return RiskSection(items=items, records_with_warnings=q.warned_count(self.conn, self.where))

    def _integrity(self, total: int) -> IntegritySection:
        if not self.has_log:
            return no_log(total)
        o = self.options
        return integrity_section(
            self.conn,
            self.where,
            total,
            mode=o.verify,
            keys=o.keys,
            previous=o.previous_checkpoint,
            ledger=self.ledger,
        )

    # -- streams -----------------------------------------------------------------------

    def iter_records(self) -> Iterator[RecordRow]:
        for page in q.iter_record_rows(
            self.conn,
            self.where,
            audits=self.has_audits,
            sealed=self.has_log,
            environments=self.has_environments,
        ):
            codes = q.warnings_for(self.conn, [row["id"] for row in page]) if self.has_audits else {}
            passing = [row["id"] for row in page if row.get("outcome") not in (None, "fail")]
            fails = _history.latest_failures_for(self.conn, passing) if self.has_audits else {}
            for row in page:
                yield _record_row(row, tuple(codes.get(row["id"], ())), fails.get(row["id"]))

    def iter_earlier_failures(self, *, limit: int | None = None) -> Iterator[EarlierFailure]:
        """Records whose latest result is not a failure after an earlier run failed them."""
        if not self.has_audits:
            return
        for row in _history.iter_earlier_failures(self.conn, self.where, limit=limit):
            yield EarlierFailure(**row)

    def iter_affected(self, code: str, *, limit: int | None = None) -> Iterator[AffectedRecord]:
        for row in q.iter_warning_records(self.conn, self.where, code, limit=limit):
            yield AffectedRecord(
                id=row["id"],
                model=row["model"],
                scheduler=scheduler_label(row["scheduler"], row["scheduler_requested"]),
                seed=row["seed"],
                prompt=row["prompt"],
                detail=row["detail"],
            )

    def iter_affected_ids(self, code: str) -> Iterator[int]:
        return q.iter_warning_ids(self.conn, self.where, code)

    def environment_groups(self, *, limit: int) -> tuple[list[_environments.EnvironmentGroup], int, int]:
        """The distinct recorded environments of audited records (see ``_environments``)."""
        if not (self.has_audits and self.has_environments):
            return [], 0, 0
        return _environments.environment_groups(self.conn, self.where, limit=limit)

    def drifted_count(self) -> int:
        """Records whose latest replay was not identical (and not an error or skip)."""
        return qe.drifted_count(self.conn, self.where) if self.has_audits else 0

    def iter_drifted(self, *, limit: int | None = None) -> Iterator[_environments.DriftedReplay]:
        if not self.has_audits:
            return iter(())
        return _environments.iter_drifted(
            self.conn, self.where, limit=limit, environments=self.has_environments
        )

    def iter_evidence(self, *, limit: int | None = None, thumbnails: bool = True) -> Iterator[EvidenceItem]:
        if not self.has_audits:
            return
        for row in q.iter_evidence(
            self.conn, self.where, limit=limit, thumbnails=thumbnails, environments=self.has_environments
        ):
            yield EvidenceItem(
                record_id=row["id"],
                model=row["model"],
                scheduler=scheduler_label(row["scheduler"], row["scheduler_requested"]),
                seed=row["seed"],
                prompt=row["prompt"],
                run_id=row["run_id"],
                verdict=row["verdict"],
                outcome=row["outcome"],
                distances=row["distances"] or {},
                error_code=row["error_code"],
                pixel_sha256=row["pixel_sha256"],
                replay_pixel_sha256=row["replay_pixel_sha256"],
                original_thumbnail=row.get("thumbnail"),
                replay_thumbnail=row.get("replay_thumbnail"),
                modality=row["modality"] or "image",
                original_detail=row.get("fingerprint_detail"),
                replay_strip=(row.get("replay_facts") or {}).get("frame_strip_png"),
                **_environment_fields(row),
            )


def _record_row(
    row: Mapping[str, Any], warnings: tuple[str, ...], earlier_failure: tuple[str, datetime] | None = None
) -> RecordRow:
    scheduler = row["scheduler"] or row["scheduler_requested"]
    kind, seed_capable = _design(row["model"], scheduler, row["backend"])
    explicit = row["seed"] is not None
    deterministic = kind == SchedulerKind.DETERMINISTIC
    return RecordRow(
        id=row["id"],
        created_at=row["created_at"],
        modality=row["modality"],
        model=row["model"],
        scheduler=scheduler_label(row["scheduler"], row["scheduler_requested"]),
        scheduler_kind=kind,
        backend=row["backend"],
        source=row["source"],
        status=row["status"],
        seed=row["seed"],
        seed_origin=row["seed_origin"],
        seed_capable=seed_capable,
        explicit_seed=explicit,
        deterministic_scheduler=deterministic,
        reproducible_by_design=explicit and deterministic and seed_capable is True,
        prompt=row["prompt"],
        pixel_sha256=row["pixel_sha256"],
        file_sha256=row["file_sha256"],
        leaf_index=row["leaf_index"],
        audit_run_id=row.get("audit_run_id"),
        verdict=row.get("verdict"),
        outcome=row.get("outcome"),
        audited_at=row.get("audited_at"),
        warnings=warnings,
        earlier_failure=earlier_failure,
        **_environment_fields(row),
    )


def _environment_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The environment fields of a record row or evidence item, from a query row."""
    replay_env = row.get("replay_environment")
    diffs = row.get("environment_differences")
    return {
        "environment": row.get("environment"),
        "replay_environment": replay_env if isinstance(replay_env, Mapping) else None,
        "environment_differences": tuple(d for d in diffs if isinstance(d, Mapping))
        if isinstance(diffs, list)
        else None,
    }


def _run(row: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=row["id"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        status=row["status"],
        backend=row["backend"],
        selected_count=int(row["selected_count"]),
        policy=row["policy"] or {},
        results=int(row.get("results") or 0),
    )


def _no_audit(total: int) -> AuditSection:
    return AuditSection(
        available=False,
        runs=0,
        latest_run=None,
        audited=0,
        never_audited=total,
        by_verdict={},
        by_outcome={},
        by_model={},
        by_scheduler={},
        evidence=0,
    )


def _filters(where: RecordFilter) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(where).items():
        if value is None or value == ():
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif name in ("seed", "seed_min", "seed_max"):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out
