"""Option bundles shared by commands: the record filters of list/audit/report, record id lists."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ledger import config
from ledger.core.seeds import parse_seed
from ledger.core.times import parse_time
from ledger.errors import InvalidInputError, InvalidSeedError
from ledger.store import RecordFilter

F = TypeVar("F", bound=Callable[..., Any])

# click >= 8.4 types ParamType by the value it converts to; older click (our floor) cannot be
# subscripted at run time. Each subclass's convert() states its own type.
if TYPE_CHECKING:
    ParamType = click.ParamType[Any]
else:
    ParamType = click.ParamType


class SeedParam(ParamType):
    name = "SEED"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            return parse_seed(value)
        except InvalidSeedError as exc:
            self.fail(str(exc), param, ctx)


class TimeParam(ParamType):
    """ISO 8601 date or datetime; without a zone it is taken as UTC."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-25T12:00Z)", param, ctx)


SEED = SeedParam()
TIME = TimeParam()


def archive_option(help: str, **extra: Any) -> Callable[[F], F]:
    """``--archive DIR`` (passed as ``archive_dir``), read from SEEDLEDGER_ARCHIVE when not given."""
    return click.option(
        "--archive",
        "archive_dir",
        envvar=config.ARCHIVE.name,
        metavar="DIR",
        help=f"{help} [env {config.ARCHIVE.name}].",
        **extra,
    )


def record_filter_options(func: F) -> F:
    """Add the record filters and pass a ``where: RecordFilter`` to the command."""
    options = [
        click.option("--id", "ids", type=int, multiple=True, help="Record id (repeatable)."),
        click.option("--model", help="Model AIR, exact or with * wildcards."),
        click.option("--scheduler", help="Resolved scheduler, exact or with * wildcards."),
        click.option("--seed", type=SEED, help="Exact seed."),
        click.option("--seed-min", type=SEED, help="Smallest seed (inclusive)."),
        click.option("--seed-max", type=SEED, help="Largest seed (inclusive)."),
        click.option("--since", type=TIME, help="Created at or after (ISO 8601, UTC default)."),
        click.option("--until", type=TIME, help="Created before (ISO 8601, UTC default)."),
        click.option("--prompt", help="Prompt contains this text (case-insensitive)."),
        click.option("--experiment", help="Experiment id."),
        click.option("--tag", "tags", multiple=True, help="Has this tag (repeatable: all)."),
        click.option("--status", type=click.Choice(["ok", "failed"]), help="Record status."),
        click.option("--backend", help="Backend name (runware, a1111, comfyui, reference)."),
        click.option(
            "--source",
            type=click.Choice(["hook", "proxy", "import", "api", "replay", "sweep"]),
            help="How the record arrived.",
        ),
        click.option("--modality", type=click.Choice(["image", "video", "audio", "3d"])),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = (
            "ids",
            "model",
            "scheduler",
            "seed",
            "seed_min",
            "seed_max",
            "since",
            "until",
            "prompt",
            "experiment",
            "tags",
            "status",
            "backend",
            "source",
            "modality",
        )
        values = {name: kwargs.pop(name) for name in names}
        values["ids"] = tuple(values["ids"])
        values["tags"] = tuple(values["tags"])
        try:
            kwargs["where"] = RecordFilter(**values)
        except InvalidInputError as exc:
            raise click.UsageError(str(exc)) from None
        return func(*args, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


class IdList(ParamType):
    """``1,2,5-9``: record ids and inclusive ranges."""

    name = "IDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        out: list[int] = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    low, high = part.split("-", 1)
                    a, b = int(low), int(high)
                    if b < a or b - a > 1_000_000:
                        raise ValueError
                    out.extend(range(a, b + 1))
                else:
                    out.append(int(part))
            except ValueError:
                self.fail(f"{part!r} is not a record id or an id range like 5-9", param, ctx)
        return tuple(out)


def merge_ids(where: RecordFilter, ids: tuple[int, ...]) -> RecordFilter:
    if not ids:
        return where
    return dataclasses.replace(where, ids=tuple(dict.fromkeys((*where.ids, *ids))))
