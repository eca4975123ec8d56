"""How adapters wait: retry backoff with full jitter, ``Retry-After``, async polling."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from ledger.errors import UsageError

__all__ = ["PollPolicy", "RetryPolicy", "parse_retry_after"]

_RNG = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying again."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    #: A server asking for a longer pause than this gets this much.
    retry_after_cap: float = 60.0
    retry_statuses: frozenset[int] = frozenset({408, 429})
    #: Full jitter spreads many clients of one server. Without it each wait is the
    #: ceiling itself: a predictable schedule for a single writer retrying its store.
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError("retry max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.retry_after_cap) < 0:
            raise UsageError("retry delays must not be negative")

    def should_retry(self, status: int) -> bool:
        return status in self.retry_statuses or 500 <= status <= 599

    def ceiling(self, retry_number: int) -> float:
        """The longest wait before retry ``retry_number`` (1 is the first retry):
        min(max_delay, base_delay·2^(n−1)). The exponent stops at 64 so that a writer
        retrying for days never overflows a float."""
        return min(self.max_delay, self.base_delay * 2.0 ** min(max(0, retry_number - 1), 64))

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in 0 … :meth:`ceiling`; the ceiling without jitter."""
        ceiling = self.ceiling(retry_number)
        if not self.jitter:
            return ceiling
        return (rng or _RNG).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class PollPolicy:
    """How an async task is polled: ``initial`` seconds, growing ×``factor`` up to
    ``max_interval``, giving up after ``timeout`` seconds in total."""

    initial: float = 0.5
    factor: float = 1.5
    max_interval: float = 10.0
    timeout: float = 600.0
