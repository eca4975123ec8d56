"""The output archive on the capture and import paths: the writer keeps each output it
fingerprinted (URL downloads and base64 bytes) under the fingerprint's file hash, a
full archive never costs a record, and `import --archive` keeps imported images."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.backends.reference.server import ReferenceServer
from ledger.capture import Recorder, record_generation
from ledger.capture.archiving import resolve_archive
from ledger.core.records import Source, Status
from ledger.store import Ledger
from ledger.store.archive import Archive
from tests.cli import COMMAND, seedledger
from tests.test_capture import AUTH, image_task, running_proxy
from tests.workflow_fixtures import a1111_png


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as server:
        yield server


def _recorder(tmp_path: Path, db_url: str, archive: Archive) -> Recorder:
    return Recorder(
        tmp_path / "spool", db_url, source=Source.PROXY, max_backoff=0.2,
        allow_private_downloads=True, archive=archive,
    )  # fmt: skip


def _send_through_proxy(reference: ReferenceServer, recorder: Recorder) -> dict[str, object]:
    """Two tasks through the proxy: one delivered by URL (downloaded by the writer),
    one as base64 bytes in the response. Returns the health seen after landing."""
    with (
        running_proxy(reference.base_url, recorder) as proxy,
        httpx.Client(base_url=proxy, headers=AUTH) as client,
    ):
        tasks = [image_task(seed=3), image_task(seed=4, outputType="base64Data", outputFormat="PNG")]
        response = client.post("/v1", content=json.dumps(tasks).encode())
        assert response.status_code == 200 and len(response.json()["data"]) == 2
        assert recorder.writer.drain(timeout=30)
        health: dict[str, object] = client.get("/_seedledger/health").json()
    assert recorder.close(drain_timeout=30)
    return health


def test_proxy_outputs_land_in_the_archive_under_the_fingerprint_file_hash(
    reference: ReferenceServer, db_url: str, tmp_path: Path
) -> None:
    archive = Archive(tmp_path / "archive")
    health = _send_through_proxy(reference, _recorder(tmp_path, db_url, archive))
    assert health["status"] == "ok" and health["archived"] == 2 and health["archive_failed"] == 0
    with Ledger.open(db_url) as ledger:
        records = ledger.query()
        prints = [ledger.fingerprint_of(r.id) for r in records]
    assert len(records) == 2 and all(r.status is Status.OK for r in records)
    for fp in prints:
        data = archive.get(fp.file_sha256)
        assert data is not None and hashlib.sha256(data).hexdigest() == fp.file_sha256
    stored = sorted(p.name for p in (tmp_path / "archive").glob("??/??/*"))
    assert stored == sorted(fp.file_sha256 for fp in prints)


def test_a_full_archive_still_records_and_says_so_in_health(
    reference: ReferenceServer, sqlite_url: str, tmp_path: Path
) -> None:
    archive = Archive(tmp_path / "archive", max_total_bytes=10)  # no output fits
    health = _send_through_proxy(reference, _recorder(tmp_path, sqlite_url, archive))
    assert health["status"] == "degraded"
    assert health["archived"] == 0 and health["archive_failed"] == 2
    assert any(str(p).startswith("archive failing: the archive") for p in health["problems"])  # type: ignore[attr-defined]
    assert "full" in str(health["archive_error"])
    with Ledger.open(sqlite_url) as ledger:
        records = ledger.query()
        assert len(records) == 2 and all(ledger.fingerprint_of(r.id) for r in records)
    assert not list((tmp_path / "archive").glob("??/??/*"))


def test_an_unwritable_archive_never_costs_a_record(sqlite_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.mkdir()
    png = _png()
    sha = hashlib.sha256(png).hexdigest()
    (blocker / sha[:2]).write_text("in the way")
    recorder = Recorder(tmp_path / "spool", sqlite_url, archive=Archive(blocker))
    record_generation(model="m", seed=1, output=png, recorder=recorder)
    assert recorder.writer.drain(timeout=30)
    status = recorder.status()
    assert status["archive_failed"] == 1 and "cannot write to the archive" in str(status["archive_error"])
    assert recorder.close()
    with Ledger.open(sqlite_url) as ledger:
        (record,) = ledger.query()
        assert ledger.fingerprint_of(record.id).file_sha256 == sha


def test_the_in_process_api_archives_with_seedledger_archive(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEDLEDGER_ARCHIVE", str(tmp_path / "from-env"))
    recorder = Recorder(tmp_path / "spool", sqlite_url)  # archive="env" by default
    png = _png()
    record_generation(model="m", seed=2, output=png, recorder=recorder)
    assert recorder.close()
    assert Archive(tmp_path / "from-env").get(hashlib.sha256(png).hexdigest()) == png
    assert resolve_archive(None) is None
    monkeypatch.delenv("SEEDLEDGER_ARCHIVE")
    assert resolve_archive("env") is None


def test_import_archive_keeps_imported_images(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = a1111_png(folder / "a.png"), a1111_png(folder / "b.png", color=(10, 200, 30))
    store = tmp_path / "archive"
    run = seedledger("--db", sqlite_url, "--json", "import", "--archive", str(store), str(folder))
    assert run.code == 0, run.err
    outcomes = {Path(o["path"]).name: o for o in run.json_lines()}
    assert {n: (o["status"], o["archived"]) for n, o in outcomes.items()} == {
        "a.png": ("imported", True),
        "b.png": ("imported", True),
    }
    assert "2 archived in" in run.err
    archive = Archive(store)
    with Ledger.open(sqlite_url) as ledger:
        for path in (first, second):
            (rid,) = outcomes[path.name]["record_ids"]
            fp = ledger.fingerprint_of(rid)
            assert fp.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert archive.get(fp.file_sha256) == path.read_bytes()
    # Re-importing into another archive (the flag wins over the variable): the file is
    # unchanged in the ledger, and archived because its record's fingerprint names it.
    rerun = seedledger(
        "--db", sqlite_url, "--json", "import", "--archive", str(tmp_path / "other"), str(first),
        env={"SEEDLEDGER_ARCHIVE": "unused"},
    )  # fmt: skip
    (again,) = rerun.json_lines()
    assert rerun.code == 0 and (again["status"], again["archived"]) == ("unchanged", True)
    assert Archive(tmp_path / "other").has(hashlib.sha256(first.read_bytes()).hexdigest())


def test_import_into_a_full_archive_keeps_the_record(ledger: Ledger, tmp_path: Path) -> None:
    from ledger.workflows import import_paths

    path = a1111_png(tmp_path / "c.png")
    summary = import_paths(ledger, [path], archive=Archive(tmp_path / "archive", max_total_bytes=1))
    (outcome,) = summary.outcomes
    assert outcome.status == "imported" and outcome.added == 1 and outcome.archived is False
    assert any("not archived: the archive" in n and "is full" in n for n in outcome.notes)
    assert (
        ledger.fingerprint_of(outcome.record_ids[0]).file_sha256
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def test_seedledger_proxy_archive_flag(reference: ReferenceServer, sqlite_url: str, tmp_path: Path) -> None:
    """The real `seedledger proxy --archive` subprocess on loopback; SIGTERM drains."""
    store = tmp_path / "archive"
    proxy = subprocess.Popen(
        [
            *COMMAND, "--db", sqlite_url, "proxy", "--upstream", reference.base_url,
            "--listen", "127.0.0.1:0", "--spool", str(tmp_path / "spool"), "--archive", str(store),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proxy.stderr is not None
    try:
        banner = proxy.stderr.readline()
        match = re.search(r"listening on (http://\S+)", banner)
        assert match, banner
        with httpx.Client(base_url=match.group(1), headers=AUTH) as client:
            tasks = [image_task(seed=9, outputType="base64Data", outputFormat="PNG"), image_task(seed=10)]
            assert client.post("/v1", json=tasks).status_code == 200
            deadline = time.monotonic() + 30
            while client.get("/_seedledger/health").json()["archived"] < 2:
                assert time.monotonic() < deadline, "outputs never archived"
                time.sleep(0.05)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(30)
    finally:
        proxy.kill()
        proxy.wait()
        proxy.stderr.close()
    archive = Archive(store)
    with Ledger.open(sqlite_url) as ledger:
        prints = [ledger.fingerprint_of(r.id) for r in ledger.query()]
    assert len(prints) == 2
    for fp in prints:
        data = archive.get(fp.file_sha256)
        assert data is not None and hashlib.sha256(data).hexdigest() == fp.file_sha256


def test_archive_keep_checks_the_fingerprint_hash_and_the_cap_counts_its_writes(tmp_path: Path) -> None:
    from ledger.errors import InvalidInputError
    from ledger.store.archive import ArchiveFullError

    archive = Archive(tmp_path / "a", max_total_bytes=250)
    one, two, three = b"1" * 100, b"2" * 100, b"3" * 100
    with pytest.raises(InvalidInputError, match="not the fingerprint's file hash"):
        archive.keep(one, hashlib.sha256(two).hexdigest())
    assert not archive.has(hashlib.sha256(one).hexdigest())
    archive.keep(one, hashlib.sha256(one).hexdigest())
    archive.keep(two, hashlib.sha256(two).hexdigest())
    with pytest.raises(ArchiveFullError, match="is full"):
        archive.keep(three, hashlib.sha256(three).hexdigest())
    archive.keep(one, hashlib.sha256(one).hexdigest())  # already there: no new bytes, no refusal
    assert archive.total_bytes() == 200
    # A new process scans what is there once, then counts its own writes.
    assert (
        Archive(tmp_path / "a", max_total_bytes=250).put(b"4" * 50) == hashlib.sha256(b"4" * 50).hexdigest()
    )
