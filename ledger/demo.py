"""`seedledger demo`: the whole story on embedded defaults, with no network and no key.

A new SQLite ledger in DIR, the bundled reference backend on a loopback port and a
freshly generated signing key. The demo sends production traffic through the httpx
recording transport and through the recording proxy (a real `seedledger proxy`
subprocess), over REST and over WebSocket (the Runware SDKs' default transport), runs
a seed sweep and a CFG sweep, seals the log, lets the provider
silently update one model, audits every record, verifies the log and writes HTML and
JSON compliance reports. The reference backend is a procedural stand-in for a
generation API, made for demos and tests; it is not a model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect

from ledger.audit import AuditOptions, Policy, Selection, run_audit
from ledger.backends.reference.server import ReferenceServer
from ledger.capture import recording_client
from ledger.errors import LedgerError, UsageError
from ledger.integrity import load_verifiers, seal, verify
from ledger.integrity.note import Signer, write_private_key
from ledger.reports import write_report
from ledger.store import Ledger, RecordFilter
from ledger.workflows.sweep import parse_number_range, parse_seed_range, plan_sweep, sweep

__all__ = ["DemoResult", "run_demo"]

MARKER = ".seedledger-demo"
#: The model whose provider "silently updates" it between recording and auditing.
UPDATED_MODEL = "runware:101@1"
STABLE_MODEL = "civitai:4384@128713"
SEEDLESS_MODEL = "recraft:1@1"
SIZE = 384


@dataclass
class DemoResult:
    directory: Path
    database: Path
    key_file: Path
    report_html: Path
    report_json: Path
    checkpoint_file: Path
    asset: Path
    contact_sheets: list[Path] = field(default_factory=list)
    records: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    verified: bool = False
    seconds: float = 0.0


def _task(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": model,
        "positivePrompt": prompt,
        "width": SIZE,
        "height": SIZE,
        "steps": 24,
        "CFGScale": 6.5,
        "outputFormat": "PNG",
        "outputType": "base64Data",
    }
    task.update(extra)
    return task


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(directory: Path, force: bool) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise UsageError(f"{directory} is not empty and is not a demo directory; choose another --dir")
        if not force:
            raise UsageError(f"{directory} holds an earlier demo; pass --force to replace it")
        shutil.rmtree(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MARKER).write_text("made by `seedledger demo`; --force may delete this directory\n")
    except OSError as exc:
        raise UsageError(f"cannot use {directory} for the demo: {exc.strerror or exc}") from None


def _wait_for(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LedgerError(f"the recording proxy exited early with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise LedgerError("the recording proxy did not start within 30 s")


async def _websocket_traffic(url: str, tasks: list[dict[str, Any]]) -> tuple[int, str]:
    """Tasks over WebSocket: with the official ``runware-sdk`` when it is installed,
    else with a plain ``websockets`` client. Returns (outputs received, client used)."""
    try:
        from runware import RuntimeDependencies, Runware  # noqa: F401  (only runware-sdk has both)
    except ImportError:
        return await _plain_websocket_traffic(url, tasks), "websockets"
    async with Runware(api_key="demo-key-not-a-secret", ws_base_url=url) as client:
        answers = await asyncio.gather(*(client.run(dict(task)) for task in tasks))
    return sum(len(results) for results in answers), "runware-sdk"


async def _plain_websocket_traffic(url: str, tasks: list[dict[str, Any]]) -> int:
    """As Runware's SDKs do it: authenticate, send the tasks in one frame, collect
    results by taskUUID, poll ``getResponse`` for async ones."""
    wanted = {t["taskUUID"]: int(t.get("numberResults", 1)) for t in tasks}
    got: dict[str, set[str]] = {key: set() for key in wanted}
    async with ws_connect(url, max_size=None) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": "demo-key-not-a-secret"}]))
        await ws.recv()
        await ws.send(json.dumps(tasks))
        deadline = time.monotonic() + 60
        while any(len(got[k]) < n for k, n in wanted.items()) and time.monotonic() < deadline:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:  # async tasks: ask for their results
                missing = [k for k, n in wanted.items() if len(got[k]) < n]
                polls = [{"taskType": "getResponse", "taskUUID": k} for k in missing]
                await ws.send(json.dumps(polls))
                continue
            for item in frame.get("data", []):
                if item.get("taskUUID") in got and item.get("imageUUID"):
                    got[item["taskUUID"]].add(item["imageUUID"])
    return sum(len(v) for v in got.values())


def run_demo(directory: Path, *, force: bool = False, say: Callable[[str], None] = print) -> DemoResult:
    started = time.monotonic()
    directory = directory.resolve()
    _prepare(directory, force)
    db = directory / "seedledger.db"
    url = f"sqlite:///{db}"
    key_file = directory / "signing.key"
    result = DemoResult(
        directory=directory,
        database=db,
        key_file=key_file,
        report_html=directory / "report.html",
        report_json=directory / "report.json",
        checkpoint_file=directory / "checkpoint-before-audit.txt",
        asset=directory / "approved-asset.png",
    )

    def step(n: int, text: str) -> None:
        say(f"[{n}/9] {text}")

    step(1, f"new ledger {db}, signing key {key_file.name}")
    signer = Signer.generate("seedledger-demo")
    write_private_key(key_file, signer)
    key_file.with_name(key_file.name + ".pub").write_text(f"{signer.verifier}\n")
    Ledger.open(url).close()

    with ReferenceServer.running() as server:
        say(f"      reference backend (not a model) at {server.url}")
        step(2, "production traffic through the httpx recording transport")
        hook_tasks = [
            _task(UPDATED_MODEL, "a lighthouse at dusk", seed=1234, scheduler="DPM++ 2M Karras"),
            _task(UPDATED_MODEL, "a lighthouse at dawn", scheduler="DPM++ 2M Karras"),  # unseeded
            _task(STABLE_MODEL, "a red fox in snow", seed=42, scheduler="DPM++ 2M Karras", numberResults=3),
            _task(STABLE_MODEL, "a red fox in snow", seed=77, scheduler="Euler a"),  # stochastic
            _task(SEEDLESS_MODEL, "a poster of a fox", seed=5),  # the model ignores seeds
            _task("acme:1@1", "this task fails: unknown model", seed=9),
        ]
        with recording_client(
            spool=str(directory / "spool-hook"),
            db=url,
            recorder_options={"trusted_hosts": ("127.0.0.1",)},
            headers={"Authorization": "Bearer demo-key-not-a-secret"},
            timeout=60,
        ) as client:
            response = client.post(server.url, json=hook_tasks)
            body = response.json()
            # The first output becomes the "approved asset" a reviewer later asks about.
            first = next(item for item in body["data"] if item.get("imageBase64Data"))
            result.asset.write_bytes(base64.b64decode(first["imageBase64Data"]))
            say(
                f"      {len(hook_tasks)} tasks -> HTTP {response.status_code}, "
                f"{len(body.get('data', []))} outputs, {len(body.get('errors', []))} error"
            )

        step(3, "more traffic through the recording proxy (`seedledger proxy`)")
        port = _free_port()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ledger",
                "--db",
                url,
                "proxy",
                "--upstream",
                server.base_url,
                "--listen",
                f"127.0.0.1:{port}",
                "--spool",
                str(directory / "spool-proxy"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/_seedledger/health", proxy, time.monotonic() + 30)
            proxy_tasks = [
                _task(STABLE_MODEL, "a harbour at night", seed=2024, scheduler="DPM++ 2M Karras"),
                _task(STABLE_MODEL, "a harbour at night", seed=2025, scheduler="DPM++ 2M SDE Karras"),
            ]
            reply = httpx.post(
                f"http://127.0.0.1:{port}/v1",
                json=proxy_tasks,
                headers={"Authorization": "Bearer demo-key-not-a-secret"},
                timeout=60,
            )
            say(f"      {len(proxy_tasks)} tasks -> HTTP {reply.status_code} via the proxy")
            socket_tasks = [
                _task(STABLE_MODEL, "a harbour at night, over WebSocket", seed=2026, numberResults=2),
                _task(STABLE_MODEL, "a harbour at night, over WebSocket", seed=2027, deliveryMethod="async"),
            ]
            outputs, client = asyncio.run(_websocket_traffic(f"ws://127.0.0.1:{port}/v1", socket_tasks))
            say(f"      {len(socket_tasks)} tasks -> {outputs} outputs over the proxy's WebSocket ({client})")
        finally:
            proxy.send_signal(signal.SIGTERM)  # graceful: drains pending records
            try:
                proxy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proxy.kill()

        with Ledger.open(url) as ledger:
            step(4, "a seed sweep and a CFG sweep on the reference backend")
            base = _task(STABLE_MODEL, "a lighthouse on a cliff", scheduler="DPM++ 2M Karras")
            for label, plan in (
                (
                    "seed sweep 100..107",
                    plan_sweep(base, backend="reference", seeds=parse_seed_range("100..107")),
                ),
                (
                    "CFG sweep 3..8:1 at seed 100",
                    plan_sweep(base, backend="reference", seed=100, cfg=parse_number_range("3..8:1")),
                ),
            ):
                report = sweep(
                    ledger,
                    plan,
                    backend_name="reference",
                    backend_url=server.url,
                    out_dir=directory / "sweeps" / plan.kind,
                    name=label,
                )
                result.contact_sheets.append(report.contact_html)
                say(
                    f"      {label}: {len(report.outcome.record_ids)} records, contact sheet "
                    f"{report.contact_html.relative_to(directory)}"
                )

            step(5, "seal the log and keep the checkpoint outside the database")
            sealed = seal(ledger, signer, origin="demo.seedledger.local/log")
            assert sealed.checkpoint is not None
            result.checkpoint_file.write_text(sealed.checkpoint.note)
            say(f"      sealed {sealed.sealed} entries; tree size {sealed.size}")

            step(6, f"the provider silently updates {UPDATED_MODEL}")
            server.set_model_revision({UPDATED_MODEL: 2})

            step(7, "audit: replay every record and score it against its original")
            outcome = asyncio.run(
                run_audit(
                    ledger,
                    Selection(where=RecordFilter()),
                    AuditOptions(backend="reference", backend_url=server.url, concurrency=4),
                    Policy(),
                )
            )
            result.run_id = outcome.run.id
            result.outcomes = dict(outcome.outcomes)
            say("      " + ", ".join(f"{n} {name}" for name, n in sorted(result.outcomes.items())))

            step(8, "seal the audit results and verify the whole log")
            seal(ledger, signer)
            check = verify(ledger, load_verifiers(signer=signer), against=result.checkpoint_file.read_text())
            result.verified = check.ok
            say(f"      verify: {'ok' if check.ok else 'FAILED'}; consistent with the saved checkpoint")

            step(9, "compliance reports")
            write_report(ledger, RecordFilter(), "html", result.report_html)
            write_report(ledger, RecordFilter(), "json", result.report_json)
            result.records = ledger.count()
    result.seconds = time.monotonic() - started
    return result
