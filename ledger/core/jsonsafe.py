"""Parse JSON from outside without letting its shape crash the process.

``json.loads`` recurses once per nesting level, so ``[[[[…]]]]`` a hundred thousand
deep ends in ``RecursionError``; and every consumer after it (redaction, canonical JSON,
the store) recurses too. ``loads_bounded`` measures the nesting on the text first, with
regular expressions and no recursion, and refuses anything deeper than ``max_depth``
before a parser sees it. Every error is an ``InvalidInputError`` (exit 2) with one line.

    loads_bounded(text)                        -> the value, integers exact
    loads_bounded(text, max_depth=16)          -> a tighter bound
    loads_bounded(body, allow_constants=True)  -> NaN/Infinity accepted as floats
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from ledger.errors import InvalidInputError, JSONTooDeepError

__all__ = ["DEFAULT_MAX_DEPTH", "JSONTooDeepError", "json_depth", "loads_bounded"]

#: Deep enough for every format seedledger reads (Runware tasks, ComfyUI graphs,
#: proofs, catalogs nest < 10), far below the interpreter's recursion limit.
DEFAULT_MAX_DEPTH = 64

# A JSON string, escapes included ("unrolled loop" form: linear, no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar).

    Brackets inside strings do not count. On malformed text the figure is an
    estimate; the parser will refuse such text anyway."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets.encode("ascii")))))


def loads_bounded(
    text: str | bytes | bytearray,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_constants: bool = False,
) -> Any:
    """``json.loads`` for untrusted text: depth-bounded, one-line errors.

    Raises ``JSONTooDeepError`` when nesting exceeds ``max_depth`` (checked before
    parsing) and ``InvalidInputError`` ("invalid JSON: …") for anything the parser
    refuses, including NaN/Infinity unless ``allow_constants``."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode(json.detect_encoding(text))
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"invalid JSON: not valid {exc.encoding}") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise JSONTooDeepError(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")
    try:
        if allow_constants:
            return json.loads(text)
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # cannot happen under the bound above; kept as a last line
        raise JSONTooDeepError("JSON nested too deep") from None
    except ValueError as exc:
        raise InvalidInputError(f"invalid JSON: {exc}") from None


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")
