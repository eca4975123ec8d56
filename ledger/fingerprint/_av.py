"""Opening untrusted containers with PyAV (FFmpeg's libraries), shared by video and audio.

Every failure FFmpeg can report becomes one :class:`FingerprintError` line; the
container is opened from memory (no file names, no network protocols).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ledger.errors import FingerprintError

#: Demuxers seedledger lets FFmpeg use on untrusted bytes (FFmpeg's own format names).
#: Anything else (playlists, image2 sequences, concat scripts…) is refused.
ALLOWED_DEMUXERS = frozenset(
    {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "gif", "webp", "wav", "flac", "mp3", "ogg", "aac"}
)


def av_version() -> str:
    import av

    return str(av.__version__)


@contextmanager
def open_container(data: bytes, what: str) -> Iterator[Any]:
    """An input container over ``data``; raises FingerprintError for anything unreadable."""
    import av

    if not data:
        raise FingerprintError(f"empty input (0 bytes) is not {what}")
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise FingerprintError(f"cannot read the {what} container: {reason(exc)}") from None
    try:
        if container.format.name not in ALLOWED_DEMUXERS:
            raise FingerprintError(f"container format {container.format.name!r} is not supported for {what}")
        yield container
    finally:
        container.close()


def decode_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError, ValueError, OSError, EOFError, MemoryError)


def reason(exc: BaseException) -> str:
    # PyAV's errors read "[Errno 1094995529] Invalid data …: '<none>'; last error log: …":
    # the errno and the (absent) file name say nothing; FFmpeg's last log line does.
    text = str(exc).strip()
    text = re.sub(r"^\[Errno -?\d+\] ", "", text).replace(": '<none>'", "", 1)
    text = text.splitlines()[0] if text else exc.__class__.__name__
    return text[:200]


def stream_duration(container: Any, stream: Any) -> float | None:
    """What the container says this one stream lasts, counted from 0: its duration, the
    DURATION tag Matroska/WEBM muxers write per track ("HH:MM:SS.nnnnnnnnn"), or, when
    the container holds only this stream, the container's duration."""
    got = seconds(stream.duration, stream.time_base)
    if got is not None:
        return got
    # mkvmerge writes it with a language suffix ("DURATION-eng").
    tags = [v for k, v in stream.metadata.items() if k.upper().split("-", 1)[0] == "DURATION"]
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", str(tags[0]).strip()) if tags else None
    if match is not None:
        hours, minutes, secs = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(secs)
    return _container_seconds(container) if len(container.streams) == 1 else None


def seconds(value: Any, time_base: Any) -> float | None:
    """A stream timestamp/duration in seconds, or None when FFmpeg does not know it."""
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def declared_duration(container: Any, stream: Any) -> float | None:
    got = seconds(stream.duration, stream.time_base)
    return _container_seconds(container) if got is None else got


def _container_seconds(container: Any) -> float | None:
    return None if container.duration is None else container.duration / 1_000_000  # AV_TIME_BASE
