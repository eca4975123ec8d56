"""The one progress display of the CLI: a line on stderr, redrawn in place on a terminal.

The layers below only report progress through callbacks (``verify(progress=)``,
``run_audit(progress=)``, ``import_paths(progress=)``, the sweep's ``on_cell``); the
commands hand those callbacks to a :class:`ProgressLine`, and only it draws. Off a
terminal nothing is drawn (stderr stays readable in logs and pipes), unless the
command asks for ``lines``: then each update is one plain line.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Final, TextIO

import click

__all__ = ["ProgressLine"]

_BAR_WIDTH: Final = 28
_CLEAR_TO_END: Final = "\x1b[K"


class ProgressLine:
    """``label`` followed by the latest text (:meth:`show`) or a bar (:meth:`bar`).

    ``enabled=False`` draws nothing (e.g. under ``--json``). Use as a context manager,
    or call :meth:`close` to end a drawn line with a newline."""

    def __init__(
        self, label: str, *, enabled: bool = True, lines: bool = False, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self._stream = stream
        terminal = _is_terminal(stream or sys.stderr)
        self.live = enabled and terminal
        self.lines = enabled and lines and not terminal
        self.drawn = False

    def show(self, text: str) -> None:
        if self.live:
            self._write(f"\r{self.label} {text}{_CLEAR_TO_END}")
            self.drawn = True
        elif self.lines:
            self._write(f"{self.label} {text}\n")

    def bar(self, done: int, total: int, detail: str = "") -> None:
        """``[####....] done/total  detail``; nothing while the total is unknown."""
        if total <= 0:
            return
        filled = int(_BAR_WIDTH * min(max(done, 0), total) / total)
        text = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{total}"
        self.show(f"{text}  {detail}" if detail else text)

    def close(self) -> None:
        if self.drawn:
            self._write("\n")
            self.drawn = False

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write(self, text: str) -> None:
        if self._stream is not None:
            self._stream.write(text)
            self._stream.flush()
        else:
            click.echo(text, err=True, nl=False)


def _is_terminal(stream: TextIO) -> bool:
    return stream.isatty()
