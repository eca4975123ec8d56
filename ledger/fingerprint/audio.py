"""Audio fingerprints: WAV, FLAC, MP3, OGG (Vorbis/Opus), M4A (AAC) through PyAV.

One bounded decode: declared duration, rate and channels are checked first, decoded
samples are counted as they come. The decoded samples (native format, rate and
layout) feed the content hash (``pixel_sha256``: "identical" means the same decoded
samples); the same frames, resampled to mono 16-bit at Chromaprint's 11,025 Hz, give
the Chromaprint fingerprint, the loudness, a spectrogram phash (lookup), the clip's
average power spectrum in log-spaced bands (``band_profile``) and a 48×48 waveform
thumbnail (reports). Chromaprint hashes chroma (pitch classes), so a 440 Hz tone and a
chord on A an octave or two lower hash alike; the band profile tells them apart.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ledger.errors import FingerprintError
from ledger.fingerprint import _av, _chromaprint
from ledger.fingerprint._audio_decode import MonoDecoder
from ledger.fingerprint._ogg import check_ogg, is_ogg
from ledger.fingerprint._types import Fingerprint, Verdict, content_equal, hamming
from ledger.fingerprint.image import THUMB_SIZE, _dhash, _phash, _sha256_hex

#: 2: the band profile (pipeline-1 payloads have none and compare without it).
AUDIO_PIPELINE = 2
AUDIO_VERSION = f"afp{AUDIO_PIPELINE}+av{_av.av_version()}+cp{_chromaprint.version()}"
RATE = _chromaprint.SAMPLE_RATE
LOSSLESS_CODECS = frozenset({"flac", "alac", "wavpack", "tta"})
_MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4",
    "matroska,webm": "audio/webm",
}


@dataclass(frozen=True, kw_only=True)
class AudioLimits:
    max_duration_s: float = 1800.0
    max_sample_rate: int = 384_000
    max_channels: int = 16


DEFAULT_AUDIO_LIMITS = AudioLimits()


@dataclass(frozen=True, kw_only=True)
class AudioDetail:
    container: str
    codec: str
    lossy: bool
    sample_rate: int
    channels: int
    duration_s: float
    rms_dbfs: float | None
    peak_dbfs: float | None
    chromaprint: tuple[int, ...] = field(repr=False)
    #: Mean power per log-spaced band (_BAND_EDGES), unit length: gain-free.
    band_profile: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chromaprint"] = len(self.chromaprint)
        return data


def fingerprint_audio(data: bytes, *, limits: AudioLimits = DEFAULT_AUDIO_LIMITS) -> Fingerprint:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        _check_wav(data, limits)
    if is_ogg(data):
        check_ogg(data)

    with _av.open_container(data, "audio") as container:
        if not container.streams.audio:
            raise FingerprintError("the container has no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        duration = _av.declared_duration(container, stream)
        if not 0 < rate <= limits.max_sample_rate:
            raise FingerprintError(
                f"audio declares a sample rate of {rate} Hz (limit {limits.max_sample_rate})"
            )
        if not 0 < channels <= limits.max_channels:
            raise FingerprintError(f"audio declares {channels} channels (limit {limits.max_channels})")
        if duration is not None and duration > limits.max_duration_s:
            raise FingerprintError(
                f"audio declares {duration:g} s, above the limit of {limits.max_duration_s:g} s; "
                "refusing to decode"
            )
        decoder = MonoDecoder(RATE, int(limits.max_duration_s * rate), limits.max_duration_s)
        try:
            for frame in container.decode(stream):
                decoder.feed(frame)
            samples_hash, pcm = decoder.finish()
        except _av.decode_errors() as exc:
            raise FingerprintError(
                f"cannot decode the audio, truncated or corrupt: {_av.reason(exc)}"
            ) from None
        codec, fmt = ctx.name, container.format.name
    decoded = decoder.decoded
    if decoded == 0:
        raise FingerprintError("audio has no samples (zero-length or undecodable)")
    actual = decoded / rate
    if duration is not None and fmt in ("wav", "flac") and actual < duration * 0.95 - 0.2:
        raise FingerprintError(f"audio is truncated: decoded {actual:.3g} s of {duration:.3g} s declared")
    items = _chromaprint.raw_fingerprint(pcm)
    spectrogram, profile = _spectrogram(pcm)
    rms, peak = _levels(pcm)
    detail = AudioDetail(
        container=fmt,
        codec=codec,
        lossy=codec not in LOSSLESS_CODECS and not codec.startswith("pcm_"),
        sample_rate=rate,
        channels=channels,
        duration_s=round(actual, 6),
        rms_dbfs=rms,
        peak_dbfs=peak,
        chromaprint=tuple(int(v) for v in items),
        band_profile=profile,
    )
    return Fingerprint(
        version=AUDIO_VERSION,
        media_type=_MEDIA_TYPES.get(fmt),
        file_sha256=_sha256_hex(data),
        pixel_sha256=samples_hash,
        width=0,
        height=0,
        phash=_phash(spectrogram),
        dhash=_dhash(spectrogram),
        thumbnail=_waveform(pcm),
        modality="audio",
        detail=detail,
    )


def _check_wav(data: bytes, limits: AudioLimits) -> None:
    """What the RIFF header declares (FFmpeg clamps it to the file, hiding truncation)."""
    fmt, chunk = data.find(b"fmt ", 12, 4096), data.find(b"data", 12, 4096)
    if fmt < 0 or chunk < 0 or fmt + 24 > len(data) or chunk + 8 > len(data):
        return  # FFmpeg reports a malformed header itself
    rate = int.from_bytes(data[fmt + 12 : fmt + 16], "little")
    align = int.from_bytes(data[fmt + 20 : fmt + 22], "little")
    declared = int.from_bytes(data[chunk + 4 : chunk + 8], "little")
    if rate > 0 and align > 0 and declared != 0xFFFFFFFF:  # 0xFFFFFFFF: streamed, size unknown
        seconds = declared / (rate * align)
        if seconds > limits.max_duration_s:
            raise FingerprintError(
                f"WAV declares {seconds:g} s, above the limit of {limits.max_duration_s:g} s; "
                "refusing to decode"
            )
        held = len(data) - chunk - 8
        if declared > held:
            raise FingerprintError(
                f"WAV is truncated: it declares {declared} bytes of samples but holds {held}"
            )


def _levels(pcm: np.ndarray) -> tuple[float | None, float | None]:
    x = pcm.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (
        None if rms == 0 else round(20 * math.log10(rms), 3),
        None if peak == 0 else round(20 * math.log10(peak), 3),
    )


#: FFT-bin edges of the band profile: 24 log-spaced bands, 43 Hz to Nyquist (5.5 kHz).
_BAND_EDGES = tuple(int(v) for v in np.unique(np.geomspace(2, 257, 25).astype(int)))


def _spectrogram(pcm: np.ndarray) -> tuple[Image.Image, tuple[float, ...]]:
    """Log-magnitude spectrogram relative to its own peak (gain-free), as a grayscale
    image, and the band profile from the same transform."""
    n, hop = 512, 256
    x = pcm.astype(np.float32)
    if x.size < n:
        x = np.pad(x, (0, n - x.size))
    count = 1 + (x.size - n) // hop
    frames = np.lib.stride_tricks.as_strided(x, shape=(count, n), strides=(x.strides[0] * hop, x.strides[0]))
    mag = np.abs(np.fft.rfft(frames * np.hanning(n).astype(np.float32), axis=1)).T[::-1]
    db = 20 * np.log10(mag + 1e-3)
    scaled = np.clip((db - (db.max() - 80.0)) / 80.0 * 255.0, 0, 255).astype(np.uint8)
    power = (mag[::-1].astype(np.float64) ** 2).mean(axis=1)
    bands = np.array([power[lo:hi].sum() for lo, hi in itertools.pairwise(_BAND_EDGES)])
    norm = float(np.linalg.norm(bands))
    profile = tuple(round(float(v), 6) for v in (bands / norm if norm else bands))
    return Image.fromarray(scaled, "L"), profile


def _waveform(pcm: np.ndarray) -> bytes:
    """48×48: each column the min…max envelope of its slice, on white."""
    canvas = np.full((THUMB_SIZE, THUMB_SIZE, 3), 255, np.uint8)
    if pcm.size:
        cols = np.array_split(pcm.astype(np.float64) / 32768.0, THUMB_SIZE)
        mid = (THUMB_SIZE - 1) / 2
        for c, part in enumerate(cols):
            if part.size:
                top = round(mid - float(part.max()) * mid)
                bottom = round(mid - float(part.min()) * mid)
                canvas[max(top, 0) : min(bottom, THUMB_SIZE - 1) + 1, c] = (40, 90, 160)
    out = io.BytesIO()
    Image.fromarray(canvas, "RGB").save(out, format="PNG", compress_level=9)
    return out.getvalue()


# -- comparison ---------------------------------------------------------------------

#: Offsets (Chromaprint items, ~0.12 s each) tried when aligning two fingerprints.
MAX_OFFSET = 16
MIN_ITEMS = 4


@dataclass(frozen=True, kw_only=True)
class AudioThresholds:
    near_ber: float
    similar_ber: float
    near_spectrogram_phash: int
    similar_spectrogram_phash: int
    min_band_cosine: float


#: From scripts/calibrate_media.py (docs/calibration.md).
DEFAULT_AUDIO_THRESHOLDS = AudioThresholds(
    near_ber=0.085,
    similar_ber=0.30,
    near_spectrogram_phash=16,
    similar_spectrogram_phash=24,
    min_band_cosine=0.8,
)


@dataclass(frozen=True, kw_only=True)
class AudioComparison:
    verdict: Verdict
    reason: str
    pixel_equal: bool
    file_equal: bool
    duration_a_s: float
    duration_b_s: float
    bit_error_rate: float | None
    offset_items: int
    aligned_items: int
    loudness_diff_db: float | None
    spectrogram_phash_distance: int
    #: Cosine of the two band profiles (1 = the same spectrum shape); None when a
    #: fingerprint predates them (pipeline 1).
    band_cosine: float | None
    same_version: bool
    version_a: str
    version_b: str
    modality: str = "audio"

    @property
    def phash_distance(self) -> int:
        return self.spectrogram_phash_distance

    @property
    def dhash_distance(self) -> int:
        return round(100 * (self.bit_error_rate or 0.0))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        return data


def _audio(fp: Fingerprint) -> AudioDetail:
    if not isinstance(fp.detail, AudioDetail):
        raise FingerprintError("audio fingerprint carries no Chromaprint data")
    return fp.detail


def bit_error_rate(a: np.ndarray, b: np.ndarray) -> tuple[float | None, int, int]:
    """(lowest BER over offsets, its offset, items aligned); None when too short to align."""
    best: tuple[float | None, int, int] = (None, 0, 0)
    for offset in range(-MAX_OFFSET, MAX_OFFSET + 1):
        xa = a[max(offset, 0) :]
        xb = b[max(-offset, 0) :]
        n = min(xa.size, xb.size)
        if n < max(MIN_ITEMS, min(a.size, b.size) // 2):
            continue
        ber = float(np.bitwise_count(xa[:n] ^ xb[:n]).sum()) / (32 * n)
        if best[0] is None or ber < best[0]:
            best = (round(ber, 5), offset, n)
    return best


def compare_audio(
    a: Fingerprint, b: Fingerprint, *, thresholds: AudioThresholds = DEFAULT_AUDIO_THRESHOLDS
) -> AudioComparison:
    da, db = _audio(a), _audio(b)
    ber, offset, aligned = bit_error_rate(
        np.asarray(da.chromaprint, np.uint32), np.asarray(db.chromaprint, np.uint32)
    )
    loud = None if da.rms_dbfs is None or db.rms_dbfs is None else round(db.rms_dbfs - da.rms_dbfs, 3)
    spec = hamming(a.phash, b.phash)
    equal = content_equal(a, b)
    bands = _band_cosine(da.band_profile, db.band_profile)
    verdict, reason = _decide(equal, ber, spec, da.duration_s, db.duration_s, thresholds)
    if bands is not None and bands < thresholds.min_band_cosine and verdict is not Verdict.IDENTICAL:
        verdict = Verdict.DIFFERENT
        reason = f"band profiles apart (cosine {bands:g} < {thresholds.min_band_cosine:g}): another spectrum"
    return AudioComparison(
        verdict=verdict,
        reason=reason,
        pixel_equal=equal,
        file_equal=a.file_sha256 == b.file_sha256,
        duration_a_s=da.duration_s,
        duration_b_s=db.duration_s,
        bit_error_rate=ber,
        offset_items=offset,
        aligned_items=aligned,
        loudness_diff_db=loud,
        spectrogram_phash_distance=spec,
        band_cosine=bands,
        same_version=a.version == b.version,
        version_a=a.version,
        version_b=b.version,
    )


def _band_cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float | None:
    if not a or len(a) != len(b):
        return None
    return round(float(np.dot(np.asarray(a), np.asarray(b))), 5)


def _decide(
    equal: bool, ber: float | None, spec: int, dur_a: float, dur_b: float, t: AudioThresholds
) -> tuple[Verdict, str]:
    if equal:
        return Verdict.IDENTICAL, "decoded-samples hashes are equal"
    if abs(dur_a - dur_b) > max(0.5, 0.1 * max(dur_a, dur_b)):
        return Verdict.DIFFERENT, f"durations differ ({dur_a:g} s vs {dur_b:g} s)"
    if ber is None:  # under ~3 s Chromaprint has nothing to say: the spectrogram decides
        if spec <= t.near_spectrogram_phash:
            return (
                Verdict.NEAR_IDENTICAL,
                f"too short for Chromaprint; spectrogram phash {spec} <= {t.near_spectrogram_phash}",
            )
        if spec <= t.similar_spectrogram_phash:
            return (
                Verdict.SIMILAR,
                f"too short for Chromaprint; spectrogram phash {spec} <= {t.similar_spectrogram_phash}",
            )
        return (
            Verdict.DIFFERENT,
            f"too short for Chromaprint; spectrogram phash {spec} outside the similar band",
        )
    if ber <= t.near_ber and spec <= t.near_spectrogram_phash:
        return Verdict.NEAR_IDENTICAL, (
            f"Chromaprint bit-error rate {ber:g} <= {t.near_ber:g} and spectrogram phash {spec} "
            f"<= {t.near_spectrogram_phash}"
        )
    if ber <= t.similar_ber:
        return Verdict.SIMILAR, f"Chromaprint bit-error rate {ber:g} <= {t.similar_ber:g}"
    return Verdict.DIFFERENT, f"Chromaprint bit-error rate {ber:g} above {t.similar_ber:g}"
