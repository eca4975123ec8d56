"""Fingerprints and verdicts (pure, no database).

Decode an output once, safely (:func:`fingerprint_bytes`), and compare two
fingerprints (:func:`compare`) into a :class:`Comparison` carrying a :class:`Verdict`
and every raw distance.
"""

from ledger.fingerprint._compare import (
    DEFAULT_THRESHOLDS,
    Comparison,
    Thresholds,
    Verdict,
    compare,
)
from ledger.fingerprint._decode import ALLOWED_FORMATS, BACKGROUND, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from ledger.fingerprint._fingerprint import (
    FINGERPRINT_VERSION,
    PIPELINE,
    THUMB_SIZE,
    Fingerprint,
    fingerprint_bytes,
    fingerprint_file,
    hamming,
    phash_chunks,
)

__all__ = [
    "ALLOWED_FORMATS",
    "BACKGROUND",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_THRESHOLDS",
    "FINGERPRINT_VERSION",
    "PIPELINE",
    "THUMB_SIZE",
    "Comparison",
    "Fingerprint",
    "Thresholds",
    "Verdict",
    "compare",
    "fingerprint_bytes",
    "fingerprint_file",
    "hamming",
    "phash_chunks",
]
