"""The reproduction auditor: replay records, score the replays, warn, store audit runs."""

from ledger.audit.engine import AuditOutcome, resume_audit, run_audit
from ledger.audit.plan import (
    AuditOptions,
    AuditPlan,
    PlannedRecord,
    Progress,
    Selection,
    plan_audit,
    select_ids,
)
from ledger.audit.policy import OUTCOMES, Policy, outcome_for
from ledger.audit.store import AuditResult, AuditRun, get_run, list_runs, results_of

__all__ = [
    "OUTCOMES",
    "AuditOptions",
    "AuditOutcome",
    "AuditPlan",
    "AuditResult",
    "AuditRun",
    "PlannedRecord",
    "Policy",
    "Progress",
    "Selection",
    "get_run",
    "list_runs",
    "outcome_for",
    "plan_audit",
    "results_of",
    "resume_audit",
    "run_audit",
    "select_ids",
]
