"""One sentinel API key through every path, then a byte scan of everything written.

The key travels through the recording transport (Authorization header and an
``authentication`` task), a real `seedledger --debug proxy` subprocess (the same two
ways), `seedledger record` and `seedledger import` of files that carry it (``apiKey``
fields, an Authorization header, a signed output URL), an audit that reads it from
RUNWARE_API_KEY against a reference server that requires it, an audit against a server
that requires another key (401 errors), a refused document that contains it, and the
reports in all four formats, with debug logging on. Then it must not occur in: the
database (SQLite: every file byte incl. WAL; PostgreSQL: every column of every table as
text), the spool directories, the reports, the captured logs, or any stdout/stderr.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder, RecordingTransport
from ledger.cli import main
from ledger.store import Ledger
from tests.cli import COMMAND
from tests.conftest import SENTINEL_KEY


def _task(**extra: Any) -> dict[str, Any]:
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        "steps": 4,
        "scheduler": "Euler",
        "seed": 1234,
        **extra,
    }


AUTH_TASK = {"taskType": "authentication", "apiKey": SENTINEL_KEY}
HEADERS = {"Authorization": f"Bearer {SENTINEL_KEY}"}


def _document(seed: int) -> dict[str, Any]:
    """A `record`/import document carrying the key in an authentication task, an
    ``apiKey`` field and a signed output URL."""
    task = _task(seed=seed, apiKey=SENTINEL_KEY)
    out = str(uuid.uuid4())
    return {
        "request": [dict(AUTH_TASK), task],
        "response": {
            "data": [
                {
                    "taskType": "imageInference",
                    "taskUUID": task["taskUUID"],
                    "imageUUID": out,
                    "imageURL": f"https://cdn.example.com/{out}.png?X-Amz-Signature={SENTINEL_KEY}&token={SENTINEL_KEY}",
                    "seed": seed,
                }
            ]
        },
    }


def _cli(outputs: list[str], *args: str, env: dict[str, str] | None = None, debug: bool = True) -> Any:
    """The CLI in process; with --debug unless told (errors then show a traceback)."""
    result = CliRunner().invoke(main, ["--debug"] * debug + list(args), env=env, catch_exceptions=True)
    outputs.append(result.stdout + result.stderr + (repr(result.exception) if result.exception else ""))
    return result


def _scan_database(db_url: str) -> list[str]:
    """Where the sentinel is found in the database (empty: nowhere)."""
    token = SENTINEL_KEY.encode()
    found: list[str] = []
    if db_url.startswith("sqlite"):
        db_file = Path(db_url.split("///", 1)[1])
        files = [p for p in db_file.parent.glob(db_file.name + "*") if p.is_file()]
        assert files
        found += [str(p) for p in files if token in p.read_bytes()]
        return found
    with Ledger.open(db_url) as ledger, ledger.reading() as conn:
        tables = inspect(conn).get_table_names()
        assert "records" in tables
        rows = 0
        for table in tables:
            for (row,) in conn.execute(text(f'SELECT t::text FROM "{table}" t')):
                rows += 1
                if SENTINEL_KEY in row:
                    found.append(f"{table}: {row[:200]}")
        assert rows > 0
    return found


def test_a_sentinel_key_never_lands_anywhere(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    env = {"SEEDLEDGER_DATABASE_URL": db_url}
    spools = [tmp_path / "spool-transport", tmp_path / "spool-proxy"]

    with ReferenceServer.running(api_key=SENTINEL_KEY) as ref:
        # 1. The recording transport: header, and an authentication task in the body.
        recorder = Recorder(spools[0], db_url, allow_private_downloads=True, max_backoff=0.2)
        with httpx.Client(transport=RecordingTransport(recorder=recorder), headers=HEADERS) as client:
            assert client.post(ref.url, json=[_task(seed=11)]).status_code == 200
            with_auth_task = client.post(ref.url, json=[AUTH_TASK, _task(seed=12, numberResults=2)])
            assert with_auth_task.status_code == 200, with_auth_task.text
            refused = client.post(ref.url, json=[_task(model="nosuch:1@1", apiKey=SENTINEL_KEY)])
            assert refused.status_code == 400
        assert recorder.close(drain_timeout=30)

        # 2. A real proxy subprocess with debug logs; key by header and by auth task only.
        proxy = subprocess.Popen(
            [
                *COMMAND,
                "--debug",
                "--db",
                db_url,
                "proxy",
                "--upstream",
                ref.base_url,
                "--listen",
                "127.0.0.1:0",
                "--spool",
                str(spools[1]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proxy.stderr is not None
            banner = proxy.stderr.readline()
            match = re.search(r"listening on (http://\S+)", banner)
            assert match, banner
            with httpx.Client(base_url=match.group(1), timeout=30) as client:
                assert client.post("/v1", json=[_task(seed=21)], headers=HEADERS).status_code == 200
                assert client.post("/v1", json=[AUTH_TASK, _task(seed=22)]).status_code == 200
                wrong = client.post(
                    "/v1", json=[_task(seed=23)], headers={"Authorization": "Bearer nope-1234"}
                )
                assert wrong.status_code == 401
            proxy.send_signal(signal.SIGTERM)
            out, err = proxy.communicate(timeout=60)
        finally:
            if proxy.poll() is None:
                proxy.kill()
                proxy.communicate()
        outputs.append(banner + out + err)
        assert proxy.returncode in (0, -signal.SIGTERM), err

        # 3. `seedledger record`, and a refused document that carries the key.
        documents = tmp_path / "docs.jsonl"
        documents.write_text("\n".join(json.dumps(_document(31 + i)) for i in range(2)) + "\n")
        assert _cli(outputs, "record", str(documents), env=env).exit_code == 0
        bad = _document(40)
        bad["request"][1]["seed"] = "twelve"  # refused; the document still carries the key
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        refused_record = _cli(outputs, "record", str(tmp_path / "bad.json"), env=env, debug=False)
        assert refused_record.exit_code == 2, refused_record.output
        assert "seed" in refused_record.stderr
        assert _cli(outputs, "record", str(tmp_path / "bad.json"), env=env).exit_code == 1  # traceback

        # 4. `seedledger import` of a Runware log that carries it.
        imports = tmp_path / "imports"
        imports.mkdir()
        (imports / "runware.jsonl").write_text(json.dumps(_document(51)) + "\n")
        assert _cli(outputs, "--json", "import", str(imports), env=env).exit_code == 0

        # 5. Audit: the key from RUNWARE_API_KEY, to a server that requires it.
        audit_env = {**env, "RUNWARE_API_KEY": SENTINEL_KEY}
        audited = _cli(
            outputs,
            "--json",
            "audit",
            "--replay-backend",
            "runware",
            "--backend-url",
            ref.url,
            "--source",
            "hook",
            "--fail-on",
            "none",
            "--no-input-check",
            env=audit_env,
        )
        assert audited.exit_code == 0, audited.output
        assert json.loads(audited.stdout)["summary"]["outcomes"].get("error", 0) == 0

    # 6. A server that requires another key: every replay is a 401 error.
    with ReferenceServer.running(api_key="another-key-entirely") as other:
        denied = _cli(
            outputs,
            "--json",
            "audit",
            "--replay-backend",
            "runware",
            "--backend-url",
            other.url,
            "--source",
            "proxy",
            "--fail-on",
            "none",
            "--no-input-check",
            env=audit_env,
        )
        assert denied.exit_code == 0, denied.output
        run = json.loads(denied.stdout)
        assert run["summary"]["outcomes"] == {"error": 2}
        shown = _cli(outputs, "--json", "audit", "show", run["id"], env=env)
        assert "401" in shown.stdout or "auth" in shown.stdout.lower()

    # 7. Reports in every format, and the listings.
    reports = tmp_path / "reports"
    reports.mkdir()
    for fmt in ("html", "json", "csv", "md"):
        made = _cli(outputs, "report", "--format", fmt, "--out", str(reports / f"r.{fmt}"), env=env)
        assert made.exit_code == 0, made.output
    listed = _cli(outputs, "--json", "list", env=env)
    ids = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    # transport 1 + 2 (+ the refused task), proxy 2 (+ the 401 is not a generation), record 2, import 1
    assert len(ids) >= 8
    for rid in ids:
        assert _cli(outputs, "--json", "show", str(rid), env=env).exit_code == 0
    assert _cli(outputs, "diff", str(ids[0]), str(ids[-1]), env=env).exit_code == 0

    # The scan.
    assert _scan_database(db_url) == []
    token = SENTINEL_KEY.encode()
    spooled = [p for spool in spools for p in spool.rglob("*") if p.is_file()]
    assert spooled
    assert [str(p) for p in spooled if token in p.read_bytes()] == []
    written = list(reports.iterdir())
    assert len(written) == 4 and all(p.stat().st_size > 0 for p in written)
    assert [str(p) for p in written if token in p.read_bytes()] == []
    assert len(outputs) > 10
    assert [o[:300] for o in outputs if SENTINEL_KEY in o] == []
    assert caplog.records and SENTINEL_KEY not in caplog.text
    # The key never showed up masked to a prefix either.
    assert not any(SENTINEL_KEY[:12] in o for o in [*outputs, caplog.text])
