"""Seed workflows on top of the store: import, diff, lineage, pick and stamp.

(`sweep` and contact sheets, which need a backend, will live here too.)
"""

from ledger.workflows.compare import Change, Comparison, compare
from ledger.workflows.imports import FileOutcome, ImportSummary, import_paths, parse_file
from ledger.workflows.lineage import Lineage, LineageNode, lineage
from ledger.workflows.pick import DEFAULT_PICK_FILE, PICK_SCHEMA, Pick, load_pick, pick
from ledger.workflows.stamp import (
    STAMP_SCHEMA,
    TRAINED_ALGORITHMIC_MEDIA,
    Stamp,
    StampResult,
    latest_checkpoint,
    read_stamp,
    stamp_file,
)

__all__ = [
    "DEFAULT_PICK_FILE",
    "PICK_SCHEMA",
    "STAMP_SCHEMA",
    "TRAINED_ALGORITHMIC_MEDIA",
    "Change",
    "Comparison",
    "FileOutcome",
    "ImportSummary",
    "Lineage",
    "LineageNode",
    "Pick",
    "Stamp",
    "StampResult",
    "compare",
    "import_paths",
    "latest_checkpoint",
    "lineage",
    "load_pick",
    "parse_file",
    "pick",
    "read_stamp",
    "stamp_file",
]
