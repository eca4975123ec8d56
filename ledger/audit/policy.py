"""Outcomes and the audit policy (pure).

A verdict says how a replay compares; an outcome says what that means for the record:

=============== ==========================================================
outcome         when
=============== ==========================================================
pass            verdict ``identical`` or ``near-identical``
expected-drift  verdict ``similar`` on a record with ``stochastic-scheduler``
fail            any other verdict from a replay (``similar``, ``different``)
skipped         not replayed (seedless model, no seed, inputs gone, …)
error           the replay or the comparison could not be done
=============== ==========================================================

The policy (``--fail-on``) names the outcomes that make the run fail: ``fail``,
``error``, ``drift`` (expected drift) and ``skipped``; ``all`` is every one of them,
``none`` reports without failing. The default is ``fail,error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.core.warnings import GLOBAL_RNG_NOISE, STOCHASTIC_SCHEDULER
from ledger.errors import UsageError

PASS: Final = "pass"
EXPECTED_DRIFT: Final = "expected-drift"
FAIL: Final = "fail"
SKIPPED: Final = "skipped"
ERROR: Final = "error"
OUTCOMES: Final = (PASS, EXPECTED_DRIFT, FAIL, SKIPPED, ERROR)

#: Verdicts besides the fingerprint ladder's four.
VERDICT_ERROR: Final = "error"
VERDICT_SKIPPED: Final = "skipped"

#: --fail-on names → outcomes.
FAIL_ON_NAMES: Final[dict[str, str]] = {
    "fail": FAIL,
    "error": ERROR,
    "drift": EXPECTED_DRIFT,
    "skipped": SKIPPED,
}
DEFAULT_FAIL_ON: Final = ("fail", "error")


def outcome_for(verdict: str, warning_codes: Iterable[str]) -> str:
    """The outcome of a replay verdict for a record with these warnings."""
    if verdict in ("identical", "near-identical"):
        return PASS
    if verdict == "similar" and {STOCHASTIC_SCHEDULER, GLOBAL_RNG_NOISE} & set(warning_codes):
        return EXPECTED_DRIFT
    if verdict == VERDICT_SKIPPED:
        return SKIPPED
    if verdict == VERDICT_ERROR:
        return ERROR
    return FAIL


@dataclass(frozen=True)
class Policy:
    """Which outcomes make a run fail (exit code 8)."""

    fail_on: frozenset[str] = frozenset(FAIL_ON_NAMES[n] for n in DEFAULT_FAIL_ON)

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> Policy:
        """``"fail,error"``, ``"all"``, ``"none"``, or a list of those names."""
        if text is None:
            return cls()
        parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
        names = [p.strip().lower() for p in parts if p.strip()]
        if not names:
            raise UsageError("--fail-on needs at least one of: fail, error, drift, skipped, all, none")
        chosen: set[str] = set()
        for name in names:
            if name == "all":
                chosen.update(FAIL_ON_NAMES.values())
            elif name == "none":
                continue
            elif name in FAIL_ON_NAMES:
                chosen.add(FAIL_ON_NAMES[name])
            else:
                raise UsageError(f"--fail-on {name!r} is not one of: fail, error, drift, skipped, all, none")
        return cls(frozenset(chosen))

    @property
    def names(self) -> list[str]:
        return [name for name, outcome in FAIL_ON_NAMES.items() if outcome in self.fail_on]

    def violations(self, outcomes: Mapping[str, int]) -> int:
        """How many results have an outcome the policy fails on."""
        return sum(int(n) for outcome, n in outcomes.items() if outcome in self.fail_on)

    def holds(self, outcomes: Mapping[str, int]) -> bool:
        return self.violations(outcomes) == 0

    def to_dict(self) -> dict[str, Any]:
        return {"fail_on": self.names}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        return cls.parse(list(data.get("fail_on") or ["none"]))
