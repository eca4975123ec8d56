"""The native leaf walker (ledger/integrity/_leafwalk.c) against the Python path.

The walker only confirms leaves; verify's Python path decides everything else. So the
properties are: (1) every text it writes is exactly what the Python path writes, or it
refuses; (2) it never accepts a stored value the Python path would read differently or
not at all; (3) verify reports the same thing with and without it, on clean and on
tampered ledgers, with any number of threads.

In CI the extension must be built (the suite fails, not skips, without it).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import insert, select, text

from ledger.core.canonical import canonical_json
from ledger.errors import IntegrityError
from ledger.integrity import _native
from ledger.integrity.divergence import VerifyReport
from ledger.integrity.leaves import RECORD
from ledger.integrity.note import Signer
from ledger.integrity.seal import seal
from ledger.integrity.verify import verify
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_runs, records
from tests.conftest import IN_CI

if not _native.available():  # pragma: no cover - depends on the build
    if IN_CI:
        pytest.fail(
            "the native leaf walker is not built (needs libsqlite3-dev and libssl-dev)", pytrace=False
        )
    pytest.skip("the native leaf walker is not built", allow_module_level=True)

from ledger.integrity import _leafwalk  # type: ignore[attr-defined]

ORIGIN = "native.example/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def _python_json(text_value: str) -> bytes | None:
    """What the Python path makes of a stored JSON column: json.loads, then canonical
    JSON (None where it cannot)."""
    try:
        return canonical_json(json.loads(text_value))
    except (ValueError, RecursionError, TypeError, UnicodeError, Exception):
        return None


# -- floats ----------------------------------------------------------------------------

EDGE_FLOATS = [
    0.1,
    0.2 + 0.1,
    7.5,
    0.0038,
    1e-05,
    0.0001,
    1e16,
    1e15 + 0.5,
    2.0**53,
    2.0**53 + 2,
    2.0**54,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    123456789012345680.0,
    1e22,
    1e21,
    -0.0,
    0.0,
    -1.5,
    9007199254740991.0,
    4503599627370495.5,
    1 / 3,
    2 / 3,
    100.0,
    1e-7,
    1.5e-7,
]


@pytest.mark.parametrize("value", EDGE_FLOATS)
def test_float_text_equals_canonical_json_on_edges(value: float) -> None:
    assert _leafwalk.canonical_float_text(value) == canonical_json(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_equals_canonical_json(value: float) -> None:
    assert _leafwalk.canonical_float_text(value) == canonical_json(value)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_float_text_of_any_bit_pattern_is_faithful_and_canonical(bits: int) -> None:
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    rendered = _leafwalk.canonical_float_text(value)
    if not math.isfinite(value):
        assert rendered is None
        return
    assert rendered == canonical_json(value)
    assert float(rendered) == value


# -- JSON columns ------------------------------------------------------------------------

keys = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"])
    | st.sampled_from(["\uffff", "\U0001f600", "\ue000"]),
    max_size=6,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
dumpers = st.sampled_from(
    [
        json.dumps,  # what SQLAlchemy writes by default (and older seedledger ledgers hold)
        lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False),
        lambda v: json.dumps(v, indent=2, ensure_ascii=True),
        lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False),
        lambda v: canonical_json(v).decode(),
    ]
)


@given(json_values, dumpers)
def test_json_column_text_equals_canonical_json(value: Any, dump: Any) -> None:
    stored = dump(value)
    assert _leafwalk.canonical_json_text(stored.encode()) == canonical_json(json.loads(stored))


MUTATION_BYTES = list(b'{}[]",:\\ 0123456789.eE+-tfnu\x00\x7f\xc3\xa9\xed\xa0\x80\xff')


@given(json_values, st.data())
@example(value={"a": [1, "é", {"b": None}]}, data=None)
def test_mutated_json_is_refused_or_read_as_python_reads_it(value: Any, data: Any) -> None:
    """Faithfulness: whatever bytes are stored, the walker's text is the Python path's
    text, or it refuses. Never something else."""
    stored = bytearray(json.dumps(value, ensure_ascii=False).encode())
    if data is not None and stored:
        for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
            at = data.draw(st.integers(min_value=0, max_value=len(stored) - 1))
            op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
            byte = data.draw(
                st.sampled_from(list(b'{}[]",:\\ 0123456789.eE+-tfnu\x00\x7f\xc3\xa9\xed\xa0\x80\xff'))
            )
            if op == "flip":
                stored[at] = byte
            elif op == "insert":
                stored.insert(at, byte)
            elif len(stored) > 1:
                del stored[at]
    rendered = _leafwalk.canonical_json_text(bytes(stored))
    try:
        expected = _python_json(bytes(stored).decode("utf-8"))
    except UnicodeDecodeError:
        expected = None  # Python's sqlite3 cannot even read such TEXT
    if data is None:  # the unmutated example must be rendered, not refused
        assert rendered is not None
    if rendered is not None:
        assert rendered == expected


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"b": 1, "a": 2}', b'{"a":2,"b":1}'),
        ("-0", b"0"),
        ("-0.0", b"0"),
        ("1E2", b"100"),
        ("1.0", b"1"),
        ("1e16", b"1e+16"),
        ("12345678901234567890123", b"12345678901234567890123"),
        ('"\\/"', b'"/"'),
        ('"\\u00e9\\u00E9"', '"éé"'.encode()),
        ('"\\ud83d\\ude00"', '"😀"'.encode()),
        ('"\\u001F\\u0008"', b'"\\u001f\\b"'),
        ('{"\\uffff": 1, "\\ud83d\\ude00": 2}', '{"😀":2,"\uffff":1}'.encode()),  # UTF-16 order
        (" [ ] ", b"[]"),
        ('{"a":{"d":1,"c":[true,false,null]}}', b'{"a":{"c":[true,false,null],"d":1}}'),
        # what only the Python path may decide
        ('{"a": 1, "a": 2}', None),  # duplicate keys: json.loads keeps the last
        ('"\\ud83d"', None),  # a lone surrogate cannot be encoded as UTF-8
        ('"\\udc00x"', None),
        ("NaN", None),
        ("[Infinity]", None),
        ("1e400", None),
        ("[" * 300 + "]" * 300, None),
        ("1" * 700, None),
        ('"a\x01"', None),  # a raw control character: json.loads is strict
        ("\ufeff{}", None),
        ("{} x", None),
        ("01", None),
        ("'a'", None),
        ('{"a":1,}', None),
        ("", None),
    ],
)
def test_json_column_cases(stored: str, expected: bytes | None) -> None:
    assert _leafwalk.canonical_json_text(stored.encode()) == expected
    if expected is not None:
        assert _python_json(stored) == expected


def test_json_column_refuses_invalid_utf8() -> None:
    for raw in (b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\xe2\x82"', b'"\xf4\x90\x80\x80"'):
        assert _leafwalk.canonical_json_text(raw) is None, raw


# -- whole ledgers -------------------------------------------------------------------------

SEEDS = [0, 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1, None]
PROMPTS = [
    "a lighthouse at dusk",
    "",
    'quotes " and \\ backslashes',
    "tabs\tnewlines\n\r\x00\x1f\x7f controls",
    "unicode é ß 漢字 \u2028 \ufeff",
    "astral 😀 𝄞",
    "x" * 5000,
    None,
]


def _times(row: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": row["created_at"], "recorded_at": row["recorded_at"]}


def _row(n: int, rng: random.Random) -> dict[str, Any]:
    seed = SEEDS[n % len(SEEDS)]
    prompt = PROMPTS[n % len(PROMPTS)]
    params: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.UUID(int=n + 1)),
        "positivePrompt": prompt,
        "CFGScale": [7.5, 7.0, 7, 0.1 + 0.2, 1e-05, -0.0][n % 6],
        "seed": seed,
        "nested": {"z": [1, 2.5, {"é": None}], "\uffff": True, "😀": False, "a": "\n"},
        "lora": [{"model": "civitai:1@2", "weight": 0.75}],
    }
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n, microseconds=rng.randrange(10**6))
    return {
        "idempotency_key": f"native:{n}",
        "backend": "runware",
        "task_type": "imageInference",
        "modality": "image",
        "model": rng.choice(["runware:101@1", "civitai:4384@130072", "é-model"]),
        "scheduler_requested": rng.choice([None, "Euler a", "DPM++ 2M Karras"]),
        "scheduler": rng.choice([None, "Euler a", "DPM++ 2M Karras"]),
        "seed": seed,
        "seed_origin": "request" if seed is not None else "unknown",
        "prompt": prompt,
        "negative_prompt": rng.choice([None, "blurry", "😀"]),
        "width": rng.choice([None, 512, 1024]),
        "height": 512,
        "steps": rng.choice([None, 1, 30]),
        "cfg_scale": rng.choice([None, 7.5, 7.0, 0.1 + 0.2, 1e16, 5e-324, -2.5]),
        "output_format": "PNG",
        "params": params,
        "response": {"seed": seed, "cost": rng.choice([0.0038, 0, 1e-7]), "imageURL": None},
        "task_uuid": params["taskUUID"],
        "output_uuid": None if n % 3 else str(uuid.UUID(int=n + 2**64)),
        "output_index": n % 4,
        "cost": rng.choice([None, 0.0038, 0.0, 12.25]),
        "source": "api",
        "experiment_id": None,
        "parent_id": None,
        "tags": rng.choice([[], ["bench"], ["é", "😀", ""]]),
        "status": "ok",
        "error_code": None,
        "error": rng.choice([None, "boom\n"]),
        "created_at": created,
        "recorded_at": created + timedelta(microseconds=5),
    }


def _fill(ledger: Ledger, count: int, *, start: int = 0, audit: bool = True) -> None:
    rng = random.Random(start)
    rows = [_row(start + n, rng) for n in range(count)]
    if ledger.dialect == "postgresql":  # its text and JSONB cannot hold NUL
        rows = [json.loads(json.dumps(row, default=str).replace("\\u0000", "")) | _times(row) for row in rows]
    with ledger.writing() as conn:
        conn.execute(insert(records), rows)
    if not audit:
        return
    run_id = str(uuid.UUID(int=start + 1))  # the same rows in every ledger filled alike
    now = datetime(2026, 2, 1, tzinfo=UTC)
    with ledger.writing() as conn:
        conn.execute(
            insert(audit_runs).values(
                id=run_id,
                created_at=now,
                status="finished",
                selection={"sample": None},
                policy={},
                options={},
                selected_count=3,
            )
        )
        conn.execute(
            insert(audit_results),
            [
                {
                    "run_id": run_id,
                    "record_id": start + k + 1,
                    "verdict": "identical",
                    "outcome": "pass",
                    "warnings": ["stochastic-scheduler"] if k else [],
                    "distances": {"phash": k, "dhash": 0.5 * k},
                    "replay": None if k == 2 else {"seed": SEEDS[k]},
                    "replay_thumbnail": [None, b"", bytes(range(256))][k],
                    "replay_pixel_sha256": "ab" * 32,
                    "created_at": now,
                }
                for k in range(3)
            ],
        )


def _both(ledger: Ledger, signer: Signer, **kwargs: Any) -> VerifyReport:
    native = verify(ledger, [signer.verifier], **kwargs)
    exact = verify(ledger, [signer.verifier], native=False, **kwargs)
    assert native == exact
    assert exact.native_leaves == 0
    return native


@pytest.fixture
def sqlite_ledger(sqlite_url: str) -> Iterator[Ledger]:
    opened = Ledger.open(sqlite_url)
    yield opened
    opened.close()


def test_native_walker_confirms_every_leaf_of_a_varied_ledger(sqlite_ledger: Ledger, signer: Signer) -> None:
    _fill(sqlite_ledger, 120)
    seal(sqlite_ledger, signer)
    _fill(sqlite_ledger, 80, start=120)
    seal(sqlite_ledger, signer)
    report = _both(sqlite_ledger, signer)
    assert (
        report.ok
        and report.size == 206
        and report.entries == {"record": 200, "audit-result": 6, "environment": 0}
    )
    assert report.native_leaves == report.size  # nothing needed the Python path


def test_older_ledgers_with_default_json_text_are_walked_natively(
    sqlite_ledger: Ledger, signer: Signer
) -> None:
    """Ledgers written before JSON columns were stored compactly hold json.dumps'
    default text; the walker canonicalizes it instead of falling back."""
    _fill(sqlite_ledger, 40)
    with sqlite_ledger.writing() as conn:
        for rid, params, response in conn.execute(text("SELECT id, params, response FROM records")).all():
            conn.execute(
                text("UPDATE records SET params = :p, response = :r WHERE id = :id"),
                {"p": json.dumps(json.loads(params)), "r": json.dumps(json.loads(response)), "id": rid},
            )
    seal(sqlite_ledger, signer)
    stored = sqlite_ledger.engine.connect().execute(text("SELECT params FROM records LIMIT 1")).scalar_one()
    assert ": " in stored  # not the compact form
    report = _both(sqlite_ledger, signer)
    assert report.ok and report.native_leaves == report.size == 43


# Raw changes to a sealed row (SQL assignment, parameters), each aimed at one of the
# walker's column forms or refusals: every one must be named at its leaf.
TAMPERING = [
    ("params = :v", {"v": '{"tampered": true}'}),
    ("params = :v", {"v": "not json"}),
    ("params = :v", {"v": '{"a": 1, "a": 2}'}),
    ("params = CAST(:v AS BLOB)", {"v": "{}"}),
    ("prompt = CAST(x'ff00' AS TEXT)", {}),  # bytes that are not UTF-8
    ("prompt = CAST(:v AS BLOB)", {"v": "same bytes, other storage class"}),
    ("cfg_scale = 'abc'", {}),
    ("seed = 'abc'", {}),
    ("seed = seed + 1", {}),
    ("width = '512x'", {}),
    ("created_at = '2026-01-01 00:00:00'", {}),
    ("created_at = 12", {}),
    ("tags = :v", {"v": "[1e400]"}),
    ("output_uuid = NULL", {}),
]


@pytest.mark.parametrize(("assignment", "params"), TAMPERING)
def test_tampering_is_named_the_same_with_and_without_the_walker(
    sqlite_ledger: Ledger, signer: Signer, assignment: str, params: dict[str, Any]
) -> None:
    _fill(sqlite_ledger, 12, audit=False)
    seal(sqlite_ledger, signer)
    with sqlite_ledger.writing() as conn:
        conn.execute(text(f"UPDATE records SET {assignment} WHERE id = 7"), params)
    report = _both(sqlite_ledger, signer)
    div = report.divergence
    assert div is not None and (div.kind, div.leaf_index, div.entry_id) == ("changed-row", 6, 7), div
    assert report.native_leaves == 6  # the six leaves before it


def test_equivalent_json_spellings_verify(sqlite_ledger: Ledger, signer: Signer) -> None:
    """The leaf commits to the JSON value, so respelling the stored text (whitespace,
    key order, escapes) is not a change, on both paths."""
    _fill(sqlite_ledger, 6, audit=False)
    seal(sqlite_ledger, signer)
    with sqlite_ledger.writing() as conn:
        stored = conn.execute(text("SELECT params FROM records WHERE id = 3")).scalar_one()
        value = json.loads(stored)
        respelled = json.dumps(dict(reversed(list(value.items()))), indent=3, ensure_ascii=True)
        conn.execute(text("UPDATE records SET params = :v WHERE id = 3"), {"v": respelled})
    report = _both(sqlite_ledger, signer)
    assert report.ok and report.native_leaves == report.size


def test_threads_split_the_walk_and_the_first_divergence_wins(
    sqlite_ledger: Ledger, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(sqlite_ledger, 9000, audit=False)
    seal(sqlite_ledger, signer)
    monkeypatch.setenv(_native.ENV_THREADS, "3")
    clean = _both(sqlite_ledger, signer)
    assert clean.ok and clean.native_leaves == 9000
    # One change in the last thread's share, then one in the second's: the earlier is named.
    with sqlite_ledger.writing() as conn:
        conn.execute(text("UPDATE records SET prompt = 'late' WHERE id = 8500"))
    div = _both(sqlite_ledger, signer).divergence
    assert div is not None and div.entry_id == 8500 and div.leaf_index == 8499
    with sqlite_ledger.writing() as conn:
        conn.execute(text("UPDATE records SET prompt = 'early' WHERE id = 4000"))
    report = _both(sqlite_ledger, signer)
    assert report.divergence is not None and report.divergence.entry_id == 4000
    assert report.native_leaves == 3999


def test_walker_stops_at_checkpoints_and_checks_each(sqlite_ledger: Ledger, signer: Signer) -> None:
    for start in range(0, 50, 10):
        _fill(sqlite_ledger, 10, start=start, audit=False)
        seal(sqlite_ledger, signer)
    report = _both(sqlite_ledger, signer)
    assert report.ok and report.checkpoints == 5 and report.native_leaves == 50
    with sqlite_ledger.writing() as conn:
        conn.execute(text("UPDATE checkpoints SET root = zeroblob(32) WHERE size = 30"))
    div = _both(sqlite_ledger, signer).divergence
    assert div is not None and div.kind == "bad-checkpoint" and div.leaf_index == 29


def test_walker_is_not_used_where_it_cannot_be(
    sqlite_ledger: Ledger, signer: Signer, monkeypatch: Any
) -> None:
    _fill(sqlite_ledger, 5, audit=False)
    seal(sqlite_ledger, signer)
    monkeypatch.setenv(_native.ENV_NATIVE, "0")
    report = verify(sqlite_ledger, [signer.verifier])
    assert report.ok and report.native_leaves == 0
    monkeypatch.delenv(_native.ENV_NATIVE)
    assert verify(sqlite_ledger, [signer.verifier]).native_leaves == 5
    memory = Ledger.open("sqlite:///:memory:")
    try:
        with memory.reading() as conn:
            assert _native.open_walker(conn, []) is None
    finally:
        memory.close()


def test_same_sqlite_refuses_another_library() -> None:
    import _hashlib

    assert not _leafwalk.same_sqlite(_hashlib.__file__)  # links OpenSSL, not SQLite
    assert not _leafwalk.same_sqlite("/nonexistent/_sqlite3.so")


def test_walker_rejects_a_malformed_compact_range(sqlite_ledger: Ledger) -> None:
    with sqlite_ledger.reading() as conn:
        walker = _native.open_walker(conn, [])
        assert walker is not None
        try:
            with pytest.raises(ValueError, match="compact range"):
                walker.walk(3, [b"\x00" * 32], 3)
            with pytest.raises(ValueError):
                walker.walk(5, [], 4)
            assert walker.walk(0, [], 0) == (0, [], (), None)
        finally:
            walker.close()
        with pytest.raises(RuntimeError, match="closed"):
            walker.walk(0, [], 0)


# -- sealing ---------------------------------------------------------------------------------


def _log(ledger: Ledger) -> list[tuple[Any, ...]]:
    with ledger.reading() as conn:
        rows = conn.execute(text("SELECT leaf_index, entry_type, entry_id, leaf_hash FROM log_entries"))
        return sorted(tuple(r) for r in rows)


def _seal_both_ways(
    native: Ledger,
    python: Ledger,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    batch_size: int,
    leaves: int,
) -> None:
    """Seal two ledgers holding the same rows, one with the walker and one without:
    the same log, and it verifies both ways."""
    with native.reading() as conn:
        assert _native.row_hasher(conn, RECORD) is not None
    seal(native, signer, batch_size=batch_size)
    monkeypatch.setenv(_native.ENV_NATIVE, "0")
    with python.reading() as conn:
        assert _native.row_hasher(conn, RECORD) is None
    seal(python, signer, batch_size=batch_size)
    monkeypatch.delenv(_native.ENV_NATIVE)
    assert _log(native) == _log(python) and len(_log(native)) == leaves
    assert _both(native, signer).ok and _both(python, signer).ok


def test_native_sealing_writes_the_leaves_python_sealing_writes(
    sqlite_url: str, tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = Ledger.open(sqlite_url)
    _fill(native, 3000)  # enough rows for the hasher to use both threads
    native.close()
    copy = tmp_path / "copy.db"
    shutil.copyfile(sqlite_url.removeprefix("sqlite:///"), copy)
    native, python = Ledger.open(sqlite_url), Ledger.open(str(copy))
    try:
        _seal_both_ways(native, python, signer, monkeypatch, batch_size=2500, leaves=3003)
    finally:
        native.close()
        python.close()


def test_sealing_hashes_rows_the_walker_refuses_on_the_python_path(
    sqlite_ledger: Ledger, signer: Signer
) -> None:
    """A row the walker cannot render (here duplicate JSON keys, which json.loads reads
    as the last value) is sealed by the Python path, at its own index."""
    _fill(sqlite_ledger, 8, audit=False)
    with sqlite_ledger.writing() as conn:
        conn.execute(text("UPDATE records SET params = :v WHERE id = 4"), {"v": '{"a": 1, "a": 2}'})
    seal(sqlite_ledger, signer)
    report = _both(sqlite_ledger, signer)
    assert report.ok and report.size == 8
    assert report.native_leaves == 7  # all but leaf 3, which the walker leaves to Python


def test_sealing_refuses_a_row_that_holds_no_value_of_its_type(sqlite_ledger: Ledger, signer: Signer) -> None:
    _fill(sqlite_ledger, 4, audit=False)
    with sqlite_ledger.writing() as conn:
        conn.execute(text("UPDATE records SET cfg_scale = 'abc' WHERE id = 2"))
    with pytest.raises(IntegrityError, match=r"record 2 cannot be sealed"):
        seal(sqlite_ledger, signer)
    assert _log(sqlite_ledger) == []  # nothing of the batch was written


# -- misuse and odd environments -------------------------------------------------------------


def test_walker_refuses_use_before_init_and_oversized_ranges(sqlite_ledger: Ledger) -> None:
    bare = _leafwalk.Walker.__new__(_leafwalk.Walker)
    with pytest.raises(RuntimeError, match="closed"):
        bare.walk(0, [], 10)  # never "reached the stop" without walking
    with sqlite_ledger.reading() as conn:
        walker = _native.open_walker(conn, [RECORD])
        assert walker is not None
        try:
            with pytest.raises(ValueError, match="at most"):
                walker.walk(0, [], 1 << 40)
        finally:
            walker.close()


def test_walker_refuses_a_spec_naming_columns_the_statement_lacks(sqlite_ledger: Ledger) -> None:
    with sqlite_ledger.reading() as conn:
        sql, specs = _native.walk_sql([RECORD], conn)
    path = sqlite_ledger.engine.url.database
    name, id_column, prefix, middle, suffix, columns = specs[0]
    broken = (name, id_column, prefix, middle, suffix, ((*columns[0][:2], 999), *columns[1:]))
    with pytest.raises(RuntimeError, match="column"):
        _leafwalk.Walker(path, sql, (broken,), 1)
    with pytest.raises(ValueError, match="kind"):
        bad_kind = (name, id_column, prefix, middle, suffix, ((columns[0][0], "x", columns[0][2]),))
        _leafwalk.Walker(path, sql, (bad_kind,), 1)


def test_hash_rows_takes_int_ids_only(sqlite_ledger: Ledger) -> None:
    _fill(sqlite_ledger, 2, audit=False)
    with sqlite_ledger.reading() as conn:
        hasher = _native.row_hasher(conn, RECORD)
    assert hasher is not None and hasher.id_position == 0
    assert all(h is not None for h in hasher.hashes([(1,), (2,)], 0))
    assert hasher.hashes([(1,), (99,)], 0)[1] is None  # no such row: left to the Python path
    with sqlite_ledger.reading() as conn:
        sql = _native._compiled(select(*RECORD.raw_columns()).where(RECORD.table.c.id == text("?1")), conn)
    spec = _native._spec(RECORD, sqlite_ledger.engine.dialect, 0)
    path = sqlite_ledger.engine.url.database
    with pytest.raises(TypeError, match="ints"):
        _leafwalk.hash_rows(path, sql, spec, [1, "2"], 0, 1)


def test_large_objects_sort_like_python() -> None:
    value = {f"k{n:05d}": n for n in range(5000)}
    stored = json.dumps(dict(reversed(list(value.items()))))
    assert _leafwalk.canonical_json_text(stored.encode()) == canonical_json(value)
    duplicated = "{" + ",".join(f'"k{n % 2000}": {n}' for n in range(4000)) + "}"
    assert _leafwalk.canonical_json_text(duplicated.encode()) is None


def test_columns_without_an_exact_native_form_are_left_to_python() -> None:
    from sqlalchemy import Column, LargeBinary, MetaData, Table
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.types import JSON, TypeDecorator

    from ledger.integrity.leaves import EntryType

    class Packed(TypeDecorator[bytes]):
        impl = LargeBinary
        cache_ok = True

        def process_result_value(self, value: Any, dialect: Any) -> Any:
            return value[::-1] if value is not None else None

    table = Table("odd", MetaData(), Column("id", LargeBinary), Column("blob", Packed()))
    assert EntryType("odd", 1, table).native_kinds(sqlite.dialect()) is None
    plain = Table("plain", MetaData(), Column("blob", LargeBinary), Column("doc", JSON))
    assert EntryType("plain", 1, plain).native_kinds(sqlite.dialect()) == ("b", "j")
    custom = sqlite.dialect(json_deserializer=lambda text: json.loads(text, parse_float=str))
    assert EntryType("plain", 1, plain).native_kinds(custom) is None


def test_renderings_ignore_a_comma_decimal_locale(tmp_path: Path) -> None:
    """printf and strtod follow LC_NUMERIC; the walker renders in the C locale on every
    thread, so a process set to a comma-decimal locale gets the same bytes."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/de_DE").exists():
        pytest.skip("no localedef or de_DE locale source to build a comma-decimal locale")
    import subprocess
    import sys

    built = subprocess.run(
        ["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "de_DE.UTF-8")],
        capture_output=True,
        check=False,
    )
    if built.returncode not in (0, 1) or not (tmp_path / "de_DE.UTF-8").exists():
        pytest.skip(f"localedef failed: {built.stderr[-200:]!r}")
    script = (
        "import locale; locale.setlocale(locale.LC_ALL, '');"
        "assert locale.localeconv()['decimal_point'] == ',';"
        "from ledger.integrity import _leafwalk;"
        "f = _leafwalk.canonical_float_text;"
        "print(f(7.25).decode(), f(0.1 + 0.2).decode(),"
        " _leafwalk.canonical_json_text(b'[7.25, 1e-7, 2.5e300, 7.0]').decode())"
    )
    env = {"LOCPATH": str(tmp_path), "LC_ALL": "de_DE.UTF-8", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7.25", "0.30000000000000004", "[7.25,1e-07,2.5e+300,7]"]


# -- PostgreSQL: the same forms, from psycopg's values ------------------------------------------


@pytest.mark.postgres
def test_values_walker_confirms_every_leaf_on_postgresql(pg_url: str, signer: Signer) -> None:
    ledger = Ledger.open(pg_url)
    try:
        _fill(ledger, 120)
        seal(ledger, signer)
        _fill(ledger, 80, start=120)
        seal(ledger, signer)
        with ledger.reading() as conn:
            walker = _native.open_walker(conn, [RECORD])
            assert walker is not None and not isinstance(walker, _leafwalk.Walker)
        report = _both(ledger, signer)
        assert report.ok and report.size == 206 and report.native_leaves == 206
        with ledger.writing() as conn:
            conn.execute(
                text("UPDATE records SET params = CAST(:v AS jsonb) WHERE id = 150"), {"v": '{"x": 1}'}
            )
        div = _both(ledger, signer).divergence
        assert div is not None and (div.kind, div.entry_id) == ("changed-row", 150)
    finally:
        ledger.close()


@pytest.mark.postgres
def test_native_sealing_on_postgresql_writes_the_leaves_python_sealing_writes(
    pg_url: str, _pg_template: str, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import _pg_database, _pg_url

    with _pg_database("sl_native", template=_pg_template) as name:
        native, python = Ledger.open(pg_url), Ledger.open(_pg_url(name))
        try:
            for ledger in (native, python):
                _fill(ledger, 1500)
            _seal_both_ways(native, python, signer, monkeypatch, batch_size=700, leaves=1503)
        finally:
            native.close()
            python.close()


@pytest.mark.postgres
def test_values_walker_reads_times_in_utc_whatever_the_session_zone(pg_url: str, signer: Signer) -> None:
    """The walker asks for UTC in its transaction, so a database whose sessions default
    to another zone still walks natively; a datetime in another zone handed to
    hash_values is refused, not misread."""
    ledger = Ledger.open(pg_url)
    try:
        _fill(ledger, 3, audit=False)
        seal(ledger, signer)
        database = pg_url.rsplit("/", 1)[1]
        with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET TIME ZONE 'Asia/Kolkata'")
        ledger.engine.dispose()  # new sessions take the new default
        with ledger.reading() as conn:
            assert conn.exec_driver_sql("SHOW TIME ZONE").scalar_one() == "Asia/Kolkata"
            stmt = select(*RECORD.raw_columns()).where(RECORD.table.c.id == 1)
            raw = tuple(conn.execute(stmt).one())  # driver values, in the session's zone
        assert _both(ledger, signer).native_leaves == 3
        created = raw[RECORD.column_names.index("created_at")]
        assert created.utcoffset() == timedelta(hours=5, minutes=30)
        spec = _native._spec(RECORD, ledger.engine.dialect, 0)
        assert _leafwalk.hash_values(spec, [raw], 0) == [None]
    finally:
        ledger.close()


@pytest.mark.postgres
def test_a_json_column_altered_to_another_type_is_read_as_python_reads_it(
    pg_url: str, signer: Signer
) -> None:
    ledger = Ledger.open(pg_url)
    try:
        _fill(ledger, 4, audit=False)
        seal(ledger, signer)
        assert _both(ledger, signer).native_leaves == 4
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE records ALTER COLUMN params TYPE text USING params::text")
        report = _both(ledger, signer)  # psycopg now returns str: every leaf has changed
        assert report.native_leaves == 0
        assert report.divergence is not None and (report.divergence.kind, report.divergence.leaf_index) == (
            "changed-row",
            0,
        )
    finally:
        ledger.close()


@pytest.mark.postgres
def test_a_client_encoding_other_than_utf8_keeps_to_the_python_path(pg_url: str, signer: Signer) -> None:
    from ledger.store import engine as engines
    from tests.factories import new_record

    ledger = Ledger.open(pg_url)
    try:
        ledger.add(
            # ASCII only: psycopg decodes JSON as UTF-8 whatever the client encoding, so
            # the Python path itself cannot read non-ASCII JSON through another encoding
            [new_record(seed=n, prompt=f"a cafe {n}", params={"p": f"cafe {n}"}) for n in range(4)]
        )
        seal(ledger, signer)
        assert _both(ledger, signer).native_leaves == 4
    finally:
        ledger.close()
    latin = Ledger(engines.create(pg_url, connect_args={"client_encoding": "WIN1252"}))
    try:
        with latin.reading() as conn:
            assert _native.open_walker(conn, [RECORD]) is None
            assert _native.row_hasher(conn, RECORD) is None
        report = verify(latin, [signer.verifier])
        assert report.native_leaves == 0 and report == verify(latin, [signer.verifier], native=False)
    finally:
        latin.close()


@pytest.mark.postgres
def test_times_near_the_ends_of_the_calendar_read_alike_in_any_session_zone(
    pg_url: str, signer: Signer
) -> None:
    """verify and seal read times in UTC on both paths, so a time that a session in
    another zone could not even hand to Python verifies the same either way."""
    ledger = Ledger.open(pg_url)
    try:
        _fill(ledger, 2, audit=False)
        with ledger.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE records SET created_at = '9999-12-31 23:00:00+00' WHERE id = 1")
        database = pg_url.rsplit("/", 1)[1]
        with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET TIME ZONE 'Asia/Tokyo'")
        ledger.engine.dispose()
        seal(ledger, signer)
        report = _both(ledger, signer)
        assert report.ok and report.native_leaves == 2
    finally:
        ledger.close()
