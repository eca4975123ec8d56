"""The click application: global options, one error handler, one output path.

Commands parse options, call one service, and render. Command modules import
:data:`main` and register with ``@main.command()``; ``ledger/cli/__init__.py``
imports them.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

import click

from ledger import __version__
from ledger.core.text import strip_controls
from ledger.errors import EXIT_CODES, LedgerError
from ledger.store import ENV_DATABASE_URL, Ledger

F = TypeVar("F", bound=Callable[..., Any])

_GLOBAL_FLAGS = frozenset({"--json", "--debug"})
_EXIT_HELP = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


@dataclass
class AppContext:
    db_url: str | None
    json: bool
    debug: bool
    _ledger: Ledger | None = field(default=None, repr=False)

    def ledger(self, *, create_missing: bool = False) -> Ledger:
        """Open the ledger once per invocation; closed when the command ends.

        Only commands that write new records pass ``create_missing``: every other
        command refuses a SQLite file that does not exist (exit 4) rather than answer
        from a fresh, empty ledger at a mistyped path."""
        if self._ledger is None:
            self._ledger = Ledger.open(self.db_url, must_exist=not create_missing)
            click.get_current_context().call_on_close(self._ledger.close)
        return self._ledger


class LedgerGroup(click.Group):
    """Catches LedgerError once: one line on stderr and its exit code.

    Commands live in modules imported only when the command runs (``lazy_commands``:
    command name -> module), so `seedledger list` does not pay for numpy, Pillow or
    uvicorn.
    """

    lazy_commands: Mapping[str, str] = MappingProxyType({})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # People type `seedledger list --json` as often as `seedledger --json list`:
        # the global flags are accepted after the command too (not after `--`).
        end = args.index("--") if "--" in args else len(args)
        head, tail = args[:end], args[end:]
        moved = [a for a in head if a in _GLOBAL_FLAGS]
        return super().parse_args(ctx, moved + [a for a in head if a not in _GLOBAL_FLAGS] + tail)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self.lazy_commands.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)  # registers its commands on `main`
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            debug = isinstance(ctx.obj, AppContext) and ctx.obj.debug
            if debug:
                raise
            fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly with SIGPIPE's status, as Unix
            # tools do; stdout goes to /dev/null so the final flush cannot complain again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except OSError as exc:
            # A file the user named cannot be read or written: one line, not a traceback.
            if isinstance(ctx.obj, AppContext) and ctx.obj.debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}", 1)
        except KeyboardInterrupt:
            click.echo("seedledger: interrupted", err=True)
            sys.exit(130)


def fail(message: str, code: int = 1) -> NoReturn:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    click.echo(f"seedledger: error: {sanitize(first_line)}", err=True)
    sys.exit(code)


@click.group(
    cls=LedgerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=f"\b\nExit codes:\n{_EXIT_HELP}",
)
@click.option(
    "--db",
    "db_url",
    envvar=ENV_DATABASE_URL,
    metavar="URL",
    help=f"Ledger database: a SQLite path or URL, or postgresql://… "
    f"[env {ENV_DATABASE_URL}; default ./seedledger.db]",
)
@click.option("--json", "as_json", is_flag=True, help="Print data as JSON (JSON Lines for lists).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="seedledger")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, as_json: bool, debug: bool) -> None:
    """seedledger: seed provenance ledger and reproduction auditor."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = AppContext(db_url=db_url, json=as_json, debug=debug)


def app(ctx: click.Context | None = None) -> AppContext:
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(AppContext)
    assert obj is not None
    return obj


# -- output ------------------------------------------------------------------------


def sanitize(text: str) -> str:
    """Make outside text safe to print on a terminal (no escape sequences)."""
    return strip_controls(text)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    return value


# json.dumps escapes C0 but prints DEL and C1 (e.g. U+009B, a one-byte CSI) raw; they can
# only occur inside strings, where a \u escape is the same JSON value.
_JSON_RAW_CONTROL = re.compile(r"[\x7f-\x9f]")


def emit_json(value: Any) -> None:
    text = json.dumps(to_jsonable(value), ensure_ascii=False, sort_keys=False)
    click.echo(_JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def emit_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool) -> int:
    """Print rows as JSON Lines or an aligned table; return how many were printed."""
    count = 0
    if as_json:
        for row in rows:
            emit_json(row)
            count += 1
        return count
    materialized = [[sanitize(_cell(row.get(col))).replace("\n", " ") for col in columns] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in materialized)]) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in materialized:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return len(materialized)


def emit_mapping(data: Mapping[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, Mapping | list) and value:
            rendered = json.dumps(to_jsonable(value), ensure_ascii=False, sort_keys=True)
        else:
            rendered = _cell(value)
        click.echo(f"{key.ljust(width)}  {sanitize(rendered)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(to_jsonable(value))


def info(message: str) -> None:
    """Progress and status go to stderr, data to stdout."""
    click.echo(message, err=True)
