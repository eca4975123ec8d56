"""Times given by people: an ISO 8601 date or date-time, UTC when no zone is given."""

from __future__ import annotations

from datetime import UTC, date, datetime


def parse_time(text: str) -> datetime:
    """``2026-11-25`` (midnight UTC), ``2026-11-25T12:00Z`` or with an offset; a time
    without a zone is taken as UTC. Raises ValueError for anything else."""
    text = text.strip()
    if len(text) == 10:
        parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
    else:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
