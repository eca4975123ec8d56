"""Serving the recording proxy: `seedledger proxy` binds, checks who may reach it, runs uvicorn."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from ledger.capture.proxy import RecordingProxy
from ledger.capture.proxy_auth import check_token, is_loopback, webhook_secret
from ledger.capture.proxy_limits import DEFAULT_LIMITS, ProxyLimits
from ledger.capture.recorder import Recorder
from ledger.core.records import Source
from ledger.core.redaction import redact_url
from ledger.errors import UsageError
from ledger.store.archive import Archive


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def serve(
    upstream: str,
    listen: str,
    *,
    spool: str | None = None,
    db: str | None = None,
    webhook_token: str | None = None,
    forward_webhooks: str | None = None,
    client_token: str | None = None,
    limits: ProxyLimits = DEFAULT_LIMITS,
    drain_timeout: float = 30.0,
    fingerprint: bool = True,
    announce: Callable[[str], None] | None = None,
    ws_upstream: str | None = None,
    archive: Archive | None = None,
) -> None:
    """Run the proxy until SIGINT/SIGTERM, then drain (see module docstring).

    Without ``webhook_token`` the webhook secret is generated (or reused) in
    ``<spool>/webhook-token``. A bind beyond loopback requires ``client_token``."""
    import uvicorn

    host, port = parse_listen(listen)
    check_token("--client-token", client_token)
    if client_token is None and not is_loopback(host):
        raise UsageError(
            f"--listen {host} is reachable beyond this machine: set --client-token "
            "(or SEEDLEDGER_PROXY_TOKEN) so only your clients can use the proxy"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without
    # it each response waits for a delayed ACK (~40 ms: headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Result URLs on the upstream's own host may be fetched for fingerprints.
    upstream_host = urlsplit(upstream).hostname or ""
    recorder = Recorder(
        spool,
        db,
        source=Source.PROXY,
        fingerprint=fingerprint,
        trusted_hosts=(upstream_host,) if upstream_host else (),
        archive=archive,
    )
    try:
        secret, secret_file = webhook_secret(recorder.spool.directory, webhook_token)
        app = RecordingProxy(
            upstream,
            recorder,
            webhook_token=secret,
            forward_webhooks=forward_webhooks,
            client_token=client_token,
            limits=limits,
            drain_timeout=drain_timeout,
            ws_upstream=ws_upstream,
        )
    except BaseException:
        recorder.close(drain_timeout=0)
        sock.close()
        raise
    # The event loop relays every frame and response while the writer and fsync threads
    # run Python beside it; at the default 5 ms GIL switch interval a frame could wait
    # that long behind them. 0.5 ms: per-task added latency over WebSocket 2.3 ms vs 3.8 ms
    # (mean of 4 alternated runs each, bench_websocket.py, loaded 2-core machine).
    sys.setswitchinterval(0.0005)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    say = announce or (lambda m: print(m, file=sys.stderr, flush=True))
    say(
        f"seedledger proxy: listening on http://{shown}:{bound_port} -> {redact_url(upstream)} "
        f"(spool {recorder.spool.directory}; websocket -> {redact_url(app.ws_relay.ws_upstream)})"
    )
    if secret_file is not None:  # the secret itself is never printed
        say(f"seedledger proxy: webhooks at /_seedledger/webhook/<secret in {secret_file}>")
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="h11",  # raw_path is then the request target as sent, checked by proxy_targets
        log_level="warning",
        access_log=False,
        server_header=False,  # relay the upstream's Server and Date headers unchanged
        date_header=False,
        timeout_graceful_shutdown=60,
        ws="websockets-sansio",
        ws_max_size=None,  # type: ignore[arg-type]  # Runware frames have no size limit
    )
    uvicorn.Server(config).run(sockets=[sock])
