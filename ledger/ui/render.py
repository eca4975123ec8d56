"""One way to answer a page: its Jinja template, or its JSON twin (path ending .json).

Templates autoescape everything (outside strings never become markup) and refuse
undefined names. The page data passed to both is plain JSON-able values: seeds are
decimal strings (a 64-bit seed does not survive a JavaScript number).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ledger.core.text import strip_controls

TEMPLATES = Path(__file__).with_name("templates")


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return None  # binary columns (thumbnails) have their own image URLs
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(value: Any) -> str:
    """Outside text for the page: control characters removed (escaping is Jinja's)."""
    return strip_controls("" if value is None else str(value))


#: Longer strings (base64 payloads of older records) are cut on the page.
MAX_SHOWN = 2000


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[:200] + f"… ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


def _pretty(value: Any) -> str:
    return _text(json.dumps(_shorten(jsonable(value)), indent=2, ensure_ascii=False, sort_keys=True))


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if math.isfinite(value) else "∞"
    return str(value)


def query_url(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """``path`` with ``params`` (minus empty values) and ``changes`` applied."""
    merged = {**params, **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, str(v)) for v in values if v not in (None, ""))
    return path + ("?" + urlencode(pairs) if pairs else "")


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["text"] = _text
environment.filters["pretty"] = _pretty
environment.filters["number"] = _number
environment.globals["query_url"] = query_url


def wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


def respond(request: Request, template: str, data: Mapping[str, Any], *, status: int = 200) -> Response:
    """The page as HTML, or its data as JSON when the path ends in ``.json``."""
    if wants_json(request):
        body = json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False)
        return Response(body, status_code=status, media_type="application/json")
    path = request.url.path
    twin = ("/records" if path == "/" else path.rstrip("/")) + ".json"
    # The access token (if it came in the query) is never written into a page.
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    if query:
        twin += "?" + urlencode(query)
    html = environment.get_template(template).render(**data, request_path=path, json_url=twin)
    return HTMLResponse(html, status_code=status)
