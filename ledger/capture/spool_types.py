"""The spool's values and errors (positions, entries read back), apart from the
:class:`ledger.capture.spool.Spool` that makes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ledger.errors import LedgerError, UsageError


class SpoolError(LedgerError):
    """The spool directory cannot be used (permissions, disk full, locked)."""

    exit_code = 4


class SpoolFullError(SpoolError):
    """The spool cannot take an entry now (disk full, quota, file size limit); nothing
    of it was written."""


class SpoolLockedError(UsageError):
    """Another process owns the spool directory."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: segment number and byte offset within it."""

    segment: int
    offset: int


class Entry(NamedTuple):
    segment: int
    offset: int  # where the entry starts
    stop: int  # where the next entry starts
    payload: bytes

    @property
    def position(self) -> Position:
        return Position(self.segment, self.offset)

    @property
    def end(self) -> Position:
        return Position(self.segment, self.stop)
