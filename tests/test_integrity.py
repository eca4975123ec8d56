"""The tamper-evident log on both engines: sealing, tampering found at the right leaf,
concurrent recording while sealing, checkpoints, proofs, and the CLI end to end."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Float, Integer, String, Text, event, select, text
from sqlalchemy.types import JSON

from ledger.cli import main
from ledger.core.canonical import canonical_json
from ledger.errors import IntegrityError, NotFoundError
from ledger.integrity import merkle
from ledger.integrity.divergence import VerifyReport
from ledger.integrity.leaves import RECORD, canonical_bytes
from ledger.integrity.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    key_id,
    load_signer,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from ledger.integrity.proofs import prove, verify_proof
from ledger.integrity.seal import seal
from ledger.integrity.verify import verify
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs, checkpoints, log_entries, log_state, records
from ledger.store.types import SeedType, UTCDateTime
from tests.cli import seedledger
from tests.factories import new_record

ORIGIN = "test.example/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def _add(ledger: Ledger, n: int, *, start: int = 0) -> list[int]:
    return ledger.add([new_record(seed=1000 + start + i, prompt=f"prompt {start + i}") for i in range(n)])


def _verify(ledger: Ledger, signer: Signer) -> VerifyReport:
    """verify, checked to report the same with the native walker (SQLite, where it is
    built) and on the Python path alone."""
    report = verify(ledger, [signer.verifier])
    assert verify(ledger, [signer.verifier], native=False) == report
    return report


def _sql(ledger: Ledger, statement: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text(statement), params)


def _leaf_of(ledger: Ledger, record_id: int) -> int:
    with ledger.reading() as conn:
        return int(
            conn.execute(
                select(log_entries.c.leaf_index).where(
                    log_entries.c.entry_type == "record", log_entries.c.entry_id == record_id
                )
            ).scalar_one()
        )


# -- signed notes and keys ----------------------------------------------------------------


def test_signed_note_format_and_key_id(signer: Signer) -> None:
    cp = Checkpoint(ORIGIN, 7, bytes(range(32)))
    note = sign_checkpoint(cp, signer)
    body, _, sig_line = note.partition("\n\n")
    assert body + "\n" == f"{ORIGIN}\n7\n{base64.b64encode(bytes(range(32))).decode()}\n"
    assert sig_line.startswith("\u2014 " + ORIGIN + " ") and sig_line.endswith("\n")
    raw = base64.b64decode(sig_line.split(" ")[2])
    pub = signer.verifier.public_key
    assert raw[:4] == key_id(ORIGIN, pub)
    import hashlib

    assert raw[:4] == hashlib.sha256(ORIGIN.encode() + b"\x0a\x01" + pub).digest()[:4]
    assert len(raw) == 4 + 64
    parsed, opened = open_checkpoint(note, [signer.verifier])
    assert parsed == cp and opened.verified_by == (signer.verifier,)


def test_note_verification_rules(signer: Signer) -> None:
    other = Signer.generate("witness.example")
    stranger = Signer.generate(ORIGIN)  # same name, different key: a different key ID
    text_body = Checkpoint(ORIGIN, 1, b"\x01" * 32).body()
    both = sign_note(text_body, [signer, other])
    # Unknown keys are ignored as long as one known key verifies.
    assert open_note(both, [signer.verifier]).verified_by == (signer.verifier,)
    # No known key: rejected.
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(sign_note(text_body, [stranger]), [signer.verifier])
    # A known key whose signature does not verify: rejected.
    forged = both.replace(text_body, text_body.replace("\n1\n", "\n2\n"))
    with pytest.raises(NoteError, match="does not verify"):
        open_note(forged, [signer.verifier])
    with pytest.raises(NoteError):
        open_note(text_body, [signer.verifier])  # no signature block at all


def test_key_strings_round_trip_and_sources(signer: Signer, tmp_path: Path, monkeypatch: Any) -> None:
    private = signer.private_key_string()
    assert private.startswith(f"PRIVATE+KEY+{ORIGIN}+{signer.verifier.key_id_hex}+")
    assert Signer.parse(private) == signer
    assert Verifier.parse(str(signer.verifier)) == signer.verifier
    assert private not in repr(signer)
    monkeypatch.setenv("SEEDLEDGER_SIGNING_KEY", private)
    assert load_signer() == signer
    key_file = tmp_path / "k.key"
    key_file.write_text(private + "\n")
    monkeypatch.setenv("SEEDLEDGER_SIGNING_KEY", str(key_file))
    assert load_signer() == signer
    assert load_signer(key_file) == signer


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
        max_leaves=20,
    )
)
def test_fast_canonical_bytes_equal_canonical_json(value: Any) -> None:
    assert canonical_bytes(value) == canonical_json(value)


def test_leaf_from_driver_values_equals_leaf_from_processed_row(ledger: Ledger) -> None:
    # Sealing and verify read driver values (no SQLAlchemy processing); the documented
    # form is defined on the processed values. Both must give the same leaf.
    ledger.add(
        [
            new_record(seed=2**64 - 1, cfg_scale=7.0, params={"a": 1.0, "b": [0.5, 2e20]}, cost=0.0038),
            new_record(seed=None, prompt="café \U0001f600 ☃", tags=("x", "y"), response={"\ue000": 1}),
            new_record(seed=0, width=None, prompt=None, created_at=datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)),
        ]
    )
    with ledger.reading() as conn:
        processed = conn.execute(select(records).order_by(records.c.id)).all()
        raw = conn.execute(select(*RECORD.raw_columns()).order_by(records.c.id)).all()
    assert len(raw) == 3
    for p, r in zip(processed, raw, strict=True):
        assert RECORD.row_fields_from_raw(r, ledger.engine.dialect) == RECORD.row_fields(p._mapping)
    assert RECORD.row_fields(processed[0]._mapping)["seed"] == str(2**64 - 1)
    assert RECORD.row_fields(processed[2]._mapping)["created_at"] == "2001-02-03T04:05:06.000000Z"


# -- sealing --------------------------------------------------------------------------------


def test_seal_assigns_gap_free_indexes_and_one_checkpoint_per_call(ledger: Ledger, signer: Signer) -> None:
    first = seal(ledger, signer)  # an empty log gets a size-0 checkpoint
    assert (first.sealed, first.size, first.root) == (0, 0, merkle.EMPTY_ROOT)
    ids = _add(ledger, 10)
    result = seal(ledger, signer, batch_size=3)
    assert (result.sealed, result.size) == (10, 10)
    assert result.new_checkpoint and result.checkpoint is not None
    ids += _add(ledger, 4, start=10)
    assert seal(ledger, signer, batch_size=3).size == 14
    again = seal(ledger, signer)
    assert again.sealed == 0 and not again.new_checkpoint
    with ledger.reading() as conn:
        entries = conn.execute(select(log_entries).order_by(log_entries.c.leaf_index)).all()
        sizes = conn.execute(select(checkpoints.c.size).order_by(checkpoints.c.size)).scalars().all()
        state = conn.execute(select(log_state)).one()
    assert [e.leaf_index for e in entries] == list(range(14))
    assert [e.entry_id for e in entries] == ids
    assert sizes == [0, 10, 14]
    assert len(bytes(state.compact_range)) == 32 * bin(14).count("1")
    # The root equals an independent recomputation from the stored rows.
    with ledger.reading() as conn:
        stored = conn.execute(select(records).order_by(records.c.id)).all()
    leaves = [RECORD.leaf_hash(i, row._mapping) for i, row in enumerate(stored)]
    assert merkle.root_of(leaves) == bytes(state.root)
    assert _verify(ledger, signer).ok


def test_sealing_never_updates_or_deletes_records(ledger: Ledger, signer: Signer) -> None:
    _add(ledger, 5)
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", capture)
    try:
        seal(ledger, signer, batch_size=2)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", capture)
    writes = [s.split() for s in statements if s.lstrip().upper().startswith(("UPDATE", "DELETE", "INSERT"))]
    assert writes
    assert not [w for w in writes if w[0].upper() == "DELETE"]
    tables = {w[2] if w[0].upper() == "INSERT" else w[1] for w in writes}
    assert tables == {"log_entries", "log_state", "checkpoints"}


def test_seal_refuses_a_different_origin(ledger: Ledger, signer: Signer) -> None:
    _add(ledger, 1)
    seal(ledger, signer)
    _add(ledger, 1, start=1)
    from ledger.errors import UsageError

    with pytest.raises(UsageError, match="origin"):
        seal(ledger, signer, origin="elsewhere.example/log")


# -- tampering: every column, delete, insert, swap, re-sign ----------------------------------


def _tamper_expression(column: Any, dialect: str) -> tuple[str, dict[str, Any]]:
    """SET clause that changes ``column`` of one row to a different, valid value."""
    name = column.name
    type_ = column.type
    if name == "id":
        return f"{name} = :v", {"v": 1000}
    if name == "experiment_id":
        return f"{name} = :v", {"v": "exp-tamper"}
    if name == "parent_id":
        return f"{name} = :v", {"v": 1}
    if isinstance(type_, SeedType) or (isinstance(type_, Integer) and not isinstance(type_, Float)):
        return f"{name} = COALESCE({name}, 0) + 1", {}
    if isinstance(type_, Float):
        return f"{name} = COALESCE({name}, 0) + 0.25", {}
    if isinstance(type_, UTCDateTime):
        if dialect == "sqlite":
            return f"{name} = :v", {"v": "2001-02-03 04:05:06.000007"}
        return f"{name} = {name} + interval '1 microsecond'", {}
    if isinstance(type_, JSON) or name in ("params", "response", "tags", "plan"):
        value = '["tampered"]' if name == "tags" else '{"tampered": true}'
        return (f"{name} = :v" if dialect == "sqlite" else f"{name} = CAST(:v AS jsonb)"), {"v": value}
    if isinstance(type_, String | Text):
        return f"{name} = COALESCE({name}, '') || 'x'", {}
    raise AssertionError(f"no tamper rule for column {name} ({type_!r}): add one")


def test_changing_any_single_column_is_found_at_its_leaf(ledger: Ledger, signer: Signer) -> None:
    ledger.create_experiment("batch", {}, experiment_id="exp-tamper")
    ids = _add(ledger, 5)
    seal(ledger, signer)
    target = ids[2]
    leaf = _leaf_of(ledger, target)
    _sql(ledger, "CREATE TABLE tamper_backup AS SELECT * FROM records WHERE id = :id", id=target)
    checked = []
    for column in records.columns:
        assignment, params = _tamper_expression(column, ledger.dialect)
        _sql(ledger, f"UPDATE records SET {assignment} WHERE id = :id", id=target, **params)
        report = _verify(ledger, signer)
        assert not report.ok, column.name
        div = report.divergence
        assert div is not None and div.leaf_index == leaf, (column.name, div)
        if column.name == "id":
            assert div.kind == "missing-row"
            _sql(ledger, "UPDATE records SET id = :id WHERE id = 1000", id=target)
        else:
            assert (div.kind, div.entry_type, div.entry_id) == ("changed-row", "record", target)
            restore = f"(SELECT {column.name} FROM tamper_backup)"
            _sql(ledger, f"UPDATE records SET {column.name} = {restore} WHERE id = :id", id=target)
        # Restored: the log verifies again, so the failure above was this column's doing.
        assert _verify(ledger, signer).ok, column.name
        checked.append(column.name)
    assert checked == [c.name for c in records.columns]
    with pytest.raises(IntegrityError, match=rf"leaf {leaf} \(record {target}\)"):
        _sql(ledger, "UPDATE records SET prompt = 'other' WHERE id = :id", id=target)
        _verify(ledger, signer).raise_for_divergence()


def test_deleting_a_sealed_record_is_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 6)
    seal(ledger, signer)
    _sql(ledger, "DELETE FROM records WHERE id = :id", id=ids[3])
    div = _verify(ledger, signer).divergence
    assert div is not None
    assert (div.kind, div.leaf_index, div.entry_id) == ("missing-row", 3, ids[3])
    assert f"leaf 3 (record {ids[3]})" in div.message()


def _copy_record_sql(dialect: str, new_id: int, source_id: int) -> str:
    cols = [c.name for c in records.columns if c.name not in ("id", "idempotency_key")]
    listed = ", ".join(cols)
    key = "'copy-' || CAST(:new AS TEXT)" if dialect == "sqlite" else "'copy-' || CAST(:new AS VARCHAR)"
    return (
        f"INSERT INTO records (id, idempotency_key, {listed}) "
        f"SELECT :new, {key}, {listed} FROM records WHERE id = {source_id}"
    )


def test_inserting_a_record_in_the_middle_is_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 5)
    _sql(ledger, _copy_record_sql(ledger.dialect, 100, ids[0]), new=100)
    seal(ledger, signer)
    assert _verify(ledger, signer).ok
    # A record slipped in between sealed ones (id 50 < sealed id 100).
    _sql(ledger, _copy_record_sql(ledger.dialect, 50, ids[0]), new=50)
    div = _verify(ledger, signer).divergence
    assert div is not None
    assert (div.kind, div.entry_id, div.leaf_index) == ("unsealed-in-the-middle", 50, 5)


def test_a_deleted_row_and_a_row_slipped_in_are_named_in_leaf_order(ledger: Ledger, signer: Signer) -> None:
    """Counting rows against sealed entries cannot tell a deletion paired with an
    insertion; the walk then finds the deletion, and the first of the two is named."""
    ids = _add(ledger, 5)
    _sql(ledger, _copy_record_sql(ledger.dialect, 100, ids[0]), new=100)
    seal(ledger, signer)
    _sql(ledger, "CREATE TABLE kept AS SELECT * FROM records WHERE id = :id", id=ids[2])
    _sql(ledger, "DELETE FROM records WHERE id = :id", id=ids[2])
    _sql(ledger, _copy_record_sql(ledger.dialect, 50, ids[0]), new=50)
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_id) == ("missing-row", 2, ids[2])
    # Restore the deleted row, delete the last one instead: the slipped-in row comes first.
    _sql(ledger, "INSERT INTO records SELECT * FROM kept")
    _sql(ledger, "DELETE FROM records WHERE id = 100")
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_id) == ("unsealed-in-the-middle", 5, 50)


def test_a_bad_empty_checkpoint_is_named_before_any_leaf(ledger: Ledger, signer: Signer) -> None:
    seal(ledger, signer)  # a size-0 checkpoint
    ids = _add(ledger, 4)
    _sql(ledger, _copy_record_sql(ledger.dialect, 100, ids[0]), new=100)
    seal(ledger, signer)
    attacker = Signer.generate(ORIGIN)
    with ledger.reading() as conn:
        note = conn.execute(select(checkpoints.c.note).where(checkpoints.c.size == 0)).scalar_one()
    _sql(
        ledger,
        "UPDATE checkpoints SET note = :n WHERE size = 0",
        n=sign_note(note.partition("\n\n")[0] + "\n", [attacker]),
    )
    # and, further on, a deleted row paired with a row slipped in (equal counts)
    _sql(ledger, "DELETE FROM records WHERE id = :id", id=ids[1])
    _sql(ledger, _copy_record_sql(ledger.dialect, 50, ids[0]), new=50)
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index) == ("bad-signature", None), div


def test_the_earliest_row_slipped_in_is_named_across_entry_types(ledger: Ledger, signer: Signer) -> None:
    """A record slipped in (hidden from counting by a deleted record) belongs before an
    audit result slipped in: the record is named, as the exact search names it."""
    ids = _add(ledger, 5)
    _sql(ledger, _copy_record_sql(ledger.dialect, 100, ids[0]), new=100)
    seal(ledger, signer)  # records at leaves 0…5
    now = datetime(2024, 1, 1, tzinfo=UTC)
    with ledger.engine.begin() as conn:
        conn.execute(
            audit_runs.insert().values(
                id="run",
                created_at=now,
                status="finished",
                selection={},
                policy={},
                options={},
                selected_count=0,
            )
        )

    def result(result_id: int, record_id: int) -> None:
        with ledger.engine.begin() as conn:
            conn.execute(
                audit_results.insert().values(
                    id=result_id,
                    run_id="run",
                    record_id=record_id,
                    verdict="identical",
                    outcome="pass",
                    warnings=[],
                    created_at=now,
                )
            )

    result(1, ids[0])
    result(100, ids[1])
    seal(ledger, signer)  # audit results at leaves 6, 7
    _sql(ledger, _copy_record_sql(ledger.dialect, 101, ids[0]), new=101)
    seal(ledger, signer)  # record 101 at leaf 8
    _sql(ledger, _copy_record_sql(ledger.dialect, 50, ids[0]), new=50)  # belongs at leaf 5
    _sql(ledger, "DELETE FROM records WHERE id = 101")  # so the record counts still match
    result(50, ids[2])  # belongs at leaf 7
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_type, div.entry_id) == (
        "unsealed-in-the-middle",
        5,
        "record",
        50,
    )


def test_inserting_a_log_entry_in_the_middle_is_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 6)
    seal(ledger, signer)
    # Backdate a forged record: shift leaves 2… up by one and put it at leaf 2 with a
    # correctly computed leaf hash (the attacker knows the format, not the key).
    _sql(ledger, _copy_record_sql(ledger.dialect, 77, ids[0]), new=77)
    _sql(ledger, "UPDATE log_entries SET leaf_index = -leaf_index - 2 WHERE leaf_index >= 2")
    _sql(ledger, "UPDATE log_entries SET leaf_index = -leaf_index - 1 WHERE leaf_index < 0")
    with ledger.reading() as conn:
        row = conn.execute(select(records).where(records.c.id == 77)).one()
    with ledger.engine.begin() as conn:
        conn.execute(
            log_entries.insert().values(
                leaf_index=2,
                entry_type="record",
                entry_id=77,
                leaf_hash=RECORD.leaf_hash(2, row._mapping),
                sealed_at=row.recorded_at,
            )
        )
    div = _verify(ledger, signer).divergence
    assert div is not None
    # Leaf 2 looks right on its own; the record pushed out of leaf 2 is named at leaf 3.
    assert (div.kind, div.leaf_index, div.entry_id) == ("changed-row", 3, ids[2])


def test_removed_or_extra_log_entries_are_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 5)
    seal(ledger, signer)
    # An entry appended behind the sealer's back (not in the head, not signed).
    extra = _add(ledger, 1, start=5)[0]
    with ledger.reading() as conn:
        row = conn.execute(select(records).where(records.c.id == extra)).one()
        leaf = RECORD.leaf_hash(5, row._mapping)
    with ledger.engine.begin() as conn:
        conn.execute(
            log_entries.insert().values(
                leaf_index=5, entry_type="record", entry_id=extra, leaf_hash=leaf, sealed_at=datetime.now(UTC)
            )
        )
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_id) == ("extra-leaf", 5, extra)
    # A sealed entry removed from the log (its row kept).
    _sql(ledger, "DELETE FROM log_entries WHERE leaf_index >= 5")
    _sql(ledger, "DELETE FROM log_entries WHERE leaf_index = 2")
    div = _verify(ledger, signer).divergence
    # Leaf 2 is gone: named first (its record, now unsealed in the middle, would be next).
    assert div is not None and (div.kind, div.leaf_index) == ("missing-leaf", 2)
    assert len(ids) == 5


def test_swapping_two_sealed_entries_is_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 6)
    seal(ledger, signer)
    # Swap leaf positions 1 and 4 (leaf hashes move with their entries).
    _sql(ledger, "UPDATE log_entries SET leaf_index = -1 WHERE leaf_index = 1")
    _sql(ledger, "UPDATE log_entries SET leaf_index = 1 WHERE leaf_index = 4")
    _sql(ledger, "UPDATE log_entries SET leaf_index = 4 WHERE leaf_index = -1")
    div = _verify(ledger, signer).divergence
    assert div is not None
    assert (div.kind, div.leaf_index, div.entry_id) == ("changed-row", 1, ids[4])


def test_swapping_two_rows_contents_is_found(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 6)
    seal(ledger, signer)
    _sql(ledger, "UPDATE records SET prompt = 'tmp' WHERE id = :a", a=ids[1])
    _sql(ledger, "UPDATE records SET prompt = 'prompt 1' WHERE id = :b", b=ids[4])
    _sql(ledger, "UPDATE records SET prompt = 'prompt 4' WHERE id = :a", a=ids[1])
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_id) == ("changed-row", 1, ids[1])


def test_resigning_with_another_key_is_found(ledger: Ledger, signer: Signer) -> None:
    _add(ledger, 4)
    seal(ledger, signer)
    _add(ledger, 3, start=4)
    seal(ledger, signer)
    attacker = Signer.generate(ORIGIN)
    with ledger.reading() as conn:
        note = conn.execute(select(checkpoints.c.note).where(checkpoints.c.size == 4)).scalar_one()
    forged = sign_note(note.partition("\n\n")[0] + "\n", [attacker])
    _sql(ledger, "UPDATE checkpoints SET note = :n WHERE size = 4", n=forged)
    div = _verify(ledger, signer).divergence
    assert div is not None and div.kind == "bad-signature" and div.leaf_index == 3
    assert "checkpoint at size 4" in div.message()
    # The attacker's own key would accept it: the failure is the key, not the format.
    assert _verify(ledger, attacker).divergence is not None
    assert verify(ledger, [signer.verifier, attacker.verifier]).ok


def test_rewriting_a_row_its_leaf_and_the_head_is_found_by_the_signed_root(
    ledger: Ledger, signer: Signer
) -> None:
    ids = _add(ledger, 8)
    seal(ledger, signer)
    _sql(ledger, "UPDATE records SET prompt = 'rewritten' WHERE id = :id", id=ids[5])
    with ledger.reading() as conn:
        rows = conn.execute(select(records).order_by(records.c.id)).all()
    leaves = [RECORD.leaf_hash(i, r._mapping) for i, r in enumerate(rows)]
    compact = merkle.CompactRange()
    compact.extend(leaves)
    with ledger.engine.begin() as conn:
        conn.execute(log_entries.update().where(log_entries.c.leaf_index == 5).values(leaf_hash=leaves[5]))
        conn.execute(log_state.update().values(compact_range=compact.to_bytes(), root=compact.root()))
    div = _verify(ledger, signer).divergence
    assert div is not None and div.kind == "root-mismatch" and div.leaf_index == 7


# -- concurrency ---------------------------------------------------------------------------

WRITERS = 8
PER_WRITER = 2000
BATCH = 100


def _writer(url: str, worker: int) -> None:
    ledger = Ledger.open(url)
    try:
        for start in range(0, PER_WRITER, BATCH):
            ledger.add(
                [
                    new_record(seed=worker * 1_000_000 + start + i, prompt=f"w{worker} r{start + i}")
                    for i in range(BATCH)
                ]
            )
    finally:
        ledger.close()


def _sealer(url: str, key: str, stop: Any, rounds: Any, ready: Any) -> None:
    ledger = Ledger.open(url)
    signer = Signer.parse(key)
    try:
        while not stop.is_set():
            seal(ledger, signer, batch_size=700)
            rounds.value += 1
            ready.set()  # writers start once the sealer is running
            stop.wait(0.05)
    finally:
        ledger.close()


@pytest.mark.slow
def test_eight_writers_while_sealing_give_gap_free_leaves(db_url: str, signer: Signer) -> None:
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    rounds = ctx.Value("i", 0)
    ready = ctx.Event()
    sealer = ctx.Process(target=_sealer, args=(db_url, signer.private_key_string(), stop, rounds, ready))
    sealer.start()
    assert ready.wait(120), "the sealer did not start"
    writers = [ctx.Process(target=_writer, args=(db_url, w)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(timeout=120)
    stop.set()
    sealer.join(timeout=60)
    assert [p.exitcode for p in writers] == [0] * WRITERS and sealer.exitcode == 0
    assert rounds.value >= 1
    with Ledger.open(db_url) as ledger:
        final = seal(ledger, signer)
        assert final.size == WRITERS * PER_WRITER
        with ledger.reading() as conn:
            indexes = conn.execute(select(log_entries.c.leaf_index).order_by(log_entries.c.leaf_index))
            assert list(indexes.scalars()) == list(range(WRITERS * PER_WRITER))
            sealed_ids = set(conn.execute(select(log_entries.c.entry_id)).scalars())
            record_ids = set(conn.execute(select(records.c.id)).scalars())
            n_checkpoints = conn.execute(select(checkpoints.c.size)).scalars().all()
        assert sealed_ids == record_ids and len(record_ids) == WRITERS * PER_WRITER
        # How many rounds found new records depends on scheduling; at least the final one did.
        assert len(n_checkpoints) >= 1
        report = _verify(ledger, signer)
        assert report.ok, report.divergence
        assert report.entries["record"] == WRITERS * PER_WRITER


# -- proofs --------------------------------------------------------------------------------


def test_prove_and_verify_proof_offline(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 11)
    with pytest.raises(NotFoundError, match="not sealed"):
        prove(ledger, ids[0])
    seal(ledger, signer)
    for rid in ids:
        proof = prove(ledger, rid)
        report = verify_proof(json.loads(json.dumps(proof)), [signer.verifier])
        assert (report.entry_id, report.tree_size, report.key) == (rid, 11, str(signer.verifier))
        assert report.row["seed"] == str(new_record(seed=1000 + ids.index(rid)).seed)
    proof = prove(ledger, ids[6])
    bad_leaf = json.loads(base64.b64decode(proof["leaf"]))
    bad_leaf["row"]["prompt"] = "forged"
    forged = dict(proof, leaf=base64.b64encode(canonical_json(bad_leaf)).decode())
    forged.pop("leaf_hash")
    with pytest.raises(IntegrityError):
        verify_proof(forged, [signer.verifier])
    with pytest.raises(IntegrityError):
        verify_proof(proof, [Signer.generate(ORIGIN).verifier])
    with pytest.raises(IntegrityError):
        verify_proof(dict(proof, inclusion_path=proof["inclusion_path"][:-1]), [signer.verifier])
    with pytest.raises(NotFoundError):
        prove(ledger, 999_999)


# -- CLI (subprocess) ----------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """In-process run (CliRunner) for the cases that need no separate process."""
    full = {"SEEDLEDGER_DATABASE_URL": None, "SEEDLEDGER_SIGNING_KEY": None, **(env or {})}
    return CliRunner().invoke(main, list(args), env=full, catch_exceptions=False)


def test_cli_keys_generate(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    run = _cli("keys", "generate", "--out", str(key), "--name", ORIGIN)
    assert run.exit_code == 0, run.output
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    verifier = run.stdout.strip()
    assert Verifier.parse(verifier).name == ORIGIN
    assert (tmp_path / "log.key.pub").read_text().strip() == verifier
    assert key.read_text().strip() not in run.output
    assert Signer.parse(key.read_text()).verifier == Verifier.parse(verifier)
    again = _cli("keys", "generate", "--out", str(key))
    assert again.exit_code == 2 and "--force" in again.stderr
    assert _cli("keys", "public", "--key-file", str(key)).stdout.strip() == verifier


def test_cli_seal_prove_verify_end_to_end(db_url: str, tmp_path: Path, signer: Signer) -> None:
    key = tmp_path / "log.key"
    key.write_text(signer.private_key_string() + "\n")
    verifier = str(signer.verifier)
    with Ledger.open(db_url) as ledger:
        ids = _add(ledger, 5)
    env = {"SEEDLEDGER_DATABASE_URL": db_url, "SEEDLEDGER_SIGNING_KEY": str(key)}
    pub_env = {"SEEDLEDGER_DATABASE_URL": db_url}
    assert _cli("seal", env=pub_env).exit_code == 2  # no signing key
    run = _cli("--json", "seal", env=env)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["size"] == 5
    saved = tmp_path / "cp5.txt"
    run = _cli("checkpoint", "--out", str(saved), env=env)
    assert run.exit_code == 0 and run.stdout == saved.read_text()
    assert open_checkpoint(run.stdout, [signer.verifier])[0].size == 5
    with Ledger.open(db_url) as ledger:
        ids += _add(ledger, 4, start=5)
    assert _cli("seal", env=env).exit_code == 0
    assert _cli("verify", env=pub_env).exit_code == 2  # no key to trust

    # Subprocess: verify with only the public key, against the earlier checkpoint.
    run = seedledger("--json", "verify", "--key", verifier, "--against", str(saved), env=pub_env)
    assert run.code == 0, run.err
    out = run.json()
    assert out["ok"] and out["size"] == 9 and out["against"]["saved_size"] == 5
    assert len(out["against"]["proof"]) == merkle.consistency_proof_length(5, 9)

    proof_file = tmp_path / "proof.json"
    run = seedledger("prove", str(ids[7]), "--out", str(proof_file), env=pub_env)
    assert run.code == 0, run.err
    # Offline: the database URL points nowhere, so any database access would fail.
    offline = {"SEEDLEDGER_DATABASE_URL": str(tmp_path / "missing" / "none.db")}
    run = seedledger("--json", "verify-proof", str(proof_file), "--key", verifier, env=offline)
    assert run.code == 0, run.err
    assert run.json()["leaf_index"] == 7 and run.json()["key"] == verifier
    unpinned = _cli("verify-proof", str(proof_file), env=offline)
    assert unpinned.exit_code == 2 and "--key" in unpinned.stderr
    other = str(Signer.generate(ORIGIN).verifier)
    assert _cli("verify-proof", str(proof_file), "--key", other, env=offline).exit_code == 7
    data = json.loads(proof_file.read_text())
    data["leaf_index"] = 6
    proof_file.write_text(json.dumps(data))
    assert _cli("verify-proof", str(proof_file), "--key", verifier, env=offline).exit_code == 7

    # Tamper: exit 7, naming the leaf, no traceback.
    with Ledger.open(db_url) as ledger:
        _sql(ledger, "UPDATE records SET model = 'swapped' WHERE id = :id", id=ids[2])
    run = seedledger("verify", "--key", verifier, env=pub_env)
    assert run.code == 7
    assert f"leaf 2 (record {ids[2]}): changed-row" in run.err
    assert "Traceback" not in run.err


def test_cli_verify_against_rejects_a_shrunk_or_rewritten_log(tmp_path: Path, signer: Signer) -> None:
    key = tmp_path / "k.key"
    key.write_text(signer.private_key_string())
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("big", "small", "other")}
    for name, n in (("big", 6), ("small", 3), ("other", 6)):
        with Ledger.open(urls[name]) as ledger:
            _add(ledger, n, start=100 if name == "other" else 0)
            seal(ledger, signer)
    saved = tmp_path / "big.txt"
    env_big = {"SEEDLEDGER_DATABASE_URL": urls["big"], "SEEDLEDGER_SIGNING_KEY": str(key)}
    assert _cli("checkpoint", "--out", str(saved), env=env_big).exit_code == 0
    # Same size: roots must match.
    assert _cli("verify", "--against", str(saved), env=env_big).exit_code == 0
    small = _cli("verify", "--against", str(saved), env={**env_big, "SEEDLEDGER_DATABASE_URL": urls["small"]})
    assert small.exit_code == 7 and "less than the saved size 6" in small.stderr
    other = _cli("verify", "--against", str(saved), env={**env_big, "SEEDLEDGER_DATABASE_URL": urls["other"]})
    assert other.exit_code == 7 and "different roots" in other.stderr
    # A saved checkpoint signed by an unknown key is refused too.
    forged = tmp_path / "forged.txt"
    forged.write_text(sign_note(saved.read_text().partition("\n\n")[0] + "\n", [Signer.generate(ORIGIN)]))
    run = _cli("verify", "--against", str(forged), env=env_big)
    assert run.exit_code == 7 and "saved checkpoint" in run.stderr
