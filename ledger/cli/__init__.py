"""Command-line interface: `seedledger VERB`."""

from ledger.cli.app import main

# Each module registers its commands on `main` when imported.
from ledger.cli import db as _db  # noqa: F401  isort: skip
from ledger.cli import records as _records  # noqa: F401  isort: skip
from ledger.cli import reference as _reference  # noqa: F401  isort: skip
from ledger.cli import fingerprints as _fingerprints  # noqa: F401  isort: skip
from ledger.cli import workflows as _workflows  # noqa: F401  isort: skip

from ledger.cli import sweep as _sweep  # noqa: F401  isort: skip
from ledger.cli import capture as _capture  # noqa: F401  isort: skip
from ledger.cli import integrity as _integrity  # noqa: F401  isort: skip
from ledger.cli import audit as _audit  # noqa: F401  isort: skip
from ledger.cli import reports as _reports  # noqa: F401  isort: skip

__all__ = ["main"]
