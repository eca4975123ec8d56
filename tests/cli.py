"""Run the real `seedledger` console script as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).with_name("seedledger")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "ledger"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def seedledger(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 120,
) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}
    full_env.update(env or {})
    done = subprocess.run(
        [*COMMAND, *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
    """The same command in this process (click's CliRunner): for the many calls of one
    test, where a subprocess each would cost a second of start-up. The environment
    starts without any SEEDLEDGER_* variable, as for :func:`seedledger`."""
    from click.testing import CliRunner

    from ledger.cli import main

    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SEEDLEDGER_")}
    result = CliRunner().invoke(
        main, list(args), input=input, env={**clean, **(env or {})}, catch_exceptions=False
    )
    return Run(result.exit_code, result.stdout, result.stderr)
