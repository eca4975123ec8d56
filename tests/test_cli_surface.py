"""The CLI's command map is complete, and every command answers --help."""

from __future__ import annotations

import importlib
import pkgutil

import click
import pytest

import ledger.cli
from ledger.cli import COMMAND_MODULES, main
from tests.cli import seedledger


def test_every_registered_command_is_in_the_lazy_map() -> None:
    for info in pkgutil.iter_modules(ledger.cli.__path__):
        importlib.import_module(f"ledger.cli.{info.name}")
    registered = {name: cmd.callback.__module__ for name, cmd in main.commands.items() if cmd.callback}
    groups = {name: f"{cmd.__module__}" for name, cmd in main.commands.items() if cmd.callback is None}
    assert {**registered, **groups} == COMMAND_MODULES


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_every_command_has_help(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None and (command.help or command.short_help)


def test_help_lists_every_command_and_the_exit_codes() -> None:
    done = seedledger("--help")
    assert done.code == 0
    for name in COMMAND_MODULES:
        assert name in done.out
    assert "Exit codes" in done.out


def test_unknown_command_is_a_usage_error() -> None:
    done = seedledger("no-such-command")
    assert done.code == 2 and "No such command" in done.err
