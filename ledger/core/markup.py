"""A tiny escape-everything HTML/SVG builder (the HTML reports, the contact sheet).

Every string that is not a :class:`Safe` is escaped when it becomes markup: element
text and attribute values alike. Only this module creates ``Safe`` values from
literal tags, so outside text (prompts, model names, error messages) can never turn
into markup, whatever it holds.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ledger.core.text import strip_controls

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")
_VOID = frozenset({"meta", "img", "br", "hr", "link", "col"})


class Safe(str):
    """Markup that is already escaped."""

    __slots__ = ()


def csp(css: str) -> str:
    """The Content-Security-Policy of a self-contained page: no script, nothing from
    outside, images only as data: URIs, and only the inline style sheet ``css``."""
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return (
        f"default-src 'none'; img-src data:; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def escape(value: Any) -> Safe:
    if isinstance(value, Safe):
        return value
    # Control characters are replaced too: a report `cat` in a terminal runs nothing.
    return Safe(html.escape(strip_controls("" if value is None else str(value)), quote=True))


def _attrs(attrs: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        if not _NAME.match(name) or name.lower().startswith("on"):
            raise ValueError(f"attribute name {name!r} is not allowed")  # code bug, not input
        parts.append(f" {name}" if value is True else f' {name}="{escape(value)}"')
    return "".join(parts)


def open_tag(tag: str, **attrs: Any) -> Safe:
    if not _NAME.match(tag) or tag in ("script", "iframe", "object", "embed"):
        raise ValueError(f"tag {tag!r} is not allowed")
    return Safe(f"<{tag}{_attrs(attrs)}>")


def close_tag(tag: str) -> Safe:
    return Safe(f"</{tag}>")


def el(tag: str, *children: Any, **attrs: Any) -> Safe:
    """``<tag attrs>children</tag>``; children are escaped unless Safe; None skipped."""
    if tag in _VOID:
        return open_tag(tag, **attrs)
    inner = "".join(escape(c) for c in _flatten(children))
    return Safe(f"{open_tag(tag, **attrs)}{inner}{close_tag(tag)}")


def join(parts: Iterable[Any]) -> Safe:
    return Safe("".join(escape(p) for p in _flatten(parts)))


def _flatten(children: Iterable[Any]) -> Iterable[Any]:
    for child in children:
        if child is None:
            continue
        if isinstance(child, str):
            yield child
        elif isinstance(child, Iterable):
            yield from _flatten(child)
        else:
            yield str(child)


def when(value: datetime | None) -> str:
    """A time as the HTML report prints it (UTC, to the second)."""
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
