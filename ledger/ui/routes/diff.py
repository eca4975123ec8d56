"""`/diff?a=…&b=…`: two records side by side with the parameter table of `seedledger diff`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.audit.store import fingerprinted_ids
from ledger.errors import InvalidInputError, NotFoundError
from ledger.fingerprint import compare as compare_fingerprints
from ledger.ui.render import respond
from ledger.ui.state import state
from ledger.ui.views import record_summary
from ledger.workflows import compare


def _id(request: Request, name: str) -> int:
    value = request.query_params.get(name, "").strip()
    if not value.isdigit():
        raise InvalidInputError(f"{name} must be a record id (/diff?a=ID&b=ID)")
    return int(value)


def diff_page(request: Request) -> Response:
    ui = state(request)
    a_id, b_id = _id(request, "a"), _id(request, "b")
    a, b = ui.ledger.get(a_id), ui.ledger.get(b_id)
    result = compare(
        a,
        b,
        environment_a=ui.ledger.environment_of(a_id),
        environment_b=ui.ledger.environment_of(b_id),
    ).as_dict()
    with_image = fingerprinted_ids(ui.ledger, [a_id, b_id])
    images: dict[str, Any] | None = None
    if with_image == {a_id, b_id}:
        try:
            images = compare_fingerprints(
                ui.ledger.fingerprint_of(a_id), ui.ledger.fingerprint_of(b_id)
            ).to_dict()
        except NotFoundError:
            images = None
    data = {
        "title": f"Diff {a_id} → {b_id}",
        "a": record_summary(a, fingerprinted=a_id in with_image),
        "b": record_summary(b, fingerprinted=b_id in with_image),
        "diff": result,
        "images": images,
    }
    return respond(request, "diff.html", data)


routes = [Route("/diff", diff_page), Route("/diff.json", diff_page)]
