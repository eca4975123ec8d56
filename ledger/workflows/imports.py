"""`seedledger import PATH…`: records from files other tools wrote.

Formats are recognised by content (magic bytes, metadata carriers, JSON shape), never
by file name, by the reader registry (:mod:`ledger.workflows.readers`: A1111/Forge
infotext, ComfyUI graphs, InvokeAI, SwarmUI, Fooocus, NovelAI, Draw Things, Civitai,
seedledger stamps, Runware JSON / JSON Lines logs). A stamped image whose record is in
this ledger is reported as ``linked`` and adds nothing.

Every output is fingerprinted as it is imported: still images as images; animated
WEBP/GIF, MP4/MOV/WEBM, WAV/MP3/FLAC/OGG/M4A and GLB files (read by
:mod:`ledger.workflows.readers.media`) with the video, audio or 3D fingerprint. Only
animated PNGs are kept without a fingerprint, and the outcome says so. Each file is one transaction: a file
that cannot be read, parsed or fingerprinted is skipped with its reason and nothing
of it is written. Re-importing adds nothing: image records are keyed by the file's
SHA-256 and output position (``import:<sha256>:<n>``), Runware records by their task
and output UUIDs, stamp records by the original record's key.

With an output archive, each fingerprinted image whose fingerprint a record holds is
kept there after its transaction (``archived`` in the outcome); an archive that is full
or failing never skips a file: the outcome notes why the image was not archived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from ledger.core.records import Modality, NewRecord, Source
from ledger.errors import FingerprintError, InvalidInputError, LedgerError, NotFoundError
from ledger.fingerprint import fingerprint
from ledger.store import Ledger
from ledger.store.archive import Archive
from ledger.store.browse import records_with_file
from ledger.store.schema import records as records_table
from ledger.workflows import _media, readers
from ledger.workflows._storable import check_storable, finite, one_line, stated_fields
from ledger.workflows.readers import Reading
from ledger.workflows.readers.media import media_kind, read_media
from ledger.workflows.stamp import Stamp

#: File name endings picked up when a folder is imported (files named explicitly are
#: always tried, whatever their name).
SCANNED_SUFFIXES: Final = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".json", ".jsonl", ".ndjson"}
    | {".mp4", ".mov", ".webm", ".mkv", ".gif", ".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".glb"}
)
MAX_FILE_BYTES: Final = 256 * 1024 * 1024
#: Threads reading/parsing/fingerprinting ahead of the writer (see import_paths).
DEFAULT_WORKERS: Final = 1

Fingerprinter = Callable[[bytes], Any]


#: What one file holds (records, the image to fingerprint, its stamp).
Parsed = Reading


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
    #: Record fields the file stated / did not state, and what the reader noted
    #: (values computed at run time, a dangling link, which save node, …).
    read: tuple[str, ...] = ()
    not_read: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: True/False when an archive was given and the file is a fingerprinted image.
    archived: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return out | {k: list(out[k]) for k in ("record_ids", "read", "not_read", "notes")}


@dataclass(frozen=True)
class ImportSummary:
    outcomes: tuple[FileOutcome, ...]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def records_added(self) -> int:
        return sum(o.added for o in self.outcomes)

    @property
    def archived(self) -> int:
        return sum(o.archived is True for o in self.outcomes)


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
    """Parse one file's bytes through the reader registry. Raises :class:`LedgerError`
    subclasses only.

    ``created_at`` (the file's modification time when importing) dates image records,
    whose metadata carries no time of its own; JSON logs keep their own times.
    """
    sha = hashlib.sha256(data).hexdigest()
    kind = _media.sniff(data)
    media = None if kind is not None else media_kind(data)
    if kind is not None or media is not None:
        if kind is not None:
            parsed = readers.read_image(data, readers.Context(name, sha, kind, source))
            if parsed.image is not None and kind == "webp" and _media.is_animated(data):
                parsed = _as_video(parsed)  # an animated WEBP is fingerprinted as a video
        else:
            assert media is not None
            parsed = read_media(data, readers.Context(name, sha, media[1], source), media[0])
        if created_at is not None and parsed.kind != "seedledger-stamp":
            dated = tuple(dataclasses.replace(r, created_at=created_at) for r in parsed.records)
            parsed = dataclasses.replace(parsed, records=dated)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInputError(
                "not a PNG/JPEG/WEBP image and not UTF-8 text (nor a video, audio or GLB file)"
            ) from None
        parsed = readers.read_text(text, readers.Context(name, sha, "json", source))
    records = tuple(finite(r) for r in parsed.records)
    for record in records:
        check_storable(record)
    return dataclasses.replace(parsed, records=records)


def _as_video(parsed: Parsed) -> Parsed:
    records = tuple(
        dataclasses.replace(r, modality=Modality.VIDEO, task_type="videoInference") for r in parsed.records
    )
    return dataclasses.replace(parsed, records=records, modality="video")


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
    note: str | None = None


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
        return FileOutcome(shown, "skipped", reason=one_line(exc.message))
    if parsed.image is None or fingerprinter is None:
        return Prepared(shown, parsed)
    if parsed.modality == "image" and _media.is_animated(parsed.image):
        # An animated PNG: no video decoder reads APNG; kept, unfingerprinted, and says so.
        note = "animated PNG: not fingerprinted (APNG is not a supported video format)"
        return Prepared(shown, parsed, note=note)
    try:
        if parsed.modality != "image":  # video, audio, 3D: the media fingerprint (bounded decode)
            return Prepared(shown, parsed, fingerprint(parsed.image, parsed.modality))
        return Prepared(shown, parsed, fingerprinter(parsed.image))
    except FingerprintError as exc:
        return Prepared(shown, parsed, fingerprint_error=f"cannot fingerprint: {exc.message}")


def _archive(ledger: Ledger, archive: Archive, prepared: Prepared, added: int) -> str | None:
    """Keep the imported image in the archive; the reason when it was not."""
    data, fp = prepared.parsed.image, prepared.fingerprint
    if data is None or fp is None:
        return None
    # A record stored earlier keeps the fingerprint of its own bytes: archive this file
    # only when some record's fingerprint names it (the archive holds checkable files).
    if not added and not records_with_file(ledger, fp.file_sha256):
        return "not archived: no record's fingerprint names this file"
    try:
        archive.keep(data, fp.file_sha256)
    except LedgerError as exc:
        return f"not archived: {one_line(exc.message)}"
    return None


def finish(
    ledger: Ledger, prepared: Prepared, tags: tuple[str, ...] = (), archive: Archive | None = None
) -> FileOutcome:
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
    read, not_read, notes = stated_fields(parsed.records)
    notes = tuple(one_line(n) for n in notes)
    if prepared.note is not None:
        notes = (*notes, prepared.note)
    archived: bool | None = None
    if archive is not None and prepared.fingerprint is not None:
        problem = _archive(ledger, archive, prepared, added)
        archived = problem is None
        if problem is not None:
            notes = (*notes, problem)
    status = "imported" if added else "unchanged"
    return FileOutcome(shown, status, parsed.kind, tuple(ids), added, None, read, not_read, notes, archived)


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
    archive: Archive | None = None,
) -> ImportSummary:
    """Import every file under ``paths``, in order; one transaction per file.

    Reading, parsing and fingerprinting (pure, and mostly outside the GIL in the
    decoder) run ahead in a worker thread while this thread stores the previous files,
    so the database work hides behind the decoding. One worker by default: the
    fingerprint decoder uses ``warnings.catch_warnings``, which is not thread-safe, so
    two decodes must not overlap (and the decoder already spreads its hashing over
    threads). ``workers=0`` does everything on the calling thread. With ``archive``,
    fingerprinted images are kept in the output archive after they are stored.
    """
    if not paths:
        raise InvalidInputError("nothing to import: give at least one file or folder")
    fp = fingerprinter if fingerprinter is not None else default_fingerprinter()
    if workers is None:
        workers = DEFAULT_WORKERS
    outcomes: list[FileOutcome] = []

    def settle(item: Prepared | FileOutcome) -> None:
        outcome = item if isinstance(item, FileOutcome) else finish(ledger, item, tags, archive)
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
