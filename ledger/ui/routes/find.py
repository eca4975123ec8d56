"""`/find`: upload an image, get the records whose output matches it, with distances.

The body is read under the upload cap before it is parsed, and the image is decoded
by the fingerprint layer's safe decoder (the same as `seedledger find`)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.errors import InvalidInputError, LedgerError
from ledger.fingerprint import fingerprint_bytes
from ledger.reports._images import data_uri, thumbnail_png
from ledger.store import browse
from ledger.ui.render import respond
from ledger.ui.state import state
from ledger.ui.views import record_summary

DEFAULT_RADIUS = 8
MAX_MATCHES = 100


class TooLarge(InvalidInputError):
    pass


async def _capped_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"upload of {declared} bytes is over the cap of {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"upload is over the cap of {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def find_page(request: Request) -> Response:
    ui = state(request)
    data: dict[str, Any] = {
        "title": "Find",
        "max_upload_bytes": ui.config.max_upload_bytes,
        "query": None,
        "matches": [],
        "error": None,
    }
    if request.method == "GET":
        return respond(request, "find.html", data)
    cap = ui.config.max_upload_bytes
    status = 200
    try:
        # multipart framing is small; the cap is on the whole body
        body = await _capped_body(request, cap + 64 * 1024)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, receive).form(max_files=1, max_fields=4)
        try:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise InvalidInputError("choose an image file to upload (form field 'image')")
            content = await upload.read(cap + 1)
            if len(content) > cap:
                raise TooLarge(f"upload is over the cap of {cap} bytes")
            radius_text = str(form.get("radius") or DEFAULT_RADIUS)
            if not radius_text.isdigit():
                raise InvalidInputError("radius must be a whole number of bits")
            radius = int(radius_text)
            name = upload.filename or "upload"
        finally:
            await form.close()
        fp = await run_in_threadpool(fingerprint_bytes, content)
        matches = await run_in_threadpool(ui.ledger.find_image, fp, radius, limit=MAX_MATCHES)
        members = browse.records_by_id(ui.ledger, [m.record_id for m in matches])
        thumb = thumbnail_png(fp.thumbnail)
        data["query"] = {
            "name": name,
            "bytes": len(content),
            "width": fp.width,
            "height": fp.height,
            "file_sha256": fp.file_sha256,
            "radius": radius,
            "thumbnail": data_uri(thumb) if thumb else None,
        }
        data["matches"] = [
            {
                **m.comparison.to_dict(),
                "record": record_summary(members[m.record_id], fingerprinted=True)
                if m.record_id in members
                else {"id": m.record_id},
            }
            for m in matches
        ]
    except TooLarge as exc:
        data["error"], status = str(exc), 413
    except LedgerError as exc:
        data["error"], status = str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 400
    return respond(request, "find.html", data, status=status)


routes = [
    Route("/find", find_page, methods=["GET", "POST"]),
    Route("/find.json", find_page, methods=["GET", "POST"]),
]
