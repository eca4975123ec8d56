"""The Chromaprint library (AcoustID's fingerprint) through ctypes.

Decoding stays ours (PyAV, one bounded decode); Chromaprint only sees mono 16-bit
PCM at ``SAMPLE_RATE``, its own internal rate, so it never resamples. The library comes
with Debian's ``libchromaprint1`` (``scripts/install-media-deps.sh``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

import numpy as np

from ledger.errors import FingerprintError

SAMPLE_RATE = 11025
_ALGORITHM = 1  # CHROMAPRINT_ALGORITHM_TEST2, the default (fpcalc's too)


@functools.cache
def _lib() -> Any:
    name = ctypes.util.find_library("chromaprint") or "libchromaprint.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise FingerprintError(
            "the Chromaprint library is not installed (Debian: libchromaprint1); cannot fingerprint audio"
        ) from None
    lib.chromaprint_new.restype = ctypes.c_void_p
    lib.chromaprint_new.argtypes = [ctypes.c_int]
    lib.chromaprint_free.argtypes = [ctypes.c_void_p]
    lib.chromaprint_start.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.chromaprint_feed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.chromaprint_finish.argtypes = [ctypes.c_void_p]
    lib.chromaprint_get_raw_fingerprint.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)),
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.chromaprint_dealloc.argtypes = [ctypes.c_void_p]
    lib.chromaprint_get_version.restype = ctypes.c_char_p
    return lib


def version() -> str:
    try:
        return str(_lib().chromaprint_get_version().decode())
    except FingerprintError:
        return "none"


def raw_fingerprint(pcm: np.ndarray) -> np.ndarray:
    """Chromaprint's raw fingerprint (uint32 items, ~8 per second) of mono int16 PCM."""
    lib = _lib()
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    ctx = lib.chromaprint_new(_ALGORITHM)
    if not ctx:
        raise FingerprintError("Chromaprint could not start")
    try:
        ok = lib.chromaprint_start(ctx, SAMPLE_RATE, 1)
        ok = ok and lib.chromaprint_feed(ctx, samples.ctypes.data, int(samples.size))
        ok = ok and lib.chromaprint_finish(ctx)
        if not ok:
            raise FingerprintError("Chromaprint failed on the decoded samples")
        items = ctypes.POINTER(ctypes.c_uint32)()
        size = ctypes.c_int(0)
        if not lib.chromaprint_get_raw_fingerprint(ctx, ctypes.byref(items), ctypes.byref(size)):
            raise FingerprintError("Chromaprint returned no fingerprint")
        try:
            return (
                np.ctypeslib.as_array(items, shape=(size.value,)).copy()
                if size.value
                else np.zeros(0, np.uint32)
            )
        finally:
            lib.chromaprint_dealloc(items)
    finally:
        lib.chromaprint_free(ctx)
