"""Parse JSON from outside without letting its shape crash the process.

``json.loads`` recurses once per nesting level, and so does every consumer after it
(redaction, canonical JSON). ``json_depth`` measures the nesting on the text with
regular expressions and no recursion, so ``loads_bounded`` can refuse anything deeper
than ``max_depth`` before a parser sees it.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from ledger.errors import InvalidInputError

__all__ = ["DEFAULT_MAX_DEPTH", "json_depth", "loads_bounded"]

#: Deep enough for every format seedledger reads (Runware tasks nest < 10).
DEFAULT_MAX_DEPTH = 64

# A JSON string, escapes included (unrolled-loop form: linear, no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar); brackets
    inside strings do not count. On malformed text the figure is an estimate."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets.encode("ascii")))))


def loads_bounded(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted text, refusing nesting beyond ``max_depth``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = json_depth(text)
    if depth > max_depth:
        raise InvalidInputError(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"invalid JSON: {exc}") from None
