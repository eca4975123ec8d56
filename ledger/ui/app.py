"""The Starlette application: routes, the one error page, static assets, the guard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ledger.errors import IntegrityError, LedgerError, NotFoundError, UsageError
from ledger.integrity import load_verifiers
from ledger.store import Ledger
from ledger.store.archive import Archive
from ledger.ui.config import UIConfig
from ledger.ui.jobs import VerifyJobs
from ledger.ui.render import respond
from ledger.ui.routes import audits, diff, experiments, find, integrity, media, records
from ledger.ui.security import Guard
from ledger.ui.state import UIState

STATIC = Path(__file__).with_name("static")


def _error_page(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/media/"):
        return Response(message, status_code=status, media_type="text/plain; charset=utf-8")
    return respond(
        request, "error.html", {"title": f"Error {status}", "status": status, "error": message}, status=status
    )


async def _ledger_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, UsageError):  # bad input in the URL or form
        status = 400
    elif isinstance(exc, IntegrityError):  # e.g. a proof asked for a row that was changed
        status = 409
    else:
        status = 500
    return _error_page(request, status, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_page(request, exc.status_code, str(exc.detail))


def _favicon(_: Request) -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def create_app(config: UIConfig, *, ledger: Ledger | None = None) -> Guard:
    """The UI as an ASGI app. Opens the ledger at ``config.db_url`` unless one is given
    (it is closed with the app only when the app opened it)."""
    verifiers = tuple(load_verifiers(config.verifier_keys))  # a bad key fails at start
    owned = ledger is None
    opened = ledger or Ledger.open(config.db_url)
    archive = Archive.open(config.archive_dir) if config.archive_dir else None
    ui = UIState(config=config, ledger=opened, archive=archive, jobs=VerifyJobs(), verifiers=verifiers)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ui.jobs.join()
            if owned:
                opened.close()

    app = Starlette(
        routes=[
            *records.routes,
            *diff.routes,
            *experiments.routes,
            *audits.routes,
            *find.routes,
            *integrity.routes,
            *media.routes,
            Route("/favicon.ico", _favicon),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={LedgerError: _ledger_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.ui = ui
    return Guard(app, config)
