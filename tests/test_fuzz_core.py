"""Fuzzing the parsers that read outside data in the core: every input gets a result or
a LedgerError with a message — never another exception, never a partial write."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ledger.core.canonical import canonical_json
from ledger.core.documents import parse_documents
from ledger.core.redaction import redact
from ledger.core.runware import records_from_exchange
from ledger.core.seeds import parse_seed
from ledger.errors import LedgerError
from ledger.store import Ledger
from tests.conftest import SENTINEL_KEY

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
task_keys = st.sampled_from(
    [
        "taskType",
        "taskUUID",
        "model",
        "positivePrompt",
        "seed",
        "numberResults",
        "width",
        "height",
        "steps",
        "CFGScale",
        "scheduler",
        "outputFormat",
        "apiKey",
        "negativePrompt",
    ]
)
tasks = st.dictionaries(task_keys, json_scalars, max_size=10).map(
    lambda t: {"taskType": "imageInference", "taskUUID": "t", "model": "m:1@1", **t}
)
results = st.dictionaries(
    st.sampled_from(["taskUUID", "imageUUID", "imageURL", "seed", "cost", "status", "imageBase64Data"]),
    json_scalars,
    max_size=6,
)


@given(json_values)
def test_parse_seed_accepts_or_refuses_cleanly(value: Any) -> None:
    try:
        seed = parse_seed(value)
    except LedgerError as exc:
        assert str(exc)
    else:
        assert 0 <= seed < 2**64


@given(tasks, st.lists(results, max_size=4), st.lists(results, max_size=2))
def test_runware_exchange_maps_or_refuses_cleanly(task: dict, data: list, errors: list) -> None:
    for item in (*data, *errors):
        item.setdefault("taskUUID", "t")
    try:
        records = records_from_exchange([task], {"data": data, "errors": errors})
    except LedgerError as exc:
        assert str(exc)
        return
    for record in records:
        assert record.seed is None or 0 <= record.seed < 2**64
        assert "apiKey" not in record.params


@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_record_documents_parse_or_refuse_cleanly(text: str) -> None:
    try:
        parse_documents(text)
    except LedgerError as exc:
        assert str(exc) and "\n" not in str(exc).strip()


@given(json_values)
def test_canonical_json_is_stable_or_refuses(value: Any) -> None:
    try:
        first = canonical_json(value)
    except LedgerError:
        return
    assert canonical_json(json.loads(first)) == first


@given(json_values)
def test_redaction_never_keeps_a_planted_secret(value: Any) -> None:
    planted = {"nested": value, "apiKey": SENTINEL_KEY, "note": f"Bearer {SENTINEL_KEY}"}
    assert SENTINEL_KEY not in json.dumps(redact(planted, (SENTINEL_KEY,)))


@given(st.lists(tasks, min_size=1, max_size=3), st.lists(results, max_size=4))
def test_a_batch_is_stored_whole_or_not_at_all(tmp_path_factory, task_list: list, data: list) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "l.db"
    with Ledger.open(str(path)) as ledger:
        for i, task in enumerate(task_list):
            task["taskUUID"] = f"t{i}"
        for item in data:
            item["taskUUID"] = "t0"
        try:
            records = records_from_exchange(task_list, {"data": data})
            ledger.add(records)
        except LedgerError:
            assert ledger.count() == 0
        else:
            assert ledger.count() == len({r.idempotency_key for r in records})
