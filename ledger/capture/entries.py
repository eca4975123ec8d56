"""What a spool entry holds: the records of one exchange, already redacted, plus the
output payloads to fingerprint.

Entry versions: 2 is the records of one exchange, with outputs as bytes or URLs; 3 is
one in-process pipeline call (``record_pipeline``): the call's facts, expanded into
its records when read (:mod:`ledger.capture.pipeline_calls`), and its images as
decoded pixels, encoded to PNG by the writer (``"pixels"``: :class:`Pixels` by
idempotency key). An older reader refuses a version-3 entry whole (it is kept in
``dead/``), never reads it with its pixels dropped. Both versions are read here.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.capture.pipeline_calls import call_records
from ledger.core.records import NewRecord
from ledger.core.redaction import redact, redact_url

ENTRY_VERSION = 2
CALL_VERSION = 3
READ_VERSIONS = frozenset({ENTRY_VERSION, CALL_VERSION})

#: The columns an entry carries, in order: each record is a JSON array of these values
#: (positional arrays decode much faster than objects with 33 keys). The order is part
#: of the entry version; ``recorded_at`` is set by the writer when the batch lands.
ENTRY_COLUMNS: tuple[str, ...] = (
    "idempotency_key",
    "backend",
    "task_type",
    "modality",
    "model",
    "scheduler_requested",
    "scheduler",
    "seed",
    "seed_origin",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "output_format",
    "params",
    "response",
    "task_uuid",
    "output_uuid",
    "output_index",
    "cost",
    "source",
    "experiment_id",
    "parent_id",
    "tags",
    "status",
    "error_code",
    "error",
    "created_at",
)
KEY_INDEX = ENTRY_COLUMNS.index("idempotency_key")
TAGS_INDEX = ENTRY_COLUMNS.index("tags")
_JSON_FIELDS = {"params", "response"}
_STR_FIELDS = {"modality", "seed_origin", "source", "status"}


def storage_time(value: datetime) -> str:
    """UTC time as ``YYYY-MM-DD HH:MM:SS.ffffff+00:00``: its first 26 characters are
    SQLAlchemy's SQLite DATETIME storage format; PostgreSQL casts the whole string to
    ``timestamptz``. Entries carry times in this form so the writer only slices."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}+00:00"
    )


@dataclass(frozen=True)
class Pixels:
    """An image as decoded pixels, to be PNG-encoded off the caller's path
    (:mod:`ledger.capture.pixels`). ``data`` is the row-major bytes of a ``width`` x
    ``height`` image of PIL ``mode`` (``L``, ``LA``, ``RGB``, ``RGBA``); with a ``dtype``
    other than ``|u1`` it is an HxWxC numpy array of that dtype in [0, 1] (a pipeline's
    ``output_type="np"``), converted to 8 bits the way the PNG encoder always did."""

    mode: str
    width: int
    height: int
    data: bytes
    dtype: str = "|u1"


@dataclass(frozen=True)
class Output:
    """An output to fingerprint: its bytes (from a base64 result or an in-process
    pipeline), its decoded ``pixels`` (an in-process pipeline; the writer encodes the
    PNG) or a URL for a bounded background download; a result of several files
    (a 3D result's ``outputs.files``) has one Output per file in ``files``, fetched and
    fingerprinted together."""

    data: bytes | None = None
    url: str | None = None
    files: tuple[Output, ...] = ()
    pixels: Pixels | None = None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def record_values(record: NewRecord, key: str) -> list[Any]:
    """One record as the positional array an entry holds (see ENTRY_COLUMNS)."""
    out: list[Any] = []
    for name in ENTRY_COLUMNS:
        if name == "idempotency_key":
            out.append(key)
        elif name in _JSON_FIELDS:
            out.append(_dumps(dict(getattr(record, name))))
        elif name == "tags":
            out.append(_dumps(list(record.tags)))
        elif name == "created_at":
            out.append(storage_time(record.created_at))
        elif name in _STR_FIELDS:
            out.append(str(getattr(record, name)))
        else:
            out.append(getattr(record, name))
    return out


def as_dict(values: Sequence[Any]) -> dict[str, Any]:
    """A spooled record by column name (for status output, debugging and tests)."""
    return dict(zip(ENTRY_COLUMNS, values, strict=True))


def encode_entry(
    records: Sequence[NewRecord],
    outputs: Mapping[str, Output] | None = None,
    *,
    known_secrets: tuple[str, ...] = (),
    environments: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """The spool payload for ``records`` (each must carry an ``idempotency_key``).

    ``outputs`` maps an idempotency key to the output to fingerprint; ``environments``
    to the runtime it was made in (an optional key: older entries have none).
    """
    body: dict[str, Any] = {"v": ENTRY_VERSION, "records": []}
    for record in records:
        if not record.idempotency_key:
            raise ValueError("spooled records need an idempotency_key (exactly-once replay)")
        body["records"].append(record_values(record, record.idempotency_key))
    if outputs:
        body["outputs"] = {key: _item(output) for key, output in outputs.items() if _spoolable(output)}
    if environments:
        body["environments"] = {key: dict(env) for key, env in environments.items()}
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


def encode_members(facts: Mapping[str, Any]) -> bytes:
    """``facts`` as JSON object members (no braces), for :func:`encode_call`'s ``shared``."""
    return _dumps(dict(facts)).encode("utf-8")[1:-1]


def encode_call(call: Mapping[str, Any], outputs: Mapping[str, Output], *, shared: bytes = b"") -> bytes:
    """The spool payload of one recorded pipeline call (version 3): its facts, which
    :func:`ledger.capture.pipeline_calls.call_records` expands into records when the
    entry is read, and its outputs by idempotency key (pixels spliced in). ``shared``
    holds more facts, encoded once by :func:`encode_members` for many calls."""
    pixels = {k: o.pixels for k, o in outputs.items() if o.data is None and o.pixels is not None}
    rest = {key: _item(output) for key, output in outputs.items() if key not in pixels and _spoolable(output)}
    members = _dumps(dict(call)).encode("utf-8")[1:-1]
    parts = [b'{"v":', str(CALL_VERSION).encode(), b',"call":{', shared]
    parts += [b"," if shared and members else b"", members, b"}"]
    if rest:
        parts += [b',"outputs":', _dumps(rest).encode("utf-8")]
    parts.append(b"}")
    payload = b"".join(parts)
    return _with_pixels(payload, pixels) if pixels else payload


def _with_pixels(payload: bytes, pixels: Mapping[str, Pixels]) -> bytes:
    """``payload`` with a ``"pixels"`` member, each image's base64 spliced in as bytes:
    base64 needs no JSON escaping, and the encoder scanning megabytes of it would cost
    the caller more than the copy itself."""
    parts = [payload[:-1], b',"pixels":{']  # payload is one JSON object: drop its "}"
    for index, (key, p) in enumerate(pixels.items()):
        head = _dumps({"mode": p.mode, "size": [p.width, p.height], "dtype": p.dtype})[:-1]
        parts += [b"," if index else b"", _dumps(key).encode(), b":", head.encode(), b',"b64":"']
        parts += [base64.b64encode(p.data), b'"}']
    parts.append(b"}}")
    return b"".join(parts)


def _item(output: Output) -> dict[str, Any]:
    if output.files:
        return {"files": [_item(part) for part in output.files]}
    if output.data is not None:
        return {"b64": base64.b64encode(output.data).decode("ascii")}
    return {"url": output.url}


def _spoolable(output: Output) -> bool:
    # A URL with credentials in it (a signed URL) is a secret: not spooled, so that
    # output is fingerprinted later from its bytes instead.
    if output.files:
        return all(_spoolable(part) for part in output.files)
    return output.data is not None or bool(output.url and redact_url(output.url) == output.url)


def _output(item: Mapping[str, Any]) -> Output | None:
    if "files" in item:
        parts = [_output(part) for part in item["files"]]
        return Output(files=tuple(p for p in parts if p is not None)) if all(parts) else None
    if "b64" in item:
        return Output(data=base64.b64decode(item["b64"]))
    return Output(url=item["url"]) if item.get("url") else None


def _pixels(item: Any) -> Output:
    width, height = item["size"]
    if not all(isinstance(v, str) for v in (item["mode"], item["dtype"], item["b64"])) or not all(
        isinstance(v, int) and v > 0 for v in (width, height)
    ):
        raise ValueError("malformed pixels in spool entry")
    data = base64.b64decode(item["b64"])
    return Output(pixels=Pixels(item["mode"], width, height, data, item["dtype"]))


@dataclass(frozen=True)
class DecodedEntry:
    records: list[list[Any]]  # positional, in ENTRY_COLUMNS order
    outputs: dict[str, Output]
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    if not isinstance(body, dict) or body.get("v") not in READ_VERSIONS:
        raise ValueError(f"unknown spool entry version {body.get('v') if isinstance(body, dict) else None!r}")
    outputs: dict[str, Output] = {}
    for key, item in (body.get("outputs") or {}).items():
        output = _output(item)
        if output is not None:
            outputs[key] = output
    for key, item in (body.get("pixels") or {}).items():
        outputs[key] = _pixels(item)
    if "call" in body:
        return _expanded(body["call"], outputs)
    records = body["records"]
    if not isinstance(records, list) or not all(
        isinstance(r, list) and len(r) == len(ENTRY_COLUMNS) for r in records
    ):
        raise ValueError("malformed records in spool entry")
    environments = body.get("environments") or {}
    if not isinstance(environments, dict) or not all(isinstance(e, dict) for e in environments.values()):
        raise ValueError("malformed environments in spool entry")
    return DecodedEntry(records=records, outputs=outputs, environments=environments)


def _expanded(call: Any, outputs: dict[str, Output]) -> DecodedEntry:
    """A pipeline call's entry as the records it stands for, each with the call's runtime."""
    try:
        records = call_records(call)
    except Exception as exc:  # facts this code cannot read: the entry is kept in dead/
        raise ValueError(f"malformed pipeline call in spool entry: {type(exc).__name__}") from None
    environment = call.get("environment") or {}
    if not isinstance(environment, dict):
        raise ValueError("malformed environment in spool entry")
    keys = [r.idempotency_key or "" for r in records]
    return DecodedEntry(
        records=[record_values(r, key) for r, key in zip(records, keys, strict=True)],
        outputs=outputs,
        environments=dict.fromkeys(keys, environment) if environment else {},
    )


def safe_url(url: str) -> str:
    """A URL as it may appear in logs (credentials removed)."""
    return redact_url(url)
