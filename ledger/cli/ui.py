"""`seedledger ui`: the read-only web UI."""

from __future__ import annotations

import click

from ledger.cli.app import app, info, main
from ledger.cli.options import archive_option
from ledger.config import UI_TOKEN


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:8765",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on; anything but loopback needs --token (port 0: any free port).",
)
@archive_option("Output archive to show originals from")
@click.option(
    "--token",
    envvar=UI_TOKEN.name,
    metavar="TOKEN",
    help="Require this token on every request (?token=, Bearer header) [env SEEDLEDGER_UI_TOKEN].",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VERIFIER",
    help="Trusted checkpoint key (or a file of them) for Verify, as `verify --key`; repeatable.",
)
def ui(listen: str, archive_dir: str | None, token: str | None, keys: tuple[str, ...]) -> None:
    """Browse the ledger in a web browser: records, sweeps, diffs, audits, find, integrity."""
    from ledger.ui import UIConfig
    from ledger.ui.config import parse_listen
    from ledger.ui.server import serve

    host, port = parse_listen(listen)
    config = UIConfig(
        db_url=app().db_url, archive_dir=archive_dir, token=token or None, verifier_keys=keys, host=host
    )
    serve(config, port, announce=info)
