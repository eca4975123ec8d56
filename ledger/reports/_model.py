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
SCHEMA_VERSION = 2
SCHEMA_ID = "urn:seedledger:report:2"

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
    #: Results of this run for the selected records (any, not only latest ones).
    results: int = 0


@dataclass(frozen=True, kw_only=True)
class EarlierFailure:
    """A record whose latest result is not a failure, after an earlier run failed it."""

    record_id: int
    failed_run_id: str
    failed_at: datetime
    latest_run_id: str
    latest_at: datetime
    latest_outcome: str
    latest_verdict: str

    def sentence(self, when: Any) -> str:
        return (
            f"failed in run {self.failed_run_id} on {when(self.failed_at)}, {self.latest_outcome} "
            f"({self.latest_verdict}) in run {self.latest_run_id} on {when(self.latest_at)}"
        )


@dataclass(frozen=True, kw_only=True)
class AuditSection:
    available: bool  # False: no audit result for any selected record
    runs: int
    latest_run: RunInfo | None
    #: Every run holding results for the selection, oldest first: the runs this
    #: section aggregates (each record counts with its latest result, whichever run).
    run_list: tuple[RunInfo, ...] = ()
    earlier_failures: int = 0
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


#: What each verification mode checks, in the words every format prints.
VERIFY_SCOPES = {
    "full": "every sealed row re-hashed, every checkpoint root and signature checked",
    "leaf-hashes": "leaf hashes vs signed root; rows not re-hashed",
}


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """The key a checkpoint signature was checked with, and whether the caller trusts it."""

    trusted: bool  # False: the public key stored in the ledger itself
    name: str
    key_id: str
    verifier: str

    def statement(self) -> str:
        if self.trusted:
            return (
                f"signature verified with the trusted key {self.name}+{self.key_id} "
                "(--key or SEEDLEDGER_VERIFIER_KEY)"
            )
        return (
            f"signed by the key this ledger names ({self.name}+{self.key_id}); "
            "pass `--key` to check against a key you trust"
        )


@dataclass(frozen=True, kw_only=True)
class DivergenceInfo:
    kind: str
    message: str
    leaf_index: int | None = None
    entry_type: str | None = None
    entry_id: int | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class VerificationInfo:
    #: passed (full mode only), failed, or not-rehashed (the cheap mode found nothing:
    #: not a pass, the rows were not checked)
    status: str
    mode: str  # full | leaf-hashes
    ran_at: datetime
    detail: str
    leaves_checked: int
    divergence: DivergenceInfo | None = None
    key: KeyInfo | None = None
    #: full mode: which leaf walk ran (native | python) and why python, if it did
    path: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def scope(self) -> str:
        return VERIFY_SCOPES[self.mode]


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

    def failure(self) -> str | None:
        """The first divergence, for the banner every format puts first; None when
        nothing checked diverged."""
        v, p = self.verification, self.previous
        if v is not None and v.failed:
            return v.divergence.message if v.divergence else v.detail
        if p is not None and (not p.consistent or p.signature_ok is False):
            return f"the log does not extend the previous checkpoint (size {p.size}): {p.detail}"
        return None

    def status(self) -> str:
        """passed | failed | not-rehashed | not-verified: one word for the whole section."""
        if self.failure() is not None:
            return "failed"
        v = self.verification
        if v is None:
            return "not-verified"
        return v.status


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
    #: (run id, time) of the latest failing result, when the latest result is not a failure
    earlier_failure: tuple[str, datetime] | None = None
    #: The runtime the record's output was made in (audited records that report one).
    environment: Mapping[str, Any] | None = None
    #: The latest replay's runtime and what differs from the record's, when that replay
    #: was not identical (None: identical, not replayed, or no environment reported).
    replay_environment: Mapping[str, Any] | None = None
    environment_differences: tuple[Mapping[str, Any], ...] | None = None


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
    modality: str = "image"
    #: The original's stored fingerprint payload (a video's frame strip), HTML only
    original_detail: Mapping[str, Any] | None = None
    #: The replay's frame strip (base64 PNG) an audit of a video keeps, HTML only
    replay_strip: str | None = None
    environment: Mapping[str, Any] | None = None
    replay_environment: Mapping[str, Any] | None = None
    environment_differences: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class AffectedRecord:
    id: int
    model: str
    scheduler: str | None
    seed: int | None
    prompt: str | None
    detail: str | None
