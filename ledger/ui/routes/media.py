"""Images: stored thumbnails, video frame strips, replay thumbnails and heat maps (re-encoded from decoded
pixels by the reports layer, so only pixels reach the browser) and archived originals."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.audit.history import result_by_id
from ledger.errors import NotFoundError
from ledger.reports._images import heat_map, thumbnail_png
from ledger.reports._media import strip_png_b64, strip_png_of
from ledger.store import browse
from ledger.ui.state import state

#: Archived files are served only as these types (the fingerprint decoders' formats).
SERVED_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"})


def _png(data: bytes | None, what: str) -> Response:
    if data is None:
        raise NotFoundError(f"no {what}")
    return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=3600"})


def thumbnail(request: Request) -> Response:
    record_id = int(request.path_params["record_id"])
    return _png(thumbnail_png(browse.thumbnail_of(state(request).ledger, record_id)), "thumbnail")


def original(request: Request) -> Response:
    ui = state(request)
    record_id = int(request.path_params["record_id"])
    fp = ui.ledger.fingerprint_of(record_id)
    data = ui.archive.get(fp.file_sha256) if ui.archive else None
    media_type = (fp.media_type or "").lower()
    if data is None or media_type not in SERVED_TYPES:
        raise NotFoundError(f"the original of record {record_id} is not archived")
    # sandbox: should a browser ever render it as a document, nothing in it runs.
    headers = {"content-security-policy": "default-src 'none'; sandbox", "content-disposition": "inline"}
    return Response(data, media_type=media_type, headers=headers)


def strip(request: Request) -> Response:
    """A video record's sampled frames (at most STRIP_TILES of them, evenly spaced)."""
    record_id = int(request.path_params["record_id"])
    fp = state(request).ledger.fingerprint_of(record_id)
    made = strip_png_of(fp.detail.strip) if fp.modality == "video" and fp.detail is not None else None
    return _png(made[0] if made else None, "frame strip")


def replay_strip(request: Request) -> Response:
    """The replay's sampled frames an audit of a video kept (at most STRIP_TILES)."""
    result = result_by_id(state(request).ledger, int(request.path_params["result_id"]))
    made = strip_png_b64((result.replay or {}).get("frame_strip_png")) if result else None
    return _png(made[0] if made else None, "replay frame strip")


def replay(request: Request) -> Response:
    result = result_by_id(state(request).ledger, int(request.path_params["result_id"]))
    return _png(thumbnail_png(result.replay_thumbnail) if result else None, "replay thumbnail")


def heat(request: Request) -> Response:
    ui = state(request)
    result = result_by_id(ui.ledger, int(request.path_params["result_id"]))
    if result is None:
        raise NotFoundError("no such audit result")
    made = heat_map(browse.thumbnail_of(ui.ledger, result.record_id), result.replay_thumbnail)
    return _png(made[0] if made else None, "difference heat map")


routes = [
    Route("/media/thumb/{record_id:int}.png", thumbnail),
    Route("/media/original/{record_id:int}", original),
    Route("/media/strip/{record_id:int}.png", strip),
    Route("/media/replay/{result_id:int}.png", replay),
    Route("/media/replay-strip/{result_id:int}.png", replay_strip),
    Route("/media/heat/{result_id:int}.png", heat),
]
