"""`seedledger ui` as a real subprocess on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.cli import COMMAND

_LISTENING = re.compile(r"listening on (http://\S+?)/? ")


@contextmanager
def ui_server(db_url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the UI on ``db_url``; yield its base URL (no trailing slash)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
    full_env.update(env or {})
    listen = () if any(a == "--listen" for a in args) else ("--listen", "127.0.0.1:0")
    proc = subprocess.Popen(
        [*COMMAND, "--db", db_url, "ui", *listen, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"seedledger ui exited with {proc.returncode}")
            found = _LISTENING.search(line)
            if found:
                base = found.group(1).rstrip("/").replace("0.0.0.0", "127.0.0.1")
                yield base
                return
        raise AssertionError(f"seedledger ui did not announce its address: {line!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
