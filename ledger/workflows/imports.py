"""`seedledger import PATH…`: records from files other tools wrote.

Formats, recognised by content (magic bytes / JSON shape), not by file name:

- **AUTOMATIC1111 / Forge PNG**: the ``parameters`` text chunk (infotext).
- **A1111 JPEG / WEBP**: the infotext in the EXIF ``UserComment``.
- **ComfyUI PNG**: the ``prompt`` chunk (API graph) and ``workflow`` (UI graph).
- **ComfyUI API graph JSON** (or a ``{"prompt": graph}`` queue body): one record per
  image-saving node (no image bytes, so no fingerprint).
- **Runware JSON / JSON Lines** request+response logs (:mod:`ledger.core.documents`).
- **seedledger stamps** (PNG iTXt / XMP): the image points at the record it was made
  from; if that record is in this ledger the file is reported as ``linked`` and nothing
  is added, otherwise the stamp's embedded record summary is imported.

Every image is fingerprinted as it is imported. Each file is one transaction: a file
that cannot be read, parsed or fingerprinted is skipped with its reason and nothing
of it is written. Re-importing adds nothing: image records are keyed by the file's
SHA-256 and output position (``import:<sha256>:<n>``), Runware records by their task
and output UUIDs, stamp records by the original record's key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from ledger.core import comfy
from ledger.core.documents import parse_documents
from ledger.core.infotext import record_from_infotext
from ledger.core.jsonsafe import JSONTooDeepError, loads_bounded
from ledger.core.records import Modality, NewRecord, SeedOrigin, Source
from ledger.core.seeds import parse_seed
from ledger.errors import FingerprintError, InvalidInputError, LedgerError, NotFoundError
from ledger.store import Ledger
from ledger.store.schema import records as records_table
from ledger.workflows import _media
from ledger.workflows.stamp import Stamp, stamp_in_png_text, stamp_in_xmp

#: File name endings picked up when a folder is imported (files named explicitly are
#: always tried, whatever their name).
SCANNED_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".json", ".jsonl", ".ndjson"})
MAX_FILE_BYTES: Final = 256 * 1024 * 1024
_INT32_MAX: Final = 2**31 - 1
#: Threads reading/parsing/fingerprinting ahead of the writer (see import_paths).
DEFAULT_WORKERS: Final = 1

Fingerprinter = Callable[[bytes], Any]


@dataclass(frozen=True)
class Parsed:
    """What one file holds: records to store, the image to fingerprint, its stamp."""

    kind: str
    records: tuple[NewRecord, ...]
    image: bytes | None = None
    stamp: Stamp | None = None


@dataclass(frozen=True)
class FileOutcome:
    """``imported`` (something added), ``unchanged`` (all already stored), ``linked``
    (a stamp pointing at a record of this ledger) or ``skipped`` (with ``reason``)."""

    path: str
    status: str
    kind: str | None = None
    record_ids: tuple[int, ...] = ()
    added: int = 0
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"record_ids": list(self.record_ids)}


@dataclass(frozen=True)
class ImportSummary:
    outcomes: tuple[FileOutcome, ...]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def records_added(self) -> int:
        return sum(o.added for o in self.outcomes)


# -- finding files ------------------------------------------------------------------


def iter_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, str | None]]:
    """Files to import, in a stable order: (path, None) or (path, reason it is unusable).

    Folders are walked recursively (hidden entries and symlinked folders skipped) for
    the :data:`SCANNED_SUFFIXES`; a named file is always tried.
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if name.startswith(".") or candidate.suffix.lower() not in SCANNED_SUFFIXES:
                        continue
                    if candidate not in seen:
                        seen.add(candidate)
                        yield candidate, None
        elif path.is_file():
            if path not in seen:
                seen.add(path)
                yield path, None
        else:
            yield path, "no such file or folder"


# -- parsing (pure) -----------------------------------------------------------------


def parse_file(
    name: str, data: bytes, *, source: Source = Source.IMPORT, created_at: datetime | None = None
) -> Parsed:
    """Parse one file's bytes. Raises :class:`LedgerError` subclasses only.

    ``created_at`` (the file's modification time when importing) dates image records,
    whose metadata carries no time of its own; JSON logs keep their own times.
    """
    sha = hashlib.sha256(data).hexdigest()
    kind = _media.sniff(data)
    if kind is not None:
        parsed = _parse_image(name, data, kind, sha, source)
        if created_at is not None and parsed.kind != "seedledger-stamp":
            dated = tuple(dataclasses.replace(r, created_at=created_at) for r in parsed.records)
            parsed = dataclasses.replace(parsed, records=dated)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInputError("not a PNG/JPEG/WEBP image and not UTF-8 text") from None
        parsed = _parse_text(name, text, sha, source)
    for record in parsed.records:
        _check_storable(record)
    return parsed


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _check_storable(record: NewRecord) -> None:
    # PostgreSQL text and JSON cannot hold NUL; refuse the file rather than fail the
    # database write (which would stop the whole import).
    fields = (record.prompt, record.negative_prompt, record.model, record.scheduler, record.params)
    if any(_has_nul(value) for value in fields):
        raise InvalidInputError("metadata contains NUL characters, which the ledger cannot store")
    # Integer columns are 32-bit on PostgreSQL: an absurd size or step count is bad input.
    for name in ("width", "height", "steps", "output_index"):
        value = getattr(record, name)
        if value is not None and not 0 <= value <= _INT32_MAX:
            raise InvalidInputError(f"{name} {value} is out of range")
    if record.cfg_scale is not None and not math.isfinite(record.cfg_scale):
        raise InvalidInputError(f"CFG scale {record.cfg_scale} is not a finite number")


def _import_info(name: str, sha: str, fmt: str) -> dict[str, Any]:
    # Only the base name: full paths would leak the importer's directory layout.
    return {"import": {"file": os.path.basename(name), "sha256": sha, "format": fmt}}


def _parse_image(name: str, data: bytes, kind: str, sha: str, source: Source) -> Parsed:
    key = f"import:{sha}:0"
    output_format = "JPG" if kind == "jpeg" else kind.upper()
    if kind == "png":
        text = _media.png_text(data)
        stamp = stamp_in_png_text(text)
        if "parameters" in text:
            record = record_from_infotext(
                text["parameters"],
                source=source,
                output_format=output_format,
                idempotency_key=key,
                extra_params=_import_info(name, sha, kind),
            )
            return Parsed("a1111-png", (record,), data, stamp)
        if "prompt" in text:
            return Parsed("comfyui-png", (_comfy_png(name, text, sha, key, source),), data, stamp)
        if stamp is not None:
            return Parsed(
                "seedledger-stamp", (_record_from_stamp(stamp, name, sha, kind, source),), data, stamp
            )
        raise InvalidInputError(
            "PNG has no generation metadata (no 'parameters', 'prompt' or seedledger chunk)"
        )
    meta = _media.image_meta(data)
    stamp = stamp_in_xmp(meta.xmp)
    if meta.user_comment and meta.user_comment.strip():
        record = record_from_infotext(
            meta.user_comment,
            source=source,
            output_format=output_format,
            idempotency_key=key,
            extra_params=_import_info(name, sha, kind),
        )
        return Parsed(f"a1111-{kind}", (record,), data, stamp)
    if stamp is not None:
        return Parsed("seedledger-stamp", (_record_from_stamp(stamp, name, sha, kind, source),), data, stamp)
    raise InvalidInputError(f"{kind.upper()} has no EXIF UserComment infotext and no seedledger stamp")


def _comfy_png(name: str, text: dict[str, str], sha: str, key: str, source: Source) -> NewRecord:
    graph = comfy.load_graph(text["prompt"])
    workflow: Any = None
    if "workflow" in text:
        try:
            workflow = loads_bounded(text["workflow"])
        except InvalidInputError:
            workflow = text["workflow"]  # kept verbatim: it is provenance, not input
    outputs = comfy.outputs_of(graph)
    output, how = comfy.match_output(outputs, name)
    return comfy.record_for_output(
        output,
        graph,
        workflow=workflow,
        all_outputs=outputs,
        matched_by=how,
        source=source,
        output_format="PNG",
        idempotency_key=key,
        extra_params=_import_info(name, sha, "png"),
    )


def _record_from_stamp(stamp: Stamp, name: str, sha: str, kind: str, source: Source) -> NewRecord:
    """A record from a stamp's embedded summary (the original ledger is elsewhere)."""
    r = stamp.record
    try:
        seed = parse_seed(r["seed"]) if r.get("seed") is not None else None
        modality = Modality(r.get("modality", "image"))
        origin = SeedOrigin(r.get("seed_origin", "unknown" if seed is None else "request"))
    except (ValueError, LedgerError) as exc:
        raise InvalidInputError(f"seedledger stamp: bad record summary: {exc}") from None
    if not isinstance(r.get("model"), str) or not isinstance(r.get("backend"), str):
        raise InvalidInputError("seedledger stamp: record summary lacks backend/model")

    def text(key: str) -> str | None:
        value = r.get(key)
        return value if isinstance(value, str) else None

    def number(key: str, kind_: type) -> Any:
        value = r.get(key)
        return kind_(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    params = {
        "format": "seedledger-stamp",
        "stamp": {
            "record_id": stamp.record_id,
            "idempotency_key": stamp.idempotency_key,
            "stamped_at": stamp.stamped_at,
            "checkpoint": dict(stamp.checkpoint) if stamp.checkpoint else None,
        },
        **_import_info(name, sha, kind),
    }
    return NewRecord(
        backend=r["backend"],
        task_type=text("task_type") or "imageInference",
        modality=modality,
        model=r["model"],
        seed=seed,
        seed_origin=origin,
        scheduler_requested=text("scheduler_requested"),
        scheduler=text("scheduler"),
        prompt=text("prompt"),
        negative_prompt=text("negative_prompt"),
        width=number("width", int),
        height=number("height", int),
        steps=number("steps", int),
        cfg_scale=number("cfg_scale", float),
        output_format=text("output_format"),
        params=params,
        task_uuid=text("task_uuid"),
        output_uuid=text("output_uuid"),
        output_index=number("output_index", int) or 0,
        source=source,
        created_at=_stamp_time(r.get("created_at")),
        # The original record's key: the same output is one record in any ledger.
        idempotency_key=stamp.idempotency_key,
    )


def _stamp_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    return datetime.now(UTC)


def _parse_text(name: str, text: str, sha: str, source: Source) -> Parsed:
    try:
        whole = loads_bounded(text)
    except JSONTooDeepError:
        raise
    except InvalidInputError:
        whole = None
    graph = None
    if comfy.is_api_graph(whole):
        graph = whole
    elif isinstance(whole, dict) and comfy.is_api_graph(whole.get("prompt")):
        graph = whole["prompt"]
    if graph is not None:
        graph = comfy.load_graph(graph)
        outputs = comfy.outputs_of(graph)
        if not outputs:
            raise InvalidInputError("ComfyUI graph has no image-saving node (SaveImage)")
        workflow = None
        if isinstance(whole, dict) and isinstance(whole.get("extra_data"), dict):
            extra = whole["extra_data"].get("extra_pnginfo")
            workflow = extra.get("workflow") if isinstance(extra, dict) else None
        records = tuple(
            comfy.record_for_output(
                output,
                graph,
                workflow=workflow,
                all_outputs=outputs,
                matched_by="graph",
                source=source,
                idempotency_key=f"import:{sha}:{output.node_id}",
                output_index=index,
                extra_params=_import_info(name, sha, "json"),
            )
            for index, output in enumerate(outputs)
        )
        return Parsed("comfyui-json", records)
    if isinstance(whole, dict) and "nodes" in whole and "links" in whole:
        raise InvalidInputError("a ComfyUI UI workflow without the API graph ('prompt') cannot be mapped")
    return Parsed("runware-json", tuple(parse_documents(text, source=source)))


# -- storing ------------------------------------------------------------------------


def default_fingerprinter() -> Fingerprinter:
    from ledger.fingerprint import fingerprint_bytes

    return fingerprint_bytes


def _ids_by_key(conn: Any, keys: Iterable[str]) -> dict[str, int]:
    wanted = list(keys)
    if not wanted:
        return {}
    rows = conn.execute(
        select(records_table.c.idempotency_key, records_table.c.id).where(
            records_table.c.idempotency_key.in_(wanted)
        )
    )
    return {key: int(rid) for key, rid in rows}


def _linked(ledger: Ledger, stamp: Stamp | None) -> int | None:
    """The stamped record's id when it is in this ledger (same id and key)."""
    if stamp is None:
        return None
    try:
        record = ledger.get(stamp.record_id)
    except NotFoundError:
        return None
    return record.id if record.idempotency_key == stamp.idempotency_key else None


def store_parsed(ledger: Ledger, parsed: Parsed, fingerprint: Any | None) -> tuple[list[int], int]:
    """Store one file's records (and the image fingerprint) in one transaction.

    Returns (record ids, how many were new). Fingerprints are attached to new records
    only: an existing record keeps the fingerprint of the bytes it was made with.
    """
    with ledger.writing() as conn:
        keys = [r.idempotency_key or "" for r in parsed.records]
        existing = _ids_by_key(conn, keys)
        # The same output twice in one file (a log that repeats an exchange) is one record.
        unique: dict[str, NewRecord] = {}
        for record in parsed.records:
            unique.setdefault(record.idempotency_key or "", record)
        new = [r for key, r in unique.items() if key not in existing]
        fingerprints = [fingerprint] * len(new) if fingerprint is not None else None
        new_ids = _add(ledger, conn, new, fingerprints)
        ids = {**existing, **{r.idempotency_key or "": rid for r, rid in zip(new, new_ids, strict=True)}}
        return [ids[key] for key in keys], len(new)


def _add(ledger: Ledger, conn: Any, new: list[NewRecord], fingerprints: list[Any] | None) -> list[int]:
    if not new:
        return []
    if fingerprints is None:
        return ledger.add(new, conn=conn)
    return ledger.add(new, conn=conn, fingerprints=fingerprints)


@dataclass(frozen=True)
class Prepared:
    """One file read, parsed and fingerprinted (no database involved yet)."""

    path: str
    parsed: Parsed
    fingerprint: Any | None = None
    fingerprint_error: str | None = None


def prepare(path: Path, fingerprinter: Fingerprinter | None) -> Prepared | FileOutcome:
    """The database-free part of importing one file: a skip outcome or a Prepared."""
    shown = str(path)
    try:
        stat = path.stat()
        if stat.st_size > MAX_FILE_BYTES:
            return FileOutcome(shown, "skipped", reason=f"larger than {MAX_FILE_BYTES >> 20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        return FileOutcome(shown, "skipped", reason=f"cannot read: {exc.strerror or exc}")
    try:
        parsed = parse_file(path.name, data, created_at=datetime.fromtimestamp(stat.st_mtime, UTC))
    except LedgerError as exc:
        return FileOutcome(shown, "skipped", reason=exc.message)
    if parsed.image is None or fingerprinter is None:
        return Prepared(shown, parsed)
    try:
        return Prepared(shown, parsed, fingerprinter(parsed.image))
    except FingerprintError as exc:
        return Prepared(shown, parsed, fingerprint_error=f"cannot fingerprint: {exc.message}")


def finish(ledger: Ledger, prepared: Prepared, tags: tuple[str, ...] = ()) -> FileOutcome:
    """Store a prepared file in one transaction (or link it to its stamped record)."""
    parsed, shown = prepared.parsed, prepared.path
    linked = _linked(ledger, parsed.stamp)
    if linked is not None:
        return FileOutcome(shown, "linked", parsed.kind, (linked,), 0)
    if prepared.fingerprint_error is not None:
        return FileOutcome(shown, "skipped", parsed.kind, reason=prepared.fingerprint_error)
    if tags:
        records = tuple(
            dataclasses.replace(r, tags=tuple(dict.fromkeys((*r.tags, *tags)))) for r in parsed.records
        )
        parsed = dataclasses.replace(parsed, records=records)
    try:
        ids, added = store_parsed(ledger, parsed, prepared.fingerprint)
    except LedgerError as exc:
        if exc.exit_code == 4:  # the database itself failed: stop, do not skip on
            raise
        return FileOutcome(shown, "skipped", parsed.kind, reason=exc.message)
    return FileOutcome(shown, "imported" if added else "unchanged", parsed.kind, tuple(ids), added)


def import_one(
    ledger: Ledger, path: Path, *, fingerprinter: Fingerprinter | None, tags: tuple[str, ...] = ()
) -> FileOutcome:
    prepared = prepare(path, fingerprinter)
    return prepared if isinstance(prepared, FileOutcome) else finish(ledger, prepared, tags)


def import_paths(
    ledger: Ledger,
    paths: Sequence[str | os.PathLike[str]],
    *,
    fingerprinter: Fingerprinter | None = None,
    tags: tuple[str, ...] = (),
    progress: Callable[[FileOutcome], None] | None = None,
    workers: int | None = None,
) -> ImportSummary:
    """Import every file under ``paths``, in order; one transaction per file.

    Reading, parsing and fingerprinting (pure, and mostly outside the GIL in the
    decoder) run ahead in a worker thread while this thread stores the previous files,
    so the database work hides behind the decoding. One worker by default: the
    fingerprint decoder uses ``warnings.catch_warnings``, which is not thread-safe, so
    two decodes must not overlap (and the decoder already spreads its hashing over
    threads). ``workers=0`` does everything on the calling thread.
    """
    if not paths:
        raise InvalidInputError("nothing to import: give at least one file or folder")
    fp = fingerprinter if fingerprinter is not None else default_fingerprinter()
    if workers is None:
        workers = DEFAULT_WORKERS
    outcomes: list[FileOutcome] = []

    def settle(item: Prepared | FileOutcome) -> None:
        outcome = item if isinstance(item, FileOutcome) else finish(ledger, item, tags)
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)

    def missing(path: Path, problem: str) -> FileOutcome:
        return FileOutcome(str(path), "skipped", reason=problem)

    if workers <= 0:
        for path, problem in iter_files(paths):
            settle(missing(path, problem) if problem else prepare(path, fp))
        return ImportSummary(tuple(outcomes))

    # A bounded window of files in flight keeps memory flat for any folder size.
    window: deque[Future[Prepared | FileOutcome]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seedledger-import") as pool:
        try:
            for path, problem in iter_files(paths):
                if problem:
                    done: Future[Prepared | FileOutcome] = Future()
                    done.set_result(missing(path, problem))
                    window.append(done)
                else:
                    window.append(pool.submit(prepare, path, fp))
                if len(window) > 2 * workers:
                    settle(window.popleft().result())
            while window:
                settle(window.popleft().result())
        except BaseException:
            for pending in window:
                pending.cancel()
            raise
    return ImportSummary(tuple(outcomes))
