"""Serving the UI with uvicorn on a socket bound here (so port 0 can be announced)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from ledger.errors import UsageError
from ledger.ui.app import create_app
from ledger.ui.config import UIConfig


def serve(config: UIConfig, port: int, *, announce: Callable[[str], None]) -> None:
    """Run until SIGINT/SIGTERM."""
    import uvicorn

    asgi = create_app(config)  # opens the ledger first: a bad --db fails before binding
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # IPPROTO_TCP: asyncio then sets TCP_NODELAY (no delayed-ACK wait per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {config.host}:{port}: {exc.strerror}") from None
    # Listening before the announcement: a client that reads it can connect at once
    # (its connection waits in the backlog until uvicorn accepts).
    sock.listen(128)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    access = "token required" if config.token else "loopback only"
    announce(f"seedledger ui: listening on http://{shown}:{bound_port}/ (read-only, {access})")
    server_config = uvicorn.Config(
        asgi, lifespan="on", log_level="warning", access_log=False, server_header=False
    )
    uvicorn.Server(server_config).run(sockets=[sock])
