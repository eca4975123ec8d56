"""Build the report model from SQL aggregates; stream the per-record sections."""

from __future__ import annotations

import json
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
from ledger.errors import InvalidInputError
from ledger.integrity.merkle import CompactRange
from ledger.integrity.note import Checkpoint, NoteError, Verifier, load_verifiers, open_checkpoint
from ledger.integrity.verify import verify as verify_log
from ledger.reports import _queries as q
from ledger.reports._methodology import methodology, warning_meaning
from ledger.reports._model import (
    AffectedRecord,
    AuditSection,
    CheckpointInfo,
    EvidenceItem,
    IntegritySection,
    Meta,
    PreviousCheckpoint,
    RecordRow,
    Report,
    RiskItem,
    RiskSection,
    RunInfo,
    Summary,
    VerificationInfo,
)
from ledger.store import Ledger
from ledger.store.filters import RecordFilter

NO_SCHEDULER = "(default)"
VERIFY_MODES = ("checkpoint", "full", "none")


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
    #: "checkpoint" (default): the latest checkpoint's signature, and the stored leaf
    #: hashes recomputed into its root: fast, finds a rewritten or truncated log.
    #: "full": ``seedledger verify`` (every leaf recomputed from its row): finds any
    #: changed row too, at the cost of canonicalizing every sealed row. "none": skip.
    verify: str = "checkpoint"
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
        runs, latest = q.audit_runs_info(self.conn, self.where)
        run = None
        if latest is not None:
            run = RunInfo(
                id=latest["id"],
                created_at=latest["created_at"],
                finished_at=latest["finished_at"],
                status=latest["status"],
                backend=latest["backend"],
                selected_count=int(latest["selected_count"]),
                policy=latest["policy"] or {},
            )
        return AuditSection(
            available=True,
            runs=runs,
            latest_run=run,
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
            return IntegritySection(
                checkpoint=None,
                checkpoints=0,
                log_size=0,
                sealed_records=0,
                unsealed_records=total,
                verification=None,
                previous=None,
            )
        row = q.latest_checkpoint(self.conn)
        checkpoint = None
        if row is not None:
            checkpoint = CheckpointInfo(
                size=int(row["size"]),
                root_hex=bytes(row["root"]).hex(),
                origin=row["origin"],
                key_name=row["key_name"],
                key_id=row["key_id"],
                verifier=row["verifier"],
                note=row["note"],
                created_at=row["created_at"],
            )
        sealed = q.sealed_record_count(self.conn, self.where)
        if self.options.verify not in VERIFY_MODES:
            raise InvalidInputError(f"--verify must be one of {', '.join(VERIFY_MODES)}")
        verification = None
        if checkpoint is not None and self.options.verify == "full":
            verification = self._verify_full(checkpoint)
        elif checkpoint is not None and self.options.verify == "checkpoint":
            verification = self._verify_checkpoint(checkpoint)
        previous = None
        if self.options.previous_checkpoint is not None:
            previous = self._previous(self.options.previous_checkpoint, checkpoint)
        return IntegritySection(
            checkpoint=checkpoint,
            checkpoints=q.checkpoint_count(self.conn),
            log_size=q.log_size(self.conn),
            sealed_records=sealed,
            unsealed_records=total - sealed,
            verification=verification,
            previous=previous,
        )

    def _verifiers(self, cp: CheckpointInfo | None) -> tuple[list[Verifier], bool]:
        """(keys, pinned): keys given by the caller, else the one stored in the ledger."""
        given = load_verifiers(self.options.keys)
        if given:
            return given, True
        return ([Verifier.parse(cp.verifier)] if cp else []), False

    def _verify_checkpoint(self, cp: CheckpointInfo) -> VerificationInfo:
        """The latest checkpoint's signature, and its root recomputed from the stored
        leaf hashes (rows are not re-hashed: that is ``--verify full``)."""
        ran_at = datetime.now(UTC)
        verifiers, pinned = self._verifiers(cp)
        key_note = "" if pinned else "; signature checked with the public key stored in the ledger"

        def failed(detail: str, leaves: int = 0) -> VerificationInfo:
            return VerificationInfo(
                ok=False, mode="checkpoint", ran_at=ran_at, detail=detail, leaves_checked=leaves
            )

        try:
            parsed, _ = open_checkpoint(cp.note, verifiers)
        except NoteError as exc:
            return failed(f"checkpoint at size {cp.size}: {exc}")
        if parsed.size != cp.size or parsed.root.hex() != cp.root_hex or parsed.origin != cp.origin:
            return failed("the signed note disagrees with the stored checkpoint columns")
        tree = CompactRange()
        tree.extend(q.iter_leaf_hashes(self.conn, cp.size))
        if tree.size != cp.size:
            return failed(
                f"only leaves 0…{tree.size - 1} of the checkpoint's {cp.size} are stored", tree.size
            )
        if tree.root().hex() != cp.root_hex:
            return failed("the stored leaf hashes do not hash to the signed root", tree.size)
        return VerificationInfo(
            ok=True,
            mode="checkpoint",
            ran_at=ran_at,
            detail=f"signature valid; the {cp.size} stored leaf hashes hash to the signed root{key_note} "
            "(rows not re-hashed: use --verify full)",
            leaves_checked=tree.size,
        )

    def _verify_full(self, cp: CheckpointInfo) -> VerificationInfo:
        """``seedledger verify``: every leaf recomputed from its row, every checkpoint
        root and signature checked."""
        ran_at = datetime.now(UTC)
        verifiers, pinned = self._verifiers(cp)
        key_note = (
            ""
            if pinned
            else " (signatures checked with the public key stored in the ledger; pin one with --key)"
        )
        if self.ledger is None:
            return VerificationInfo(
                ok=False, mode="full", ran_at=ran_at, detail="no ledger to verify", leaves_checked=0
            )
        result = verify_log(self.ledger, verifiers)
        leaves = sum(result.entries.values())
        if result.divergence is not None:
            return VerificationInfo(
                ok=False,
                mode="full",
                ran_at=ran_at,
                detail=result.divergence.message() + key_note,
                leaves_checked=leaves,
            )
        return VerificationInfo(
            ok=True,
            mode="full",
            ran_at=ran_at,
            detail=f"{leaves} leaves recomputed from their rows, {result.checkpoints} checkpoint(s) and "
            f"their signatures check; log size {result.size}{key_note}",
            leaves_checked=leaves,
        )

    def _previous(self, path: Path, current: CheckpointInfo | None) -> PreviousCheckpoint:
        note = _read_previous_note(path)
        verifiers, _ = self._verifiers(current)
        signature_ok: bool | None = None
        try:
            if verifiers:
                prev, _ = open_checkpoint(note, verifiers)
                signature_ok = True
            else:
                prev = Checkpoint.parse(note[: note.find("\n\n") + 1] if "\n\n" in note else note)
        except NoteError as exc:
            try:
                prev = Checkpoint.parse(note[: note.find("\n\n") + 1])
            except NoteError:
                raise InvalidInputError(f"{path} holds no readable checkpoint: {exc}") from None
            signature_ok = False

        def result(*, consistent: bool, detail: str) -> PreviousCheckpoint:
            return PreviousCheckpoint(
                origin=prev.origin,
                size=prev.size,
                root_hex=prev.root.hex(),
                signature_ok=signature_ok,
                consistent=consistent,
                detail=detail,
            )

        if current is None:
            return result(consistent=False, detail="no checkpoint in this ledger yet")
        if prev.origin != current.origin:
            return result(
                consistent=False,
                detail=f"origin {prev.origin!r} is not this log's {current.origin!r}",
            )
        if prev.size > current.size:
            return result(
                consistent=False,
                detail=f"previous size {prev.size} > current {current.size}: log shrank",
            )
        tree = CompactRange()
        for leaf in q.iter_leaf_hashes(self.conn, prev.size):
            tree.append(leaf)
        if tree.size != prev.size or tree.root() != prev.root:
            return result(
                consistent=False,
                detail=f"the first {prev.size} leaves of this log do not hash to the previous root",
            )
        return result(
            consistent=True,
            detail=f"the first {prev.size} leaves of this log hash to the previous root; "
            f"the log grew by {current.size - prev.size}",
        )

    # -- streams -----------------------------------------------------------------------

    def iter_records(self) -> Iterator[RecordRow]:
        for page in q.iter_record_rows(self.conn, self.where, audits=self.has_audits, sealed=self.has_log):
            codes = q.warnings_for(self.conn, [row["id"] for row in page]) if self.has_audits else {}
            for row in page:
                yield _record_row(row, tuple(codes.get(row["id"], ())))

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

    def iter_evidence(self, *, limit: int | None = None, thumbnails: bool = True) -> Iterator[EvidenceItem]:
        if not self.has_audits:
            return
        for row in q.iter_evidence(self.conn, self.where, limit=limit, thumbnails=thumbnails):
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
            )


def _record_row(row: Mapping[str, Any], warnings: tuple[str, ...]) -> RecordRow:
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


def _read_previous_note(path: Path) -> str:
    """A signed checkpoint note, or a previous JSON report holding one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read previous checkpoint {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
            note = data["integrity"]["checkpoint"]["note"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInputError(f"{path} is not a seedledger JSON report with a checkpoint") from None
        if not isinstance(note, str):
            raise InvalidInputError(f"{path}: the report's checkpoint note is not text")
        return note
    return text
