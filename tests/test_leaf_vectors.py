"""The canonical leaf encoding, v1 (docs/integrity.md), pinned by test vectors: the
Python path and the native walker must reproduce tests/vectors/leaf-v1.json byte for
byte (the native walker's hashes equal SHA-256(0x00 ‖ leaf), so equal bytes), on each
engine where the stored row reads back as given. Sealed logs depend on these bytes:
the vectors never change; a new encoding gets a new leaf version and new vectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from ledger.core.canonical import canonical_json
from ledger.integrity import Signer, _native, merkle, seal, verify
from ledger.integrity.leaves import LEAF_FORMAT, RECORD
from ledger.integrity.note import Verifier
from ledger.store import Ledger
from ledger.store.schema import log_entries, records
from tests.conftest import IN_CI

VECTORS = json.loads((Path(__file__).parent / "vectors" / "leaf-v1.json").read_text(encoding="utf-8"))


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["seed"] = None if row["seed"] is None else int(row["seed"])
    for name in ("created_at", "recorded_at"):
        out[name] = datetime.strptime(row[name], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return out


def _vectors(engine: str) -> list[dict[str, Any]]:
    chosen = [v for v in VECTORS["vectors"] if engine in v["engines"]]
    assert [v["index"] for v in chosen] == list(range(len(chosen)))  # engine-specific ones come last
    return chosen


def test_the_vectors_describe_leaf_v1() -> None:
    assert (VECTORS["leaf_format"], VECTORS["entry_type"], VECTORS["v"]) == (
        LEAF_FORMAT,
        RECORD.name,
        RECORD.version,
    )
    for v in VECTORS["vectors"]:
        leaf = v["leaf"].encode()
        assert merkle.leaf_hash(leaf).hex() == v["leaf_hash"]
        assert canonical_json(json.loads(leaf)) == leaf  # the leaf is canonical JSON of itself
        assert set(json.loads(leaf)["row"]) == set(RECORD.column_names) == set(v["row"])


@pytest.mark.parametrize("path", ["python", "native"])
def test_both_paths_reproduce_the_vectors(ledger: Ledger, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = _vectors(ledger.dialect)
    if path == "python":
        monkeypatch.setenv(_native.ENV_NATIVE, "0")
    with ledger.writing() as conn:
        for v in chosen:
            conn.execute(insert(records).values(**_stored(v["row"])))
        reason = _native.unusable_reason(conn, [RECORD]) if path == "native" else None
    if reason is not None:  # pragma: no cover - depends on the build
        if IN_CI:
            pytest.fail(f"the native walker is required in CI: {reason}")
        pytest.skip(f"native walker: {reason}")
    sealed = seal(ledger, Signer.generate("vectors.example/log"), entry_types=[RECORD])
    assert sealed.path == path and sealed.size == len(chosen)
    with ledger.reading() as conn:
        hashes = conn.execute(select(log_entries.c.leaf_hash).order_by(log_entries.c.leaf_index)).scalars()
        stored = [bytes(h).hex() for h in hashes]
        raw = conn.execute(select(*RECORD.raw_columns()).order_by(records.c.id)).all()
        leaves = [
            RECORD.leaf_bytes_from_fields(i, RECORD.row_fields_from_raw(values, conn.dialect)).decode()
            for i, values in enumerate(raw)
        ]
    # what the sealer stored: the native hasher's hashes, or the Python path's
    assert stored == [v["leaf_hash"] for v in chosen]
    # the Python path's bytes, exactly
    assert leaves == [v["leaf"] for v in chosen]
    assert sealed.checkpoint is not None
    report = verify(ledger, [Verifier.parse(sealed.checkpoint.verifier)])
    assert report.ok and report.path == path
    if path == "native":
        assert report.native_leaves == len(chosen)  # the walker confirmed every vector itself
