"""JSON handed to the integrity layer from outside (proof files, leaves in them, earlier
JSON reports): parsed with a bound on nesting, so hostile input is bad input (exit 2),
never a RecursionError."""

from __future__ import annotations

import json
from typing import Any

from ledger.errors import InvalidInputError

#: Deeper than any proof, leaf or report the ledger writes (a leaf's JSON columns hold
#: request parameters verbatim), well within the interpreter's recursion limit for
#: canonical_json; the ComfyUI graph walk uses the same bound (ledger.core.comfy).
MAX_DEPTH = 256


def _depth_ok(value: Any) -> bool:
    """Whether ``value`` nests at most MAX_DEPTH arrays/objects deep (iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def load_json(text: str | bytes, what: str) -> Any:
    """``json.loads(text)``; a one-line :class:`InvalidInputError` naming ``what`` when it
    is not JSON or nests deeper than :data:`MAX_DEPTH`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise InvalidInputError(f"{what} is not JSON") from None
    if not _depth_ok(value):
        raise InvalidInputError(f"{what} nests deeper than {MAX_DEPTH} levels")
    return value
