"""`/` (records: gallery and table, keyset pages, URL filters) and `/records/ID`."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.audit.history import record_history
from ledger.audit.store import fingerprinted_ids
from ledger.core.warnings import warnings_for
from ledger.errors import InvalidInputError, NotFoundError
from ledger.integrity import prove
from ledger.reports._media import thumbnail_caption
from ledger.store import browse
from ledger.ui.render import respond
from ledger.ui.routes.media import SERVED_TYPES
from ledger.ui.state import state
from ledger.ui.views import (
    environment_of,
    filter_params,
    record_detail,
    record_filter,
    record_summary,
    result_view,
)
from ledger.workflows import lineage


def _int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise InvalidInputError(f"{name} must be a record id")
    return int(value)


def records_page(request: Request) -> Response:
    ui = state(request)
    params = filter_params(request.query_params)
    view = "gallery" if request.query_params.get("view") == "gallery" else "table"
    page = browse.record_page(
        ui.ledger, record_filter(params), before=_int(request, "before"), limit=ui.config.page_size
    )
    with_image = fingerprinted_ids(ui.ledger, [r.id for r in page.records])
    data = {
        "title": "Records",
        "filters": params,
        "view": view,
        "before": request.query_params.get("before"),
        "next_before": page.next_before,
        "records": [record_summary(r, fingerprinted=r.id in with_image) for r in page.records],
    }
    return respond(request, "records.html", data)


def _lineage(ledger: Any, record_id: int) -> dict[str, Any]:
    tree = lineage(ledger, record_id)
    ancestors: list[dict[str, Any]] = []
    node = tree.root
    while node.record.id != record_id:
        ancestors.append(
            {"id": node.record.id, "seed": str(node.record.seed) if node.record.seed is not None else None}
        )
        node = next(c for c in node.children if _contains(c, record_id))
    children = [{"id": c.record.id, "changes": [ch.label for ch in c.changes]} for c in node.children]
    return {"ancestors": ancestors, "children": children, "truncated": tree.truncated}


def _contains(node: Any, record_id: int) -> bool:
    return node.record.id == record_id or any(_contains(c, record_id) for c in node.children)


def record_page(request: Request) -> Response:
    ui = state(request)
    record_id = int(request.path_params["record_id"])
    record = ui.ledger.get(record_id)
    fingerprint = None
    with contextlib.suppress(NotFoundError):  # a record without one shows no image
        fingerprint = ui.ledger.fingerprint_of(record_id)
    # Only image types are served from the archive; other media show their thumbnail.
    archived = bool(
        fingerprint
        and (fingerprint.media_type or "").lower() in SERVED_TYPES
        and ui.archive
        and ui.archive.has(fingerprint.file_sha256)
    )
    leaf = browse.leaf_index_of(ui.ledger, "record", record_id)
    data = {
        "title": f"Record {record_id}",
        "record": record_detail(record),
        "image": {
            "kind": "original" if archived else ("thumbnail" if fingerprint else None),
            "file_sha256": fingerprint.file_sha256 if fingerprint else None,
            "pixel_sha256": fingerprint.pixel_sha256 if fingerprint else None,
            "width": fingerprint.width if fingerprint else None,
            "height": fingerprint.height if fingerprint else None,
            "version": fingerprint.version if fingerprint else None,
            "modality": fingerprint.modality if fingerprint else None,
            "shows": thumbnail_caption(fingerprint.modality if fingerprint else None),
        },
        "warnings": [
            w.to_dict() | {"explanation": w.explanation, "blocks_replay": w.blocks_replay}
            for w in warnings_for(record)
        ],
        "environment": environment_of(record, ui.ledger.environment_of(record_id)),
        "audits": [result_view(r) for r in record_history(ui.ledger, record_id)],
        "log": {"leaf_index": leaf, "sealed": leaf is not None},
        "lineage": _lineage(ui.ledger, record_id),
        "siblings": [record_summary(r) for r in browse.siblings(ui.ledger, record)],
    }
    return respond(request, "record.html", data)


def proof(request: Request) -> Response:
    """The record's inclusion proof against the latest checkpoint, as a download
    that `seedledger verify-proof` checks offline."""
    record_id = int(request.path_params["record_id"])
    data = prove(state(request).ledger, record_id)
    return Response(
        json.dumps(data, indent=2) + "\n",
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="record-{record_id}.proof.json"'},
    )


routes = [
    Route("/", records_page),
    Route("/records.json", records_page),
    Route("/records/{record_id:int}", record_page),
    Route("/records/{record_id:int}.json", record_page),
    Route("/records/{record_id:int}/proof.json", proof),
]
