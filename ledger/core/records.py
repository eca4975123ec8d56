"""The record: one generated output and everything needed to make it again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Modality(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    MODEL_3D = "3d"


class SeedOrigin(StrEnum):
    """Where the stored seed came from."""

    REQUEST = "request"  # the caller set it and the backend used it
    RESPONSE = "response"  # the backend picked it and reported it
    UNKNOWN = "unknown"  # no seed was captured


class Source(StrEnum):
    """How the record reached the ledger."""

    HOOK = "hook"  # the httpx recording transport or record_generation()
    PROXY = "proxy"  # the recording proxy (or its webhook receiver)
    IMPORT = "import"  # read from files: PNG chunks, EXIF, JSON logs
    API = "api"  # `seedledger record` or Ledger.add()
    REPLAY = "replay"  # made by the auditor
    SWEEP = "sweep"  # made by `seedledger sweep`


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class NewRecord:
    """A record before it is stored. Every field is what the backend was asked for or
    reported; ``params`` is the request task verbatim, with secrets removed."""

    backend: str
    task_type: str
    modality: Modality
    model: str
    seed: int | None
    seed_origin: SeedOrigin
    scheduler_requested: str | None = None
    scheduler: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    output_format: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    task_uuid: str | None = None
    output_uuid: str | None = None
    output_index: int = 0
    cost: float | None = None
    source: Source = Source.API
    experiment_id: str | None = None
    parent_id: int | None = None
    tags: tuple[str, ...] = ()
    status: Status = Status.OK
    error_code: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    #: Stable identity of this output at its source (e.g. task and output UUIDs), so
    #: the same output recorded twice (spool replay, re-import) is stored once.
    idempotency_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class Record(NewRecord):
    """A stored record. ``id`` is the ledger's own id; ``recorded_at`` when it landed."""

    id: int
    recorded_at: datetime
