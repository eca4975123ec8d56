"""The report model: frozen values built from SQL aggregates.

Small sections (summary, audit outcomes, risk register counts, integrity, methodology)
are held here; per-record sections are streamed from :class:`ledger.reports._build.ReportSource`
by the renderers, so the model's size does not depend on the number of records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Bumped whenever the JSON report's shape changes (see report.schema.json).
SCHEMA_VERSION = 1
SCHEMA_ID = "urn:seedledger:report:1"

VERDICTS = ("identical", "near-identical", "similar", "different", "error", "skipped")
OUTCOMES = ("pass", "expected-drift", "fail", "error", "skipped")


def share(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to 4 places; None when there is nothing to divide."""
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True, kw_only=True)
class Meta:
    generated_at: datetime
    seedledger_version: str
    engine: str
    filters: Mapping[str, Any]
    first_created_at: datetime | None
    last_created_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Summary:
    total: int
    by_modality: Mapping[str, int]
    by_model: Mapping[str, int]
    by_scheduler: Mapping[str, int]
    by_backend: Mapping[str, int]
    by_source: Mapping[str, int]
    by_status: Mapping[str, int]
    by_scheduler_kind: Mapping[str, int]  # deterministic / stochastic / unknown
    by_seed_support: Mapping[str, int]  # yes / no / unknown
    explicit_seed: int
    deterministic_scheduler: int
    seed_capable_model: int
    reproducible_by_design: int

    def shares(self) -> dict[str, float | None]:
        return {
            "explicit_seed": share(self.explicit_seed, self.total),
            "deterministic_scheduler": share(self.deterministic_scheduler, self.total),
            "seed_capable_model": share(self.seed_capable_model, self.total),
            "reproducible_by_design": share(self.reproducible_by_design, self.total),
        }


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    id: str
    created_at: datetime
    finished_at: datetime | None
    status: str
    backend: str | None
    selected_count: int
    policy: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class AuditSection:
    available: bool  # False: no audit result for any selected record
    runs: int
    latest_run: RunInfo | None
    audited: int
    never_audited: int
    by_verdict: Mapping[str, int]
    by_outcome: Mapping[str, int]
    by_model: Mapping[str, Mapping[str, int]]  # model → verdict → count
    by_scheduler: Mapping[str, Mapping[str, int]]  # scheduler → verdict → count
    evidence: int  # failures + expected drift (latest results)

    @property
    def passed(self) -> int:
        return self.by_outcome.get("pass", 0)

    @property
    def expected_drift(self) -> int:
        return self.by_outcome.get("expected-drift", 0)

    @property
    def failed(self) -> int:
        return self.by_outcome.get("fail", 0)

    @property
    def errors(self) -> int:
        return self.by_outcome.get("error", 0)

    @property
    def skipped(self) -> int:
        return self.by_outcome.get("skipped", 0)

    @property
    def evaluated(self) -> int:
        """Audited records that were replayed (or tried): everything but skipped."""
        return self.audited - self.skipped

    @property
    def pass_rate(self) -> float | None:
        return share(self.passed, self.evaluated)


@dataclass(frozen=True, kw_only=True)
class RiskItem:
    code: str
    severity: str
    count: int
    meaning: str


@dataclass(frozen=True, kw_only=True)
class RiskSection:
    items: tuple[RiskItem, ...]
    records_with_warnings: int


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    size: int
    root_hex: str
    origin: str
    key_name: str
    key_id: str
    verifier: str  # the public key: publishing it lets anyone check the note
    note: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class VerificationInfo:
    ok: bool
    mode: str  # checkpoint | full
    ran_at: datetime
    detail: str
    leaves_checked: int


@dataclass(frozen=True, kw_only=True)
class PreviousCheckpoint:
    origin: str
    size: int
    root_hex: str
    signature_ok: bool | None  # None: no known key to check it with
    consistent: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class IntegritySection:
    checkpoint: CheckpointInfo | None
    checkpoints: int
    log_size: int
    sealed_records: int  # selected records that are in the log
    unsealed_records: int
    verification: VerificationInfo | None
    previous: PreviousCheckpoint | None


@dataclass(frozen=True, kw_only=True)
class Methodology:
    fingerprint_version: str
    thresholds: Mapping[str, float]
    verdicts: Mapping[str, str]
    policy: Mapping[str, str]
    definitions: Mapping[str, str]
    warnings: Mapping[str, str]
    known_limits: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Report:
    meta: Meta
    summary: Summary
    audit: AuditSection
    risks: RiskSection
    integrity: IntegritySection
    methodology: Methodology
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RecordRow:
    """One record as the per-record sections show it (never params or response)."""

    id: int
    created_at: datetime
    modality: str
    model: str
    scheduler: str | None
    scheduler_kind: str
    backend: str
    source: str
    status: str
    seed: int | None
    seed_origin: str
    seed_capable: bool | None
    explicit_seed: bool
    deterministic_scheduler: bool
    reproducible_by_design: bool
    prompt: str | None
    pixel_sha256: str | None
    file_sha256: str | None
    leaf_index: int | None
    audit_run_id: str | None
    verdict: str | None
    outcome: str | None
    audited_at: datetime | None
    warnings: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class EvidenceItem:
    record_id: int
    model: str
    scheduler: str | None
    seed: int | None
    prompt: str | None
    run_id: str
    verdict: str
    outcome: str
    distances: Mapping[str, Any]
    error_code: str | None
    pixel_sha256: str | None
    replay_pixel_sha256: str | None
    original_thumbnail: bytes | None
    replay_thumbnail: bytes | None


@dataclass(frozen=True, kw_only=True)
class AffectedRecord:
    id: int
    model: str
    scheduler: str | None
    seed: int | None
    prompt: str | None
    detail: str | None
