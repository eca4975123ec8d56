"""A fingerprint's per-modality detail as a JSON-ready payload (the store's ``detail``
column) and back. Binary fields (a video's frame strip) travel as base64."""

from __future__ import annotations

import base64
from typing import Any

from ledger.errors import FingerprintError


def to_payload(detail: Any) -> dict[str, Any] | None:
    if detail is None:
        return None
    from dataclasses import asdict

    data = asdict(detail)
    for key, value in data.items():
        if isinstance(value, bytes):
            data[key] = base64.b64encode(value).decode("ascii")
        elif isinstance(value, tuple):
            data[key] = list(value)
    return data


def from_payload(modality: str, payload: dict[str, Any] | None) -> Any:
    if payload is None or modality == "image":
        return None
    try:
        if modality == "video":
            from ledger.fingerprint.video import VideoDetail

            fields = dict(payload)
            fields["strip"] = base64.b64decode(fields["strip"])
            return VideoDetail(**_tuples(fields))
        if modality == "audio":
            from ledger.fingerprint.audio import AudioDetail

            return AudioDetail(**_tuples(payload))
        from ledger.fingerprint.mesh import MeshDetail

        return MeshDetail(**_tuples(payload))
    except (KeyError, TypeError, ValueError) as exc:
        raise FingerprintError(f"stored {modality} fingerprint detail is unreadable: {exc}") from None


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
