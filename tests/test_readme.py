"""README.md cannot rot: every command and code block in it runs here, in order, and
every `seedledger` command and flag it mentions exists.

The blocks run as one bash script in a scratch directory with three substitutions: the
hosted Runware URLs (REST and WebSocket) point at the bundled reference server, the
example ports become free ephemeral ports, and the example PostgreSQL database becomes a
throwaway one. A Python block that opens with `# pip install runware` or
`# pip install runware-sdk` runs with that official SDK from its own venv
(scripts/sdk_venvs.py; the two install the same module). `make demo`
runs the command the Makefile target runs; `make test` is checked, not run (it is what
runs this test).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from sqlalchemy import create_engine, text

from ledger.backends.reference.server import ReferenceServer
from ledger.cli import main
from tests.conftest import IN_CI, PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
PG_EXAMPLE = "postgresql://postgres@127.0.0.1:5432/seedledger"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _blocks() -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in BLOCK.findall(README)]


@pytest.fixture
def pg_database() -> Iterator[str | None]:
    """A database name the server does not have yet: the README creates it (`--create`)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"sl_readme_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            assert found.first() is None
    except Exception as exc:  # pragma: no cover - depends on the machine
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        yield None
        return
    try:
        yield PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


_SDK_BLOCK = re.compile(r"\A# pip install (runware-sdk|runware)\n")


def _sdk_site(name: str) -> str:
    from scripts import sdk_venvs

    python = sdk_venvs.build(name)
    return str(next(python.parent.parent.glob("lib/python3*/site-packages")))


def _script(server_base: str, pg_url: str | None) -> str:
    ports = {"8931": str(_free_port()), "8787": str(_free_port()), "8765": str(_free_port())}
    lines = [
        "set -euo pipefail",
        "wait_for_port() { for _ in $(seq 1 300); do "
        '(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; '
        'echo "port $1 never opened" >&2; return 1; }',
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
    ]
    for lang, body in _blocks():
        for port, free in ports.items():
            body = body.replace(port, free)
        body = body.replace("https://api.runware.ai", server_base)
        body = body.replace("wss://ws-api.runware.ai", "ws" + server_base.removeprefix("http"))
        if pg_url is not None:
            body = body.replace(PG_EXAMPLE, pg_url)
        elif PG_EXAMPLE in body:
            continue  # no PostgreSQL outside CI: that block cannot run here
        if lang == "python":
            sdk = _SDK_BLOCK.match(body)
            # The SDK's venv after the project's own path entries (seedledger first).
            prefix = f'PYTHONPATH="${{PYTHONPATH:-}}:{_sdk_site(sdk[1])}" ' if sdk else ""
            run = f"{prefix}python - <<'README_PY'"
            lines += ["echo '+ python <<README'", run, body.rstrip(), "README_PY"]
            continue
        for line in body.splitlines():
            command = line.strip()
            if not command or command.startswith("#"):
                continue
            if command == "make demo":
                command = "seedledger demo --dir demo-out --force"
            elif command == "make test":
                continue  # this test is part of `make test`; see test_makefile_targets
            lines.append(f"echo {shlex.quote('+ ' + command)}")
            lines.append(command)
            if command.endswith("&"):
                port = re.search(r"(?:--port |--listen 127\.0\.0\.1:)(\d+)", command)
                assert port, f"background command without a port to wait for: {command}"
                lines.append(f"wait_for_port {port.group(1)}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path: Path, pg_database: str | None) -> None:
    bin_dir = Path(sys.executable).parent
    # The README's `.venv/bin` is this interpreter's environment.
    (tmp_path / ".venv").symlink_to(bin_dir.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEEDLEDGER_", "RUNWARE_"))}
    env["RUNWARE_API_KEY"] = "readme-test-key"
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    with ReferenceServer.running() as server:
        script = _script(server.base_url, pg_database)
        (tmp_path / "readme.sh").write_text(script)
        done = subprocess.run(
            ["bash", str(tmp_path / "readme.sh")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, f"README script failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert (tmp_path / "demo-out" / "readme-report.html").is_file()
    assert (tmp_path / "demo-out" / "proof-1.json").is_file()


def test_makefile_targets_run_what_the_readme_promises() -> None:
    demo = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "seedledger demo --dir" in demo.stdout
    # The README's PostgreSQL section runs after `make demo`: the driver comes with it.
    assert "--require-hashes --no-deps -r requirements-demo.lock" in demo.stdout
    assert re.search(r"^psycopg-binary==", (ROOT / "requirements-demo.lock").read_text(), re.M)
    test = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "pytest" in test.stdout and "install-browser.sh" in test.stdout
    assert (ROOT / ".ci" / "run").read_text().count("make test") == 1


def _mentions() -> list[list[str]]:
    """Every `seedledger …` in inline code and in shell blocks (prose is not a command)."""
    code = [m.group(1) for m in re.finditer(r"`(seedledger [^`]*)`", README)]
    code += [
        line.strip()
        for lang, body in _blocks()
        if lang == "sh"
        for line in body.splitlines()
        if line.strip().startswith("seedledger ")
    ]
    found: list[list[str]] = []
    for text_ in code:
        words = shlex.split(re.split(r"\s(?:\|\||&&|\||&)(?:\s|$)", text_)[0].replace("…", ""))
        found.append(words[1:])
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    options: list[str] = []
    ctx = click.Context(main)
    for word in words:
        if word.startswith("-"):
            options.append(word.split("=", 1)[0])
        elif isinstance(command, click.Group) and not options:
            sub = command.get_command(ctx, word)
            if sub is not None:
                command = sub
    return command, options


@pytest.mark.parametrize("words", _mentions(), ids=lambda w: " ".join(w)[:60])
def test_every_documented_command_and_flag_exists(words: list[str]) -> None:
    command, options = _resolve(words)
    known = {opt for param in [*main.params, *command.params] for opt in getattr(param, "opts", [])}
    known |= {"--help", "-h", "--version"}
    missing = [o for o in options if o not in known]
    assert not missing, f"README mentions {missing} for `seedledger {' '.join(words)}`"
    if words and not words[0].startswith("-") and words[0] not in ("VERB",):
        assert command is not main, f"README mentions an unknown command: seedledger {words[0]}"
