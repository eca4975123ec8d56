"""The one Fingerprint type every modality produces, the verdict ladder's names, and
the small helpers (Hamming distance, phash chunks) the modalities and the store share."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ledger.errors import FingerprintError

_U64 = (1 << 64) - 1

#: The modalities a fingerprint can carry (the values of ``ledger.core.records.Modality``).
MODALITIES: tuple[str, ...] = ("image", "video", "audio", "3d")


class Verdict(StrEnum):
    IDENTICAL = "identical"
    NEAR_IDENTICAL = "near-identical"
    SIMILAR = "similar"
    DIFFERENT = "different"

    @property
    def rank(self) -> int:
        """0 for identical … 3 for different: sorts matches best first."""
        return _RANK[self]


_RANK = {
    Verdict.IDENTICAL: 0,
    Verdict.NEAR_IDENTICAL: 1,
    Verdict.SIMILAR: 2,
    Verdict.DIFFERENT: 3,
}


def phash_chunks(phash: int) -> tuple[int, int, int, int]:
    """The four 16-bit chunks of a 64-bit hash, most significant first."""
    return ((phash >> 48) & 0xFFFF, (phash >> 32) & 0xFFFF, (phash >> 16) & 0xFFFF, phash & 0xFFFF)


def content_hash_kind(fp: Fingerprint) -> str | None:
    """The hash ``pixel_sha256`` holds: SHA-256 for every modality but videos of pipeline
    3 on (BLAKE3); None for a video version this code does not know."""
    if fp.modality != "video":
        return "sha256"
    from ledger.fingerprint.video import content_hash_of  # video imports this module

    return content_hash_of(fp.version)


def content_equal(a: Fingerprint, b: Fingerprint) -> bool:
    """The decoded-content hashes prove equal content: both present, of one known kind,
    and the same ("" is a large video frame's sample, which has none)."""
    if not a.pixel_sha256 or a.pixel_sha256 != b.pixel_sha256:
        return False
    kind = content_hash_kind(a)
    return kind is not None and kind == content_hash_kind(b)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class Detail(Protocol):
    """Per-modality facts beside the common fields (video, audio and mesh have one)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """Content hashes of one decoded output, of any modality.

    ``pixel_sha256`` covers the decoded content (an image's normalised RGB pixels and
    size; a video's decoded frames; an audio track's decoded samples; a mesh's
    canonical quantized geometry): it alone decides "identical". ``phash``/``dhash``
    are 64-bit perceptual hashes as unsigned ints (an image's own; a video's middle
    sampled frame; an audio spectrogram's; a mesh projection's), indexed for lookup.
    ``width``/``height`` are 0 where a modality has no picture size. ``detail``
    carries the modality's own facts; images have none.
    """

    version: str
    media_type: str | None
    file_sha256: str
    pixel_sha256: str
    width: int
    height: int
    phash: int
    dhash: int
    thumbnail: bytes = field(repr=False)
    modality: str = "image"
    detail: Any = field(default=None, repr=False)
    phash_chunks: tuple[int, int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        for name in ("phash", "dhash"):
            value = getattr(self, name)
            if not 0 <= value <= _U64:
                raise FingerprintError(f"{name} {value} is not an unsigned 64-bit value")
        if self.modality not in MODALITIES:
            raise FingerprintError(f"unknown modality {self.modality!r}")
        object.__setattr__(self, "phash_chunks", phash_chunks(self.phash))

    def to_dict(self, *, thumbnail: bool = False) -> dict[str, Any]:
        """A JSON-ready summary; hashes as 16 hex digits like imagehash prints them."""
        data: dict[str, Any] = {
            "version": self.version,
            "media_type": self.media_type,
            "file_sha256": self.file_sha256,
            "pixel_sha256": self.pixel_sha256,
            "width": self.width,
            "height": self.height,
            "phash": f"{self.phash:016x}",
            "dhash": f"{self.dhash:016x}",
            "thumbnail_bytes": len(self.thumbnail),
        }
        if self.modality != "image":
            data["modality"] = self.modality
        if self.detail is not None:
            data[self.modality] = self.detail.to_dict()
        if thumbnail:
            data["thumbnail_png"] = self.thumbnail.hex()
        return data
