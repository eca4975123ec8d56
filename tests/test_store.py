from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ledger.core.records import Status
from ledger.errors import NotFoundError, SchemaOutdatedError, StoreError, UsageError
from ledger.store import Ledger, RecordFilter, migrate
from ledger.store import engine as engines
from tests.factories import new_record

SEED_MATRIX = [0, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]


def test_seed_matrix_round_trips_exactly(ledger: Ledger) -> None:
    ids = ledger.add([new_record(seed) for seed in SEED_MATRIX])
    for rid, seed in zip(ids, SEED_MATRIX, strict=True):
        stored = ledger.get(rid).seed
        assert stored == seed and isinstance(stored, int)


def test_seeds_sort_and_range_filter_numerically(ledger: Ledger) -> None:
    shuffled = [2**64 - 1, 0, 2**63, 2**32, 2**63 - 1, 2**53 + 1, 2**31]
    ledger.add([new_record(seed) for seed in shuffled])
    assert [r.seed for r in ledger.query(order_by="seed")] == sorted(shuffled)
    assert [r.seed for r in ledger.query(order_by="seed", descending=True)] == sorted(shuffled)[::-1]
    in_range = ledger.query(RecordFilter(seed_min=2**32, seed_max=2**63), order_by="seed")
    assert [r.seed for r in in_range] == [2**32, 2**53 + 1, 2**63 - 1, 2**63]
    assert [r.seed for r in ledger.query(RecordFilter(seed_min=2**63))] == [2**64 - 1, 2**63]
    assert ledger.count(RecordFilter(seed=2**64 - 1)) == 1
    assert ledger.count(RecordFilter(seed_max=0)) == 1


def test_filters_combine(ledger: Ledger) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.add(
        [
            new_record(1, model="runware:101@1", prompt="A red Fox", created_at=t0, tags=("a", "b")),
            new_record(2, model="civitai:5@7", prompt="100% cotton_shirt", created_at=t0 + timedelta(days=1)),
            new_record(
                3, model="runware:400@1", status=Status.FAILED, created_at=t0 + timedelta(days=2), tags=("a",)
            ),
        ]
    )
    seeds = lambda f: sorted(r.seed for r in ledger.query(f))  # noqa: E731
    assert seeds(RecordFilter(model="runware:*")) == [1, 3]
    assert seeds(RecordFilter(model="runware:101@1")) == [1]
    assert seeds(RecordFilter(prompt="red fox")) == [1]
    # LIKE wildcards in the search text are literal.
    assert seeds(RecordFilter(prompt="100%")) == [2]
    assert seeds(RecordFilter(prompt="n_s")) == [2]
    assert seeds(RecordFilter(prompt="%")) == [2]
    assert seeds(RecordFilter(tags=("a",))) == [1, 3]
    assert seeds(RecordFilter(tags=("a", "b"))) == [1]
    assert seeds(RecordFilter(status="failed")) == [3]
    assert seeds(RecordFilter(since=t0 + timedelta(hours=1))) == [2, 3]
    assert seeds(RecordFilter(until=t0 + timedelta(days=1))) == [1]
    assert ledger.count(RecordFilter(model="runware:*", tags=("b",))) == 1


def test_query_pages_and_iterates(ledger: Ledger) -> None:
    ledger.add([new_record(i) for i in range(25)])
    page = ledger.query(order_by="seed", limit=10, offset=20)
    assert [r.seed for r in page] == [20, 21, 22, 23, 24]
    assert [r.seed for r in ledger.iter_records(batch_size=7)] == list(range(25))


def test_idempotency_key_stores_once(ledger: Ledger) -> None:
    first = ledger.add([new_record(1, idempotency_key="k1"), new_record(2, idempotency_key="k2")])
    again = ledger.add([new_record(1, idempotency_key="k1"), new_record(3, idempotency_key="k3")])
    assert again[0] == first[0]
    assert ledger.count() == 3


def test_a_failing_batch_writes_nothing(ledger: Ledger) -> None:
    ledger.add([new_record(1)])
    with pytest.raises(StoreError):
        # parent 999 does not exist: the foreign key fails after the first row went in.
        ledger.add([new_record(2), new_record(3, parent_id=999)])
    assert ledger.count() == 1


def test_records_come_back_as_values_with_utc_times(ledger: Ledger) -> None:
    rid = ledger.record(new_record(7, tags=("x",), params={"seed": 7, "nested": {"a": [1, 2]}}))
    record = ledger.get(rid)
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset() == timedelta(0)
    assert record.params == {"seed": 7, "nested": {"a": [1, 2]}}
    assert record.tags == ("x",)
    with pytest.raises(NotFoundError):
        ledger.get(rid + 100)


def test_bad_query_arguments(ledger: Ledger) -> None:
    with pytest.raises(UsageError):
        ledger.query(order_by="prompt; drop table records")
    with pytest.raises(UsageError):
        RecordFilter(seed_min=5, seed_max=4)


def test_new_sqlite_file_is_created_at_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "new.db"
    with Ledger.open(str(path)) as ledger:
        assert migrate.current_revision(ledger.engine) == migrate.head_revision()


def test_database_behind_head_names_the_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = engines.create(str(tmp_path / "old.db"))
    migrate.upgrade(engine, "0001")
    engine.dispose()
    with pytest.raises(SchemaOutdatedError, match="seedledger db upgrade"):
        Ledger.open(str(tmp_path / "old.db"))


@pytest.mark.postgres
def test_empty_postgres_is_not_created_implicitly(pg_empty_url: str) -> None:
    with pytest.raises(SchemaOutdatedError, match="seedledger db upgrade"):
        Ledger.open(pg_empty_url)


def test_foreign_tables_are_not_mistaken_for_a_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = engines.create(str(tmp_path / "other.db"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something (x INTEGER)"))
    engine.dispose()
    with pytest.raises(StoreError, match="not a seedledger ledger"):
        Ledger.open(str(tmp_path / "other.db"))


def test_unreachable_postgres_is_a_store_error_without_password() -> None:
    with pytest.raises(StoreError) as info:
        Ledger.open("postgresql://postgres:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(info.value)


def test_json_columns_read_back_unchanged_and_sqlite_stores_them_canonically(ledger: Ledger) -> None:
    params = {"z": [1.0, 2, "é", None], "a": {"y": True, "b": "\n"}, "CFGScale": 7.5, "😀": 0}
    record_id = ledger.add([new_record(params=params)])[0]
    assert ledger.get(record_id).params == params
    assert isinstance(ledger.get(record_id).params["z"][0], float)  # 1.0 is not written as 1
    if ledger.dialect == "sqlite":
        with ledger.reading() as conn:
            query = text("SELECT params FROM records WHERE id = :i")
            stored = conn.execute(query, {"i": record_id}).scalar_one()
        assert stored == '{"CFGScale":7.5,"a":{"b":"\\n","y":true},"z":[1.0,2,"é",null],"😀":0}'


def test_sqlite_json_writes_keys_that_cannot_be_sorted() -> None:
    assert engines.sqlite_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert engines.sqlite_json({1: "x", "a": 2}) == '{"1":"x","a":2}'  # as json.dumps would
