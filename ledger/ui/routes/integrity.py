"""`/integrity`: the latest checkpoint, the log size, unsealed entries, and the Verify
action (full verification on a background thread, progress, the first divergence)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ledger.errors import NotFoundError
from ledger.integrity import ENTRY_TYPES
from ledger.integrity.note import parse_verifiers
from ledger.integrity.seal import latest_checkpoint, read_head
from ledger.store import browse
from ledger.ui.render import respond
from ledger.ui.state import UIState, state


def _status(ui: UIState) -> dict[str, Any]:
    with ui.ledger.reading() as conn:
        head = read_head(conn)
        cp = latest_checkpoint(conn)
    counts = browse.log_counts(ui.ledger, {name: et.table for name, et in ENTRY_TYPES.items()})
    return {
        "size": head.size if head else 0,
        "root": head.root.hex() if head else None,
        "checkpoint": None
        if cp is None
        else {
            "size": cp.size,
            "root": cp.root.hex(),
            "origin": cp.origin,
            "key_name": cp.key_name,
            "key_id": cp.key_id,
            "note": cp.note,
        },
        "entries": [
            {"entry_type": c.entry_type, "stored": c.stored, "sealed": c.sealed, "unsealed": c.unsealed}
            for c in counts
        ],
        "unsealed": sum(c.unsealed for c in counts),
        "key_pinned": bool(ui.verifiers),
    }


def integrity_page(request: Request) -> Response:
    ui = state(request)
    return respond(request, "integrity.html", {"title": "Integrity", "status": _status(ui)})


def start_verify(request: Request) -> Response:
    ui = state(request)
    verifiers = list(ui.verifiers)
    pinned = bool(verifiers)
    with ui.ledger.reading() as conn:
        head = read_head(conn)
        cp = latest_checkpoint(conn)
    if not verifiers and cp is not None:
        # No key given: check the signatures with the key stored beside the checkpoint.
        # That proves the rows match the log, not who signed it; the page says so.
        verifiers = parse_verifiers([cp.verifier])
    job = ui.jobs.start(ui.ledger, verifiers, total=head.size if head else 0, pinned=pinned)
    return RedirectResponse(f"/integrity/verify/{job.id}", status_code=303)


def verify_page(request: Request) -> Response:
    job = state(request).jobs.get(request.path_params["job_id"])
    if job is None:
        raise NotFoundError("no such verification (the server may have restarted)")
    return respond(request, "verify.html", {"title": "Verify", "job": job.to_dict()})


routes = [
    Route("/integrity", integrity_page),
    Route("/integrity.json", integrity_page),
    Route("/integrity/verify", start_verify, methods=["POST"]),
    Route("/integrity/verify/{job_id:str}.json", verify_page),
    Route("/integrity/verify/{job_id:str}", verify_page),
]
