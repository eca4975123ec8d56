"""`seedledger proxy` and `seedledger spool status|drain`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ledger import config
from ledger.cli.app import app, emit_mapping, info, main
from ledger.cli.options import archive_option

F = TypeVar("F", bound=Callable[..., Any])


def _bytes_option(name: str, default: int, help: str) -> Callable[[F], F]:
    return click.option(
        name, default=default, show_default=True, type=click.IntRange(min=1), metavar="BYTES", help=help
    )


@main.command()
@click.option(
    "--upstream", required=True, metavar="URL", help="The API to forward to, e.g. https://api.runware.ai"
)
@click.option(
    "--listen",
    default="127.0.0.1:8089",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on (port 0: any free port).",
)
@click.option(
    "--spool",
    "spool_dir",
    envvar=config.SPOOL.name,
    metavar="DIR",
    help="Spool directory [env SEEDLEDGER_SPOOL; default ./.seedledger-spool]",
)
@click.option(
    "--webhook-token",
    envvar=config.WEBHOOK_TOKEN.name,
    metavar="TOKEN",
    help="Accept webhook deliveries only at /_seedledger/webhook/TOKEN [env SEEDLEDGER_WEBHOOK_TOKEN; "
    "default: generated once into SPOOL/webhook-token, mode 0600].",
)
@click.option("--forward-webhooks", metavar="URL", help="Pass each recorded webhook delivery on to this URL.")
@click.option(
    "--client-token",
    envvar=config.PROXY_TOKEN.name,
    metavar="TOKEN",
    help="Require the header X-Seedledger-Token: TOKEN on every forwarded request "
    "[env SEEDLEDGER_PROXY_TOKEN; required to listen beyond loopback].",
)
@_bytes_option("--max-body", 16 * 1024 * 1024, "Largest request body (413 above).")
@_bytes_option("--max-webhook-body", 4 * 1024 * 1024, "Largest webhook delivery (413 above).")
@click.option(
    "--body-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a request body may take to arrive (408 after).",
)
@click.option(
    "--max-inflight-bodies",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Request bodies read at once (503 beyond).",
)
@click.option(
    "--drain-timeout",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds to land spooled records at shutdown.",
)
@click.option(
    "--ws-upstream",
    metavar="URL",
    help="WebSocket API to relay upgrades to "
    "[default: wss://ws-api.runware.ai; ws:// on a loopback --upstream]",
)
@archive_option("Also keep each fingerprinted output in this output archive")
@click.option(
    "--archive-max-bytes",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Cap the archive's total size (past it outputs are not archived; records still land).",
)
@click.option("--no-fingerprint", is_flag=True, help="Do not fingerprint outputs (no downloads).")
def proxy(
    upstream: str,
    listen: str,
    spool_dir: str | None,
    webhook_token: str | None,
    forward_webhooks: str | None,
    client_token: str | None,
    max_body: int,
    max_webhook_body: int,
    body_timeout: float,
    max_inflight_bodies: int,
    drain_timeout: float,
    ws_upstream: str | None,
    archive_dir: str | None,
    archive_max_bytes: int | None,
    no_fingerprint: bool,
) -> None:
    """Run the recording proxy: point a Runware SDK's base URL at it."""
    from ledger.capture.proxy_limits import ProxyLimits
    from ledger.capture.proxy_serve import serve
    from ledger.store.archive import Archive

    serve(
        upstream,
        listen,
        spool=spool_dir,
        db=app().db_url,
        webhook_token=webhook_token,
        forward_webhooks=forward_webhooks,
        client_token=client_token,
        limits=ProxyLimits(
            max_body=max_body,
            max_webhook_body=max_webhook_body,
            body_timeout=body_timeout,
            max_inflight_bodies=max_inflight_bodies,
        ),
        drain_timeout=drain_timeout,
        fingerprint=not no_fingerprint,
        announce=info,
        ws_upstream=ws_upstream,
        archive=Archive.open(archive_dir, max_total_bytes=archive_max_bytes) if archive_dir else None,
    )


@main.group()
def spool() -> None:
    """Inspect and drain the capture spool."""


_SPOOL_OPTION = click.option(
    "--spool",
    "spool_dir",
    envvar=config.SPOOL.name,
    metavar="DIR",
    help="Spool directory [env SEEDLEDGER_SPOOL; default ./.seedledger-spool]",
)


@spool.command()
@_SPOOL_OPTION
def status(spool_dir: str | None) -> None:
    """What the spool holds: entries and records waiting, torn tails, dead letters."""
    from ledger.capture.service import spool_status

    emit_mapping(spool_status(spool_dir), as_json=app().json)


@spool.command()
@_SPOOL_OPTION
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=float,
    help="Give up after this many seconds of database outage.",
)
@archive_option("Also keep each fingerprinted output in this output archive")
@click.option("--no-fingerprint", is_flag=True, help="Do not fingerprint outputs (no downloads).")
def drain(spool_dir: str | None, timeout: float, archive_dir: str | None, no_fingerprint: bool) -> None:
    """Land every spooled record in the ledger now (exactly once). Exits 4 when the
    database stayed unreachable, or when anything was skipped (damaged bytes, entries the
    database refused: kept in the spool's dead/ folder)."""
    from ledger.capture.service import drain as drain_spool
    from ledger.capture.service import drain_problem
    from ledger.store.archive import Archive

    archive = Archive.open(archive_dir) if archive_dir else None
    result = drain_spool(
        spool_dir, app().db_url, timeout=timeout, fingerprint=not no_fingerprint, archive=archive
    )
    emit_mapping(result, as_json=app().json)
    problem = drain_problem(result)
    if problem is not None:
        raise problem
