"""`seedledger reference-server`: the bundled Runware-compatible reference backend."""

from __future__ import annotations

import os

import click

from ledger.cli.app import fail, info, main


@main.command("reference-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    # Not 8787: the README's proxy listens there, and both run side by side.
    "--port",
    default=8931,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free).",
)
@click.option(
    "--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0), help="Delay per request."
)
@click.option(
    "--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of HTTP 500s."
)
@click.option(
    "--rate-limit-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of HTTP 429s.",
)
@click.option(
    "--retry-after", default=1, show_default=True, type=click.IntRange(0), help="Retry-After seconds."
)
@click.option(
    "--stall-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests that hang past a client timeout, then answer 504.",
)
@click.option(
    "--stall-seconds", default=30.0, show_default=True, type=click.FloatRange(0), help="Length of a stall."
)
@click.option(
    "--model-revision",
    "model_revisions",
    multiple=True,
    metavar="[AIR=]REV",
    help="Silently update models: REV for all models, or AIR=REV for one (repeatable). 0 = original.",
)
@click.option(
    "--shuffle/--no-shuffle", default=False, show_default=True, help="Return results in random order."
)
@click.option(
    "--async-polls", default=1, show_default=True, type=click.IntRange(0), help="Polls answered 'processing'."
)
@click.option(
    "--async-error-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of async tasks that fail with timeoutProvider.",
)
@click.option(
    "--knob-seed", type=int, default=None, help="Seed for the knobs' random draws (reproducible faults)."
)
@click.option(
    "--api-key-env",
    metavar="VAR",
    default=None,
    help="Require the API key held in environment variable VAR (default: accept any non-empty key).",
)
@click.option(
    "--models",
    "models_config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Model catalog overrides (TOML [models] table or JSON), e.g. to accept more providers.",
)
@click.option(
    "--public-url", default=None, help="Base URL written into imageURL (default: from the Host header)."
)
@click.option(
    "--ws-idle-seconds",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="WebSocket: close a socket after this long without a client message.",
)
@click.option(
    "--ws-buffer-seconds",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0),
    help="WebSocket: keep undelivered results this long for a client that resumes its session.",
)
@click.option(
    "--ws-split-results/--no-ws-split-results",
    default=False,
    show_default=True,
    help="WebSocket: one frame per result of a multi-output task.",
)
def reference_server(
    host: str,
    port: int,
    latency_ms: float,
    error_rate: float,
    rate_limit_rate: float,
    retry_after: int,
    stall_rate: float,
    stall_seconds: float,
    model_revisions: tuple[str, ...],
    shuffle: bool,
    async_polls: int,
    async_error_rate: float,
    knob_seed: int | None,
    api_key_env: str | None,
    models_config: str | None,
    public_url: str | None,
    ws_idle_seconds: float,
    ws_buffer_seconds: float,
    ws_split_results: bool,
) -> None:
    """Run the reference backend: procedural test images behind Runware's API.

    A reference backend for demos and tests, NOT a model. Point the Runware adapter
    at http://HOST:PORT/v1 (a Runware SDK's WebSocket URL at ws://HOST:PORT/v1), or pass
    `--backend-url http://HOST:PORT/v1` to `sweep --backend reference` and
    `audit --replay-backend reference`.
    """
    from ledger.backends.reference.server import serve_forever
    from ledger.core.models import ModelCatalog

    catalog = ModelCatalog().with_overrides(models_config) if models_config else None

    revision: str | dict[str, str] | None = None
    for item in model_revisions:
        if "=" in item:
            air, _, rev = item.rpartition("=")
            if not isinstance(revision, dict):
                revision = {} if revision is None else {"*": revision}
            revision[air.strip()] = rev.strip()
        elif isinstance(revision, dict):
            revision["*"] = item.strip()
        else:
            revision = item.strip()
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            fail(f"environment variable {api_key_env} is empty or unset; export the key there", 2)
    note = " (API key required)" if api_key else ""

    def announce(url: str) -> None:
        info(f"seedledger reference server (procedural test images, not a model) at {url}{note}")

    serve_forever(
        host,
        port,
        announce=announce,
        api_key=api_key,
        catalog=catalog,
        public_url=public_url,
        latency_ms=latency_ms,
        error_rate=error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after=retry_after,
        stall_rate=stall_rate,
        stall_seconds=stall_seconds,
        model_revision=revision,
        shuffle_results=shuffle,
        async_polls=async_polls,
        async_error_rate=async_error_rate,
        knob_seed=knob_seed,
        ws_idle_seconds=ws_idle_seconds,
        ws_buffer_seconds=ws_buffer_seconds,
        ws_split_results=ws_split_results,
    )
