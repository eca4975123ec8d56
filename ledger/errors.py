"""The one exception hierarchy of seedledger.

    LedgerError                      exit 1 unless a subclass says otherwise
    ├── UsageError                   exit 2: the caller asked for something invalid
    │   ├── InvalidSeedError         a seed outside 0 … 2^64−1, or not an integer
    │   ├── InvalidInputError        malformed JSON, wrong types, unknown fields
    │   │   └── JSONTooDeepError     JSON nested deeper than allowed (core.jsonsafe)
    │   └── NotFoundError            exit 3: no record / run / checkpoint with that id
    ├── StoreError                   exit 4: the database cannot be reached or used
    │   └── SchemaOutdatedError      the database is behind the code's migrations
    ├── FingerprintError             exit 5: bytes that cannot be decoded safely
    ├── BackendError                 exit 6: a generation backend failed
    ├── IntegrityError               exit 7: the Merkle log does not verify
    └── PolicyError                  exit 8: an audit or check did not meet its policy

Dependency errors (SQLAlchemy, Alembic, httpx, Pillow) are translated into these at
the boundary of the layer that calls them, with a message a user can act on. Messages
never contain secrets.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error seedledger raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(LedgerError):
    exit_code = 2


class InvalidSeedError(UsageError):
    pass


class InvalidInputError(UsageError):
    pass


class JSONTooDeepError(InvalidInputError):
    pass


class NotFoundError(UsageError):
    exit_code = 3


class StoreError(LedgerError):
    exit_code = 4


class SchemaOutdatedError(StoreError):
    pass


class FingerprintError(LedgerError):
    exit_code = 5


class BackendError(LedgerError):
    exit_code = 6


class IntegrityError(LedgerError):
    exit_code = 7


class PolicyError(LedgerError):
    exit_code = 8


#: Documented exit codes, shown in README and `seedledger --help`.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected failure",
    2: "usage error: bad option, bad input, invalid seed",
    3: "not found: no record, run or checkpoint with that id",
    4: "database unreachable, missing, or behind the code's migrations",
    5: "image bytes that cannot be decoded safely",
    6: "generation backend failed",
    7: "integrity check failed: the log does not verify",
    8: "policy not met: audit or check failed under --fail-on",
}
