"""What a spool entry holds: the records of one exchange, already redacted, plus the
output payloads to fingerprint.

An entry is JSON. Each record is stored close to its database row (JSON columns as
pre-serialized strings, the created time as ISO 8601) so the writer can land tens of
thousands per second without rebuilding dataclasses. Secrets never get here: records
come from :func:`ledger.core.runware.records_for_task` (which redacts) and are checked
once more against the known secrets before encoding.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.capture.bulk import storage_time
from ledger.core.records import NewRecord
from ledger.core.redaction import redact, redact_url

ENTRY_VERSION = 1

#: Record fields that become columns verbatim (everything but the JSON ones).
_PLAIN_FIELDS = (
    "backend",
    "task_type",
    "model",
    "scheduler_requested",
    "scheduler",
    "seed",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "output_format",
    "task_uuid",
    "output_uuid",
    "output_index",
    "cost",
    "experiment_id",
    "parent_id",
    "error_code",
    "error",
)


@dataclass(frozen=True)
class Output:
    """An output to fingerprint: its bytes (from a base64 result or an in-process
    pipeline) or a URL for a bounded background download."""

    data: bytes | None = None
    url: str | None = None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def record_to_json(record: NewRecord, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(record, name) for name in _PLAIN_FIELDS}
    out["idempotency_key"] = key
    out["modality"] = str(record.modality)
    out["seed_origin"] = str(record.seed_origin)
    out["source"] = str(record.source)
    out["status"] = str(record.status)
    out["params"] = _dumps(dict(record.params))
    out["response"] = _dumps(dict(record.response))
    out["tags"] = _dumps(list(record.tags))
    out["created_at"] = storage_time(record.created_at)
    return out


def encode_entry(
    records: Sequence[NewRecord],
    outputs: Mapping[str, Output] | None = None,
    *,
    known_secrets: tuple[str, ...] = (),
) -> bytes:
    """The spool payload for ``records`` (each must carry an ``idempotency_key``).

    ``outputs`` maps an idempotency key to the output to fingerprint.
    """
    body: dict[str, Any] = {"v": ENTRY_VERSION, "records": []}
    for record in records:
        if not record.idempotency_key:
            raise ValueError("spooled records need an idempotency_key (exactly-once replay)")
        body["records"].append(record_to_json(record, record.idempotency_key))
    if outputs:
        body["outputs"] = {
            key: (
                {"b64": base64.b64encode(output.data).decode("ascii")}
                if output.data is not None
                else {"url": output.url}
            )
            for key, output in outputs.items()
            # A URL with credentials in it (a signed URL) is a secret: not spooled, so
            # that output is fingerprinted later from its bytes instead.
            if output.data is not None or (output.url and redact_url(output.url) == output.url)
        }
    text = _dumps(body)
    secrets = [s for s in known_secrets if s and s in text]
    if secrets:
        # Belt and braces: a secret echoed anywhere (an error message, a URL) is cut out.
        # Checked on the serialized entry so the common case (no secret) costs one scan.
        body["records"] = redact(body["records"], tuple(secrets))
        if any(s in _dumps(body.get("outputs") or {}) for s in secrets):
            body.pop("outputs")
        text = _dumps(body)
    return text.encode("utf-8")


@dataclass(frozen=True)
class DecodedEntry:
    records: list[dict[str, Any]]
    outputs: dict[str, Output]


def decode_entries(payloads: Sequence[bytes]) -> list[DecodedEntry | ValueError]:
    """Parse many payloads with one JSON call (far cheaper than one call each); an
    unreadable payload yields its ValueError in place, the others still decode."""
    try:
        bodies = json.loads(b"[" + b",".join(payloads) + b"]")
    except ValueError:
        bodies = None
    out: list[DecodedEntry | ValueError] = []
    for index, payload in enumerate(payloads):
        try:
            out.append(_decoded(bodies[index] if bodies is not None else json.loads(payload)))
        except (ValueError, KeyError, TypeError) as exc:
            out.append(exc if isinstance(exc, ValueError) else ValueError(type(exc).__name__))
    return out


def decode_entry(payload: bytes) -> DecodedEntry:
    """Parse a spool payload. Raises ValueError for a payload this code cannot read."""
    return _decoded(json.loads(payload))


def _decoded(body: Any) -> DecodedEntry:
    if not isinstance(body, dict) or body.get("v") != ENTRY_VERSION:
        raise ValueError(f"unknown spool entry version {body.get('v') if isinstance(body, dict) else None!r}")
    outputs: dict[str, Output] = {}
    for key, item in (body.get("outputs") or {}).items():
        if "b64" in item:
            outputs[key] = Output(data=base64.b64decode(item["b64"]))
        elif item.get("url"):
            outputs[key] = Output(url=item["url"])
    return DecodedEntry(records=body["records"], outputs=outputs)


def safe_url(url: str) -> str:
    """A URL as it may appear in logs (credentials removed)."""
    return redact_url(url)
