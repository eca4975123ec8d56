"""Fingerprinting and sealing for the writer, off the caller's path.

Outputs come as bytes (base64 results), as decoded pixels (in-process pipelines:
PNG-encoded here, :mod:`ledger.capture.pixels`) or as result URLs, which are fetched
with the backends' bounded downloader (size cap, deadline, host policy) a few at a
time. With an archiver, each fingerprinted output's bytes (a pipeline's: its PNG) are
then kept in the output archive (after the fingerprint is committed; never failing
the batch). A fingerprint is attached once: a record that already has one keeps it
(replays after a crash are harmless). Sealing into the Merkle log runs at most
every ``interval`` seconds when a signer is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ledger.capture.archiving import OutputArchiver
from ledger.capture.entries import Output
from ledger.core.records import utcnow
from ledger.errors import LedgerError
from ledger.store import Ledger

log = logging.getLogger(__name__)

DOWNLOAD_CONCURRENCY = 4


def default_fingerprinter(
    *,
    download: bool = True,
    allow_private_downloads: bool = False,
    trusted_hosts: frozenset[str] = frozenset(),
    max_download_bytes: int = 64 * 1024 * 1024,
    archiver: OutputArchiver | None = None,
) -> Callable[[Ledger, list[tuple[int, Output]]], int] | None:
    """A fingerprinter using :mod:`ledger.fingerprint`, or None if it is unavailable."""
    try:
        from ledger.fingerprint import fingerprint
        from ledger.store import fingerprints as fingerprint_store
    except ImportError:  # pragma: no cover - the fingerprint layer ships with the package
        return None

    def run(ledger: Ledger, work: list[tuple[int, Output]]) -> int:
        blobs: list[tuple[int, bytes]] = [(rid, out.data) for rid, out in work if out.data is not None]
        blobs.extend(_encoded(work))
        urls = [(rid, out.url) for rid, out in work if out.data is None and out.pixels is None and out.url]
        several = [(rid, out.files) for rid, out in work if out.files]
        if several:  # one result of several files: each file by its index, then packed
            urls += [
                (_file_key(rid, k), f.url) for rid, files in several for k, f in enumerate(files) if f.url
            ]
        if urls and download:
            blobs.extend(_download_all(urls, allow_private_downloads, trusted_hosts, max_download_bytes))
        blobs = _pack_several(blobs, several)
        rows = []
        kept: list[tuple[int, bytes, str]] = []
        now = utcnow()
        for rid, data in blobs:
            try:  # any modality: sniffed from the bytes (a 3D result's files each their own)
                fp = fingerprint(data)
            except LedgerError as exc:
                log.info("record %d: output not fingerprinted: %s", rid, exc)
                continue
            rows.append(fingerprint_store.to_row(rid, fp, now))
            kept.append((rid, data, fp.file_sha256))
        if not rows:
            return 0
        with ledger.writing() as conn:
            fingerprint_store.insert_ignoring_existing(conn, rows)
        if archiver is not None:
            for rid, data, sha256 in kept:
                archiver.keep(rid, data, sha256)
        return len(rows)

    return run


def _encoded(work: list[tuple[int, Output]]) -> list[tuple[int, bytes]]:
    """The PNG of each output spooled as pixels (one that cannot be encoded is logged
    and left unfingerprinted: its record is stored all the same)."""
    from ledger.capture.pixels import png

    out: list[tuple[int, bytes]] = []
    for rid, output in work:
        if output.data is None and output.pixels is not None:
            try:
                out.append((rid, png(output.pixels)))
            except (ValueError, OSError) as exc:
                log.info("record %d: output pixels not encoded: %s", rid, exc)
    return out


#: Downloads of a multi-file result's files are keyed by a negative id per file.
_FILE_STRIDE = 1 << 16


def _file_key(rid: int, index: int) -> int:
    return -(rid * _FILE_STRIDE + index + 1)


def _pack_several(
    blobs: list[tuple[int, bytes]], several: list[tuple[int, tuple[Output, ...]]]
) -> list[tuple[int, bytes]]:
    """Whole-output blobs, plus each multi-file result packed once all its files are here."""
    if not several:
        return blobs
    from ledger.fingerprint.mesh_files import pack_files

    got = {rid: data for rid, data in blobs if rid < 0}
    out = [(rid, data) for rid, data in blobs if rid >= 0]
    for rid, files in several:
        parts = [f.data if f.data is not None else got.get(_file_key(rid, k)) for k, f in enumerate(files)]
        if any(p is None for p in parts):
            log.info("record %d: a file of its result was not fetched; not fingerprinted", rid)
            continue
        try:
            out.append((rid, pack_files([p for p in parts if p is not None])))
        except LedgerError as exc:
            log.info("record %d: output not fingerprinted: %s", rid, exc)
    return out


def _download_all(
    urls: list[tuple[int, str]], allow_private: bool, trusted: frozenset[str], cap: int
) -> list[tuple[int, bytes]]:
    from ledger.backends.http import CallStats, HostPolicy, HttpClient, safe_url

    async def fetch() -> list[tuple[int, bytes]]:
        policy = HostPolicy(
            allow_loopback=allow_private,
            allow_private=allow_private,
            allowed_hosts=frozenset(h.lower() for h in trusted),
        )
        client = HttpClient(
            backend="capture", host_policy=policy, max_download_bytes=cap, download_deadline=60.0
        )
        gate = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)

        async def one(rid: int, url: str) -> tuple[int, bytes] | None:
            async with gate:
                try:
                    got = await client.download(url, stats=CallStats())
                except LedgerError as exc:
                    record = rid if rid >= 0 else (-rid - 1) // _FILE_STRIDE  # a file of a result
                    log.info("output of record %d not downloaded from %s: %s", record, safe_url(url), exc)
                    return None
                return rid, got.data

        try:
            results = await asyncio.gather(*(one(rid, url) for rid, url in urls))
        finally:
            await client.aclose()
        return [r for r in results if r is not None]

    return asyncio.run(fetch())


def load_env_signer() -> Any:
    """The signer from ``SEEDLEDGER_SIGNING_KEY``, or None when it is not set."""
    from ledger.integrity.note import load_signer

    return load_signer()


def default_sealer(signer: Any, *, interval: float = 5.0) -> Callable[..., int]:
    """Seal what landed into the log, at most every ``interval`` seconds."""
    from ledger.integrity.seal import seal

    last = [0.0]

    def run(ledger: Ledger, force: bool = False) -> int:
        now = time.monotonic()
        if not force and now - last[0] < interval:
            return 0
        last[0] = now
        return int(seal(ledger, signer).sealed)

    return run
