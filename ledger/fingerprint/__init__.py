"""Fingerprints and verdicts (pure, no database), for every modality.

Decode an output once, safely (:func:`fingerprint`, or :func:`fingerprint_bytes` for
still images), and compare two fingerprints of the same modality (:func:`compare`)
into a comparison carrying a :class:`Verdict` and every raw distance.
"""

from ledger.fingerprint._compare import DEFAULT_THRESHOLDS, Comparison, Thresholds
from ledger.fingerprint._decode import ALLOWED_FORMATS, BACKGROUND, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ledger.fingerprint._surface import compare, fingerprint, fingerprint_file, sniff_modality
from ledger.fingerprint._types import (
    MODALITIES,
    Fingerprint,
    Verdict,
    content_equal,
    content_hash_kind,
    hamming,
    phash_chunks,
)
from ledger.fingerprint.image import FINGERPRINT_VERSION, PIPELINE, THUMB_SIZE, fingerprint_bytes
from ledger.fingerprint.pixels import (
    DEFAULT_PIXEL_THRESHOLDS,
    PixelComparison,
    PixelThresholds,
    compare_originals,
    compare_pixels,
)

__all__ = [
    "ALLOWED_FORMATS",
    "BACKGROUND",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PIXEL_THRESHOLDS",
    "DEFAULT_THRESHOLDS",
    "FINGERPRINT_VERSION",
    "MODALITIES",
    "PIPELINE",
    "THUMB_SIZE",
    "Comparison",
    "Fingerprint",
    "PixelComparison",
    "PixelThresholds",
    "Thresholds",
    "Verdict",
    "compare",
    "compare_originals",
    "compare_pixels",
    "content_equal",
    "content_hash_kind",
    "fingerprint",
    "fingerprint_bytes",
    "fingerprint_file",
    "hamming",
    "phash_chunks",
    "sniff_modality",
]
