"""Measure the importer on real files against an independent reading of each.

Runs ``seedledger``'s importer (the same ``import_paths`` the CLI uses, into a
throw-away SQLite ledger) over a folder of real generated files and compares every
record with ``expected.jsonl`` in that folder, field by field: seed, model, sampler,
schedule, steps, CFG, width, height. A field counts only where the expected reading
states it; for a file with several save nodes the record is compared with the entry of
the save node it names. Prints one table per generator and the files that differ.

    .venv/bin/python scripts/measure_wild.py [FOLDER]   # default: ../shared/wild

Cells: ``right/stated``. ``skipped`` counts files refused (a refusal of a file whose
reading states settings is listed as a difference); ``empty`` records that state
nothing; ``extra`` fields the importer read where the reading states none (listed, to
check by hand).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.core.records import Record
from ledger.store import Ledger
from ledger.workflows import import_paths

FIELDS = ("seed", "model", "sampler", "schedule", "steps", "cfg", "width", "height")


def actual(record: Record) -> dict[str, Any]:
    p = record.params
    return {
        "seed": record.seed,
        "model": None if record.model == "unknown" else record.model,
        "sampler": record.scheduler_requested,
        "schedule": p.get("schedule"),
        "steps": record.steps,
        "cfg": record.cfg_scale,
        "width": record.width,
        "height": record.height,
    }


def same(field: str, got: Any, want: Any) -> bool:
    if field == "cfg" and isinstance(got, int | float) and isinstance(want, int | float):
        return abs(float(got) - float(want)) < 1e-9
    if field == "seed" and isinstance(want, int) and isinstance(got, int) and want > 2**53:
        return got == want or float(got) == float(want)  # readings that went through a float
    return bool(got == want)


def entry_for(record: Record, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    node = record.params.get("output_node")
    if node is not None:
        matching = [e for e in entries if e.get("save_node") == node]
        if matching:
            return matching[0]
    return entries[0] if entries else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "wild"
    parser.add_argument("folder", nargs="?", default=str(default))
    parser.add_argument("--reasons", action="store_true", help="also list every skipped file's reason")
    args = parser.parse_args(argv)
    folder = Path(args.folder).resolve()
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines() if line]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(f"sqlite:///{tmp}/wild.db", create=True)
        try:
            paths = [folder / e["file"] for e in expected]
            summary = import_paths(ledger, paths)
            outcomes = {Path(o.path).resolve(): o for o in summary.outcomes}
            table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
            # files, imported, skipped, empty records, fields read that the reading does not state
            files: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
            extras: list[str] = []
            problems: list[str] = []
            for exp in expected:
                gen = exp.get("generator") or "-"
                outcome = outcomes[(folder / exp["file"]).resolve()]
                files[gen][0] += 1
                entries = exp.get("entries") or []
                if outcome.status == "skipped":
                    files[gen][2] += 1
                    if entries:
                        problems.append(f"{exp['file']}: skipped but states settings: {outcome.reason}")
                    continue
                files[gen][1] += 1
                for rid in outcome.record_ids[:1]:
                    record = ledger.get(rid)
                    got = actual(record)
                    if all(got[f] is None for f in FIELDS):
                        files[gen][3] += 1
                        problems.append(f"{exp['file']}: empty record")
                    want = entry_for(record, entries)
                    if want is None:
                        problems.append(f"{exp['file']}: imported, but the reading states nothing")
                        continue
                    for field in FIELDS:
                        if want.get(field) is None:
                            if got[field] is not None:
                                files[gen][4] += 1
                                extras.append(f"{exp['file']} {field}: read {got[field]!r}, not stated there")
                            continue
                        cell = table[gen][field]
                        cell[1] += 1
                        if same(field, got[field], want[field]):
                            cell[0] += 1
                        else:
                            problems.append(
                                f"{exp['file']} [{record.params.get('output_node', '-')}] {field}: "
                                f"read {got[field]!r}, expected {want[field]!r}"
                            )
        finally:
            ledger.close()
    header = f"| generator | files | imported | skipped | empty | {' | '.join(FIELDS)} | extra |"
    print(header)
    print("|" + "---|" * (6 + len(FIELDS)))
    for gen in sorted(files):
        n, imported, skipped, empty, extra = files[gen]
        cells = []
        for field in FIELDS:
            right, stated = table[gen][field]
            cells.append(f"{right}/{stated}" if stated else "-")
        print(f"| {gen} | {n} | {imported} | {skipped} | {empty} | {' | '.join(cells)} | {extra} |")
    if problems:
        print("\nDifferences:")
        for line in problems:
            print(f"- {line}")
    if extras:
        print("\nRead where the expected reading states nothing (check by hand):")
        for line in extras:
            print(f"- {line}")
    if args.reasons:
        print("\nSkipped:")
        for outcome in summary.outcomes:
            if outcome.status == "skipped":
                print(f"- {Path(outcome.path).relative_to(folder)}: {outcome.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
