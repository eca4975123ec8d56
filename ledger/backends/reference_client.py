"""The Runware protocol against the bundled reference server: a running one (by URL) or
one started in-process on a free loopback port for the life of the backend."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ledger.backends.http import HostPolicy
from ledger.backends.runware import RunwareBackend
from ledger.errors import UsageError

__all__ = ["InProcessReference", "reference_backend"]


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InProcessReference(RunwareBackend):
    """A Runware client that owns an in-process reference server (started on a free
    loopback port, stopped by :meth:`aclose`). ``server`` exposes its knobs and stats."""

    def __init__(self, server: Any, stack: contextlib.ExitStack, **options: Any) -> None:
        self.server = server
        self._stack = stack
        super().__init__(server.url, **options)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await asyncio.to_thread(self._stack.close)


def reference_backend(
    url: str | None = None, *, server_options: Mapping[str, Any] | None = None, **options: Any
) -> RunwareBackend:
    """The Runware protocol against the bundled reference server.

    With ``url``, talk to a running server (``seedledger reference-server``). Without
    one, start a server in-process on a free loopback port, configured with
    ``server_options`` (its knobs), and stop it when the backend is closed. It needs
    no key, and the user's real ``RUNWARE_API_KEY`` is never sent to it.
    """
    options.setdefault("name", "reference")
    options.setdefault("require_key", False)
    options.setdefault("read_env", False)
    if not url:
        if "host_policy" not in options:
            options["host_policy"] = HostPolicy(allow_loopback=True)
        from ledger.backends.reference.server import ReferenceServer

        server = ReferenceServer(**dict(server_options or {}))
        stack = contextlib.ExitStack()
        stack.enter_context(server.serve())
        try:
            return InProcessReference(server, stack, **options)
        except BaseException:
            stack.close()
            raise
    if server_options:
        raise UsageError("server_options only apply to an in-process reference server (no url)")
    if "host_policy" not in options and _is_loopback_host(urlsplit(url).hostname):
        # A local reference server hands out URLs on its own loopback address.
        options["host_policy"] = HostPolicy(allow_loopback=True)
    return RunwareBackend(url, **options)
