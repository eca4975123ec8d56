"""`/audits` (runs) and `/audits/RUN`: outcomes, a filter by outcome, and the original,
replay and difference heat map side by side for failures and drift."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ledger.audit import OUTCOMES, get_run, list_runs
from ledger.audit.history import results_page
from ledger.audit.store import fingerprinted_ids, result_counts
from ledger.errors import InvalidInputError
from ledger.store import browse
from ledger.ui.render import respond
from ledger.ui.state import state
from ledger.ui.views import record_summary, result_view

#: Outcomes whose evidence (original / replay / heat map) is shown.
EVIDENCE = frozenset({"fail", "expected-drift"})


def runs_page(request: Request) -> Response:
    runs = [r.to_dict() for r in list_runs(state(request).ledger, limit=100)]
    for run in runs:
        run["backend_url"] = None  # stored redacted; still nothing a reader needs here
    return respond(request, "audits.html", {"title": "Audit runs", "runs": runs})


def run_page(request: Request) -> Response:
    ui = state(request)
    run = get_run(ui.ledger, request.path_params["run_id"])
    outcomes = tuple(o for o in request.query_params.getlist("outcome") if o)
    unknown = [o for o in outcomes if o not in OUTCOMES]
    if unknown:
        raise InvalidInputError(f"outcome must be one of {', '.join(OUTCOMES)}")
    after = request.query_params.get("after", "")
    if after and not after.isdigit():
        raise InvalidInputError("after must be a record id")
    results, next_after = results_page(
        ui.ledger, run.id, outcomes=outcomes, after=int(after) if after else None, limit=ui.config.page_size
    )
    members = browse.records_by_id(ui.ledger, [r.record_id for r in results])
    with_image = fingerprinted_ids(ui.ledger, members)
    rows = []
    for result in results:
        view = result_view(result)
        record = members.get(result.record_id)
        view["record"] = record_summary(record, fingerprinted=record.id in with_image) if record else None
        view["evidence"] = result.outcome in EVIDENCE
        rows.append(view)
    data = {
        "title": f"Audit run {run.id}",
        "run": {
            "id": run.id,
            "status": run.status,
            "created_at": run.created_at,
            "finished_at": run.finished_at,
            "backend": run.backend,
            "selected_count": run.selected_count,
            "selection": run.selection,
            "policy": run.policy,
        },
        "counts": result_counts(ui.ledger, run.id),
        "outcomes": list(OUTCOMES),
        "selected_outcomes": list(outcomes),
        "results": rows,
        "next_after": next_after,
    }
    return respond(request, "audit.html", data)


routes = [
    Route("/audits", runs_page),
    Route("/audits.json", runs_page),
    Route("/audits/{run_id:str}.json", run_page),
    Route("/audits/{run_id:str}", run_page),
]
