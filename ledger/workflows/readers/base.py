"""What every reader gets and gives back."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.core.records import NewRecord, Source
from ledger.errors import InvalidInputError
from ledger.workflows.readers.carriers import Carriers
from ledger.workflows.stamp import Stamp


@dataclass(frozen=True)
class Context:
    """The file being read: its base name (never the full path), SHA-256, kind."""

    name: str
    sha: str
    kind: str  # png, jpeg, webp, json; or a media file's: mp4, webm, gif, wav, mp3, flac, glb…
    source: Source = Source.IMPORT

    @property
    def output_format(self) -> str | None:
        if self.kind == "json":
            return None
        return {"jpeg": "JPG"}.get(self.kind, self.kind.upper())

    def key(self, n: int | str = 0) -> str:
        return f"import:{self.sha}:{n}"

    def info(self, fmt: str | None = None) -> dict[str, Any]:
        return {
            "import": {"file": os.path.basename(self.name), "sha256": self.sha, "format": fmt or self.kind}
        }


@dataclass(frozen=True)
class Reading:
    """What one file holds: records to store, the output to fingerprint (``image``, of
    ``modality``: a still image unless a media reader says otherwise), its stamp."""

    kind: str
    records: tuple[NewRecord, ...]
    image: bytes | None = None
    stamp: Stamp | None = None
    modality: str = "image"


class Reader(Protocol):
    """One file format's reader. ``detect`` looks at the carriers only (cheap, no
    parsing beyond telling the format); ``read`` raises InvalidInputError with the
    precise reason when the format is there but cannot be read."""

    name: str

    def detect(self, carriers: Carriers) -> bool: ...

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]: ...


def json_object(text: str | None) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None when it is not one (NaN allowed: real
    generators write it). Deep nesting is refused, not a RecursionError."""
    if not text or text.lstrip()[:1] != "{":
        return None
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInputError("metadata JSON is nested too deeply") from None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def generator(name: str, version: Any = None, **more: Any) -> dict[str, Any]:
    """``params["generator"]``: the tool and version that made the file."""
    out: dict[str, Any] = {"name": name, "version": str(version) if version not in (None, "") else None}
    out.update({k: v for k, v in more.items() if v is not None})
    return out


def number(value: Any, where: str, kind: type = float) -> Any:
    """A stated number (int/float or a numeric string) as ``kind``; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"{where}: expected a number, got a boolean")
    try:
        result = kind(value) if not isinstance(value, str) or kind is float else int(value.strip())
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{where}: {str(value)[:40]!r} is not a number") from None
    if (kind is float and result != result) or result in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{where}: {value!r} is not a finite number")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise InvalidInputError(f"{where}: {value!r} is not an integer")
    return result


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def merged(*parts: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        if part:
            out.update(part)
    return out
