"""The runtime environments section: what audited records ran on, and what differed
when a replay was not identical.

Per record, the JSON and CSV reports carry the environment beside the record (see
``_json.record_json``, ``_csv``). The HTML and Markdown reports, which do not list
every record, show two tables built here: the distinct recorded environments of the
audited records (with how many records share each), and the latest replays that were
not identical (near-identical, similar, different) with the environment facts that
differed between record and replay.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ledger.core import environment as core_environment
from ledger.reports import _queries_environments as qe
from ledger.store.filters import RecordFilter

__all__ = ["DriftedReplay", "EnvironmentGroup", "differences_text", "environment_groups", "iter_drifted"]


@dataclass(frozen=True, kw_only=True)
class EnvironmentGroup:
    summary: str
    records: int
    first_record_id: int


@dataclass(frozen=True, kw_only=True)
class DriftedReplay:
    record_id: int
    run_id: str
    verdict: str
    outcome: str
    environment: Mapping[str, Any] | None
    replay_environment: Mapping[str, Any] | None
    differences: tuple[Mapping[str, Any], ...] | None


def differences_text(
    differences: tuple[Mapping[str, Any], ...] | None,
    recorded: Mapping[str, Any] | None,
    replay: Mapping[str, Any] | None,
) -> str:
    """One cell: the facts that differed, or why nothing can be named."""
    if not recorded and not replay:
        return "not compared: neither the record nor the replay reported an environment"
    if not recorded:
        return "not compared: the record has no environment"
    if not replay:
        return "not compared: the replay backend reported no environment"
    if not differences:
        return "no material environment difference"
    return core_environment.describe([dict(d) for d in differences])


def environment_groups(
    conn: Connection, where: RecordFilter, *, limit: int
) -> tuple[list[EnvironmentGroup], int, int]:
    """(the ``limit`` most common groups, how many groups, how many records): one pass
    over the audited records' environments, grouped by their one-line summary."""
    counts: dict[str, list[int]] = {}
    total = 0
    for row in qe.iter_audited_environments(conn, where):
        environment = row["environment"]
        if not isinstance(environment, Mapping):
            continue
        total += 1
        key = core_environment.summary(environment) or "(no facts)"
        entry = counts.setdefault(key, [0, int(row["record_id"])])
        entry[0] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1][0], item[1][1]))
    groups = [EnvironmentGroup(summary=k, records=v[0], first_record_id=v[1]) for k, v in ranked[:limit]]
    return groups, len(counts), total


def iter_drifted(
    conn: Connection, where: RecordFilter, *, limit: int | None = None, environments: bool = True
) -> Iterator[DriftedReplay]:
    for row in qe.iter_drifted_replays(conn, where, limit=limit, environments=environments):
        diffs = row["environment_differences"]
        replay_env = row["replay_environment"]
        yield DriftedReplay(
            record_id=int(row["record_id"]),
            run_id=row["run_id"],
            verdict=row["verdict"],
            outcome=row["outcome"],
            environment=row["environment"],
            replay_environment=replay_env if isinstance(replay_env, Mapping) else None,
            differences=tuple(d for d in diffs if isinstance(d, Mapping))
            if isinstance(diffs, list)
            else None,
        )
