"""`seedledger record / list / show / db` end to end, as a subprocess."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.cli import invoke, seedledger
from tests.conftest import SENTINEL_KEY
from tests.factories import exchange, runware_result, runware_task

SEED_MATRIX = [0, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_seed_matrix_round_trips_through_the_cli(db_url: str, tmp_path: Path) -> None:
    lines = "\n".join(json.dumps(exchange(seed)) for seed in reversed(SEED_MATRIX))
    # The Runware range stops at 2^63-1, but the ledger stores whatever was used.
    done = seedledger("--db", db_url, "--json", "record", "-", input=lines)
    assert done.code == 0, done.err
    ids = [row["id"] for row in done.json_lines()]
    assert len(ids) == len(SEED_MATRIX)
    for rid, seed in zip(ids, reversed(SEED_MATRIX), strict=True):
        shown = seedledger("--db", db_url, "--json", "show", str(rid))
        assert shown.code == 0, shown.err
        assert shown.json()["seed"] == seed
        assert shown.json()["seed_origin"] == "request"
    listed = seedledger("--db", db_url, "--json", "list", "--order", "seed")
    assert [r["seed"] for r in listed.json_lines()] == SEED_MATRIX
    ranged = seedledger(
        "--db",
        db_url,
        "--json",
        "list",
        "--order",
        "seed",
        "--seed-min",
        str(2**53 + 1),
        "--seed-max",
        str(2**63),
    )
    assert [r["seed"] for r in ranged.json_lines()] == [2**53 + 1, 2**63 - 1, 2**63]


def test_number_results_without_request_seed_stores_each_returned_seed(sqlite_url: str) -> None:
    task = runware_task(numberResults=3)
    task.pop("scheduler")
    returned = [2**64 - 1, 17, 2**63]
    document = {
        "request": [{"taskType": "authentication", "apiKey": SENTINEL_KEY}, {**task, "apiKey": SENTINEL_KEY}],
        "response": {"data": [runware_result(task, s) for s in returned]},
    }
    done = seedledger("--db", sqlite_url, "--json", "record", "-", input=json.dumps(document))
    assert done.code == 0, done.err
    rows = seedledger("--db", sqlite_url, "--json", "list").json_lines()
    assert [(r["seed"], r["seed_origin"]) for r in rows] == [(s, "response") for s in returned]
    assert all(r["task_uuid"] == task["taskUUID"] for r in rows)
    raw = b"".join(p.read_bytes() for p in _sqlite_path(sqlite_url).parent.glob("ledger.db*"))
    assert SENTINEL_KEY.encode() not in raw
    assert SENTINEL_KEY not in done.out + done.err


def test_failed_task_is_recorded_with_its_error(sqlite_url: str) -> None:
    ok, bad = runware_task(seed=5), runware_task(seed=6, model="nope:1@1")
    document = {
        "request": [ok, bad],
        "response": {
            "data": [runware_result(ok, 5)],
            "errors": [{"code": "invalidModel", "message": "model not found", "taskUUID": bad["taskUUID"]}],
        },
    }
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(document)).code == 0
    failed = seedledger("--db", sqlite_url, "--json", "list", "--status", "failed").json_lines()
    assert [(r["model"], r["error_code"], r["error"]) for r in failed] == [
        ("nope:1@1", "invalidModel", "model not found")
    ]


def _state(url: str) -> str:
    rows = invoke("--db", url, "--json", "list", "--limit", "0")  # in process: not the command under test
    assert rows.code == 0, rows.err
    return hashlib.sha256(rows.out.encode()).hexdigest()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "invalid JSON"),
        ("", "empty"),
        (json.dumps({"request": [], "response": {}}), "no inference task"),
        (json.dumps(exchange(2**64)), "≥ 2^64"),
        (json.dumps(exchange(-3)), "negative"),
        (json.dumps({"request": [runware_task(seed=1.5)], "response": {"data": []}}), "float"),
        (json.dumps({"request": [runware_task(width="512")], "response": {"data": []}}), "width"),
        (json.dumps({"request": [runware_task(seed=True)], "response": {"data": []}}), "boolean"),
        (
            json.dumps(exchange(1)) + "\n" + json.dumps(exchange(2))[:-3] + "\n" + json.dumps(exchange(3)),
            "line 2",
        ),
        (json.dumps(exchange(1)) + "\n" + json.dumps(exchange(2**64)), "line 2"),
        (json.dumps({"request": [runware_task()], "response": {"data": "x"}}), "response.data"),
        (json.dumps({"request": [runware_task()], "response": {}, "extra": 1}), "unknown field"),
    ],
)
def test_malformed_input_fails_cleanly_and_writes_nothing(db_url: str, payload: str, message: str) -> None:
    # a ledger with a record in it, in process (the subprocess is for the command under test)
    assert invoke("--db", db_url, "record", "-", input=json.dumps(exchange(99))).code == 0
    before = _state(db_url)
    done = seedledger("--db", db_url, "record", "-", input=payload)
    assert done.code == 2, done.err
    error_lines = done.err.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("seedledger: error: ")
    assert message in error_lines[0]
    assert "Traceback" not in done.err
    assert _state(db_url) == before


def test_dry_run_validates_without_writing(sqlite_url: str) -> None:
    done = seedledger("--db", sqlite_url, "record", "--dry-run", "-", input=json.dumps(exchange(5)))
    assert done.code == 0 and "1 record(s) would be stored" in done.err
    # It shows what would be stored, not only how many.
    header, row = done.out.splitlines()
    assert header.split() == ["CREATED_AT", "MODEL", "SCHEDULER", "SEED", "SIZE", "STATUS", "PROMPT"]
    assert "runware:101@1" in row and " 5 " in row and "512x512" in row
    assert seedledger("--db", sqlite_url, "--json", "list").out == ""


def test_record_rerun_says_nothing_new_was_stored(sqlite_url: str) -> None:
    lines = json.dumps(exchange(5)) + "\n" + json.dumps(exchange(6)) + "\n"
    first = seedledger("--db", sqlite_url, "record", "-", input=lines)
    assert first.code == 0 and "recorded 2 new record(s), 0 already present" in first.err
    again = seedledger("--db", sqlite_url, "record", "-", input=lines)
    assert again.code == 0 and again.out == first.out
    assert "recorded 0 new record(s), 2 already present" in again.err


def test_unknown_record_and_parent_exit_3(sqlite_url: str) -> None:
    assert seedledger("--db", sqlite_url, "show", "12345").code == 3
    done = seedledger("--db", sqlite_url, "record", "--parent", "777", "-", input=json.dumps(exchange(5)))
    assert done.code == 3 and "777" in done.err
    assert seedledger("--db", sqlite_url, "--json", "list").out == ""


def test_bad_filter_values_are_usage_errors(sqlite_url: str) -> None:
    for args in (["--seed-min", "-1"], ["--seed", "1.5"], ["--since", "yesterday"]):
        done = seedledger("--db", sqlite_url, "list", *args)
        assert done.code == 2 and "Traceback" not in done.err


def test_table_output_escapes_terminal_sequences(sqlite_url: str) -> None:
    document = exchange(5, positivePrompt="evil \x1b[31mred\x1b]0;title\x07")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(document)).code == 0
    table = seedledger("--db", sqlite_url, "list").out
    assert "\x1b" not in table and "\x07" not in table
    assert "red" in table


def test_db_current_and_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert seedledger("--db", url, "db", "upgrade").code == 0
    current = seedledger("--db", url, "--json", "db", "current").json()
    assert current["up_to_date"] is True and current["current"] == current["head"]


def test_default_database_is_in_the_working_directory(tmp_path: Path) -> None:
    assert seedledger("record", "-", input=json.dumps(exchange(5)), cwd=tmp_path).code == 0
    assert (tmp_path / "seedledger.db").exists()
    env_db = tmp_path / "env.db"
    done = seedledger(
        "record",
        "-",
        input=json.dumps(exchange(6)),
        cwd=tmp_path,
        env={"SEEDLEDGER_DATABASE_URL": str(env_db)},
    )
    assert done.code == 0 and env_db.exists()


def test_show_answers_the_next_questions(sqlite_url: str, tmp_path: Path) -> None:
    from PIL import Image

    seedless = exchange(5, model="openai:gpt-image@1")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(seedless)).code == 0
    before = seedledger("--db", sqlite_url, "show", "1")
    assert before.code == 0, before.err
    assert "fingerprint  none: attach one with `seedledger fingerprint 1 FILE`" in before.out
    assert "seedless-model (error): the model takes no seed" in before.out
    assert "audits       never audited" in before.out
    assert "log          not sealed yet: run `seedledger seal`" in before.out
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "out.png")
    assert seedledger("--db", sqlite_url, "fingerprint", "1", str(tmp_path / "out.png")).code == 0
    key = tmp_path / "k.key"
    assert seedledger("keys", "generate", "--out", str(key), "--name", "t").code == 0
    assert seedledger("--db", sqlite_url, "seal", "--key-file", str(key)).code == 0
    after = seedledger("--db", sqlite_url, "--json", "show", "1").json()
    assert after["fingerprint"]["width"] == 32 and len(after["fingerprint"]["pixel_sha256"]) == 64
    assert "seedless-model" in [w["code"] for w in after["warnings"]]
    assert after["audits"] == []
    assert after["log"] == {
        "leaf_index": 0,
        "sealed_at": after["log"]["sealed_at"],
        "checkpoint_size": 1,
        "in_checkpoint": True,
    }
    text = seedledger("--db", sqlite_url, "show", "1").out
    assert "in the signed checkpoint of size 1: `seedledger prove 1`" in text


def test_list_json_returns_every_match_and_pages_explicitly(sqlite_url: str) -> None:
    from ledger.store import Ledger
    from tests.factories import new_record

    ledger = Ledger.open(sqlite_url, create=True)
    try:
        ids = ledger.add([new_record(seed=i, idempotency_key=f"k{i}") for i in range(130)])
    finally:
        ledger.close()
    every = seedledger("--db", sqlite_url, "--json", "list")
    assert every.code == 0, every.err
    assert [r["id"] for r in every.json_lines()] == ids  # not cut at 100
    page = seedledger("--db", sqlite_url, "--json", "list", "--limit", "50", "--after", str(ids[99]))
    assert [r["id"] for r in page.json_lines()] == ids[100:130]
    wrong = seedledger("--db", sqlite_url, "list", "--order", "seed", "--after", "3")
    assert wrong.code == 2 and "--after pages by id" in wrong.err
