"""Canonical JSON: one byte string per value, so hashes can be recomputed.

A subset of RFC 8785 (JCS) that covers what the ledger stores: objects with
string keys sorted by UTF-16 code units, no insignificant whitespace, UTF-8,
integers as decimal, and no floats that are not finite. Floats are written with
Python's shortest round-trip repr, which matches ECMAScript for the values we
store (CFG scales, costs); integral floats are written as integers, as JCS does.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ledger.errors import InvalidInputError


def _check(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise InvalidInputError(f"{path}: object keys must be strings")
        return {k: _check(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_check(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{path}: {value!r} cannot be represented in JSON")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if value is None or isinstance(value, bool | int | str):
        return value
    raise InvalidInputError(f"{path}: {type(value).__name__} is not a JSON value")


def _utf16_key(item: tuple[str, Any]) -> bytes:
    return item[0].encode("utf-16-be")


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(sorted(((k, _sorted(v)) for k, v in value.items()), key=_utf16_key))
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-compatible value."""
    checked = _sorted(_check(value, "$"))
    return json.dumps(checked, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
