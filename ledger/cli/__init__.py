"""Command-line interface: `seedledger VERB`.

Each module below registers its commands on ``main`` when imported; the map lets the
group import only the module of the command being run.
"""

from ledger.cli.app import main

#: command name -> the module that registers it (tests check this map is complete).
COMMAND_MODULES: dict[str, str] = {
    "db": "ledger.cli.db",
    "record": "ledger.cli.records",
    "list": "ledger.cli.records",
    "show": "ledger.cli.records",
    "fingerprint": "ledger.cli.fingerprints",
    "compare": "ledger.cli.fingerprints",
    "find": "ledger.cli.fingerprints",
    "reference-server": "ledger.cli.reference",
    "proxy": "ledger.cli.capture",
    "spool": "ledger.cli.capture",
    "seal": "ledger.cli.integrity",
    "keys": "ledger.cli.integrity",
    "verify": "ledger.cli.integrity",
    "checkpoint": "ledger.cli.integrity",
    "prove": "ledger.cli.integrity",
    "verify-proof": "ledger.cli.integrity",
    "verify-file": "ledger.cli.credentials",
    "audit": "ledger.cli.audit",
    "check": "ledger.cli.check",
    "report": "ledger.cli.reports",
    "import": "ledger.cli.workflows",
    "diff": "ledger.cli.workflows",
    "lineage": "ledger.cli.workflows",
    "pick": "ledger.cli.workflows",
    "stamp": "ledger.cli.workflows",
    "sweep": "ledger.cli.sweep",
    "demo": "ledger.cli.demo",
    "ui": "ledger.cli.ui",
    "archive": "ledger.cli.archive",
}
main.lazy_commands = COMMAND_MODULES

__all__ = ["COMMAND_MODULES", "main"]
