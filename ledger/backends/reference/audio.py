"""Reference audio: real WAV/FLAC/MP3/OGG/M4A files encoded with PyAV (or the wave module)."""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np

#: container -> (FFmpeg muxer, encoder, extension, media type)
CONTAINERS: dict[str, tuple[str, str, str, str]] = {
    "wav": ("wav", "pcm_s16le", "wav", "audio/wav"),
    "flac": ("flac", "flac", "flac", "audio/flac"),
    "mp3": ("mp3", "libmp3lame", "mp3", "audio/mpeg"),
    "ogg": ("ogg", "libopus", "ogg", "audio/ogg"),
    "m4a": ("ipod", "aac", "m4a", "audio/mp4"),
}


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, one rounding rule for every container."""
    return np.clip(np.rint(np.asarray(samples, np.float64) * 32767), -32768, 32767).astype("<i2")


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples in [-1, 1] as 16-bit PCM WAV (byte-for-byte deterministic)."""
    pcm = to_pcm16(samples)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return buf.getvalue()


def encode_audio(
    samples: np.ndarray, rate: int, *, container: str = "wav", bitrate: int | None = None
) -> bytes:
    """Mono float samples in [-1, 1] encoded into ``container`` (resampled as the codec needs)."""
    if container == "wav":
        return encode_wav(samples, rate)
    import av

    muxer, codec, _, _ = CONTAINERS[container]
    out_rate = 48000 if codec == "libopus" else rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")
        if bitrate:
            stream.bit_rate = bitrate
        ctx = stream.codec_context
        frame = av.AudioFrame.from_ndarray(to_pcm16(samples).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        resampler = av.AudioResampler(
            format=ctx.format.name, layout="mono", rate=out_rate, frame_size=ctx.frame_size or None
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def render_audio(
    gen: Any,
    model: str,
    prompt: str,
    seed: int | None,
    *,
    scheduler: str | None = None,
    duration: float = 5.0,
    output_format: str = "WAV",
) -> Any:
    """A seeded chord whose timbre follows the prompt, mono 22,050 Hz, WAV or MP3. A new
    model revision changes the chord; a stochastic scheduler adds fresh noise."""
    from ledger.backends.reference.generator import Output, _digest, _fresh_rng
    from ledger.backends.reference.media import draw

    d = draw(gen, "audio", model, seed, scheduler)
    used, stochastic, seed_used, rng = d.scheduler, d.stochastic, d.seed, d.rng
    rate = 22050
    t = np.arange(int(rate * max(0.5, min(float(duration), 30.0)))) / rate
    freqs = rng.uniform(160, 900, 3)
    live = _fresh_rng() if stochastic else None
    bright = 1 + _digest("timbre", prompt) % 4
    sig = np.zeros_like(t)
    for k, f in enumerate(freqs):
        envelope = (np.sin(2 * np.pi * (0.4 + 0.3 * k) * t + rng.uniform(0, 6)) + 1) / 2
        sig += envelope * (np.sin(2 * np.pi * f * t) + np.sin(2 * np.pi * f * bright * t) / bright)
    sig = sig / max(float(np.max(np.abs(sig))), 1e-9) * 0.6
    if live is not None:
        sig = sig + live.normal(0, 0.3, t.size)  # fresh noise: the replay drifts
    fmt = output_format.upper()
    container = "mp3" if fmt == "MP3" else "wav"
    _, _, ext, ctype = CONTAINERS[container]
    return Output(
        encode_audio(sig, rate, container=container),
        seed_used,
        ext,
        ctype,
        seeded=seed_used is not None,
        stochastic=stochastic,
        scheduler=used,
    )
