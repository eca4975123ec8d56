"""Small media made by the tests (nothing committed): pans over a blurred noise field,
tone chords, primitive meshes, and the transformations the verdicts are tested on."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageFilter

from ledger.backends.reference.audio import encode_audio
from ledger.backends.reference.video import encode_video

RATE = 22050


def field(seed: int = 0, side: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))
    blurred = np.asarray(raw.filter(ImageFilter.GaussianBlur(3))).astype(np.float64)
    return ((blurred - blurred.min()) / (np.ptp(blurred) + 1e-9) * 255).astype(np.uint8)


def pan(n: int = 48, size: int = 64, dx: int = 1, seed: int = 0) -> list[np.ndarray]:
    """n frames of a size×size window sliding dx pixels a frame over a fixed picture."""
    big = field(seed)
    x0 = 10 if dx >= 0 else 10 + abs(dx) * n
    return [big[10 : 10 + size, x0 + i * dx : x0 + i * dx + size].copy() for i in range(n)]


def noisy(frames: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.rint(f + rng.normal(0, sigma, f.shape)), 0, 255).astype(np.uint8) for f in frames]


def plus_minus_one(frames: list[np.ndarray], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.clip(f.astype(np.int16) + rng.choice([-1, 1], f.shape), 0, 255).astype(np.uint8) for f in frames
    ]


def mp4(frames: list[np.ndarray], **options: object) -> bytes:
    return encode_video(frames, **options)  # type: ignore[arg-type]


def animated(frames: list[np.ndarray], fmt: str = "GIF", duration_ms: int = 42) -> bytes:
    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    images[0].save(
        out, format=fmt, save_all=True, append_images=images[1:], duration=duration_ms, loop=0, **extra
    )
    return out.getvalue()


def chord(
    seconds: float = 5.0, freqs: tuple[float, ...] = (440.0, 554.0, 659.0), noise: float = 0.0
) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    x = np.zeros_like(t)
    for k, f in enumerate(freqs):
        envelope = (np.sin(2 * np.pi * (0.5 + 0.3 * k) * t) + 1) / 2
        x += envelope * np.sin(2 * np.pi * f * t * (1 + 0.02 * np.sin(2 * np.pi * 0.7 * t)))
    x = x / len(freqs) * 0.6 + np.random.default_rng(7).normal(0, noise, t.size)
    return np.clip(x, -1, 1)


def sound(samples: np.ndarray, container: str = "wav") -> bytes:
    return encode_audio(samples, RATE, container=container)


def mesh_bytes(mesh: object, file_type: str) -> bytes:
    data = mesh.export(file_type=file_type)  # type: ignore[attr-defined]
    return data.encode() if isinstance(data, str) else data


def patch_mp4_duration(data: bytes, seconds: int) -> bytes:
    """Claim ``seconds`` of video in every duration field (mvhd, tkhd, mdhd, elst, stts; version 0)."""
    out = bytearray(data)

    def put(box: bytes, scale_at: int | None, duration_at: int, scale: int = 0) -> int:
        pos = out.find(box)
        if scale_at is not None:
            scale = struct.unpack_from(">I", out, pos + scale_at)[0]
        struct.pack_into(">I", out, pos + duration_at, min(scale * seconds, 2**32 - 1))
        return scale

    movie = put(b"mvhd", 16, 20)
    put(b"tkhd", None, 24, movie)
    put(b"mdhd", 16, 20)
    if out.find(b"elst") >= 0:
        put(b"elst", None, 12, movie)
    stts = out.find(b"stts")  # the sample table is what FFmpeg believes: stretch every delta
    scale = struct.unpack_from(">I", out, out.find(b"mdhd") + 16)[0]
    entries = struct.unpack_from(">I", out, stts + 8)[0]
    frames = sum(struct.unpack_from(">I", out, stts + 12 + 8 * k)[0] for k in range(entries))
    for k in range(entries):
        struct.pack_into(">I", out, stts + 16 + 8 * k, scale * seconds // frames)
    return bytes(out)


def patch_webp_canvas(data: bytes, width: int, height: int) -> bytes:
    """Declare a width×height canvas in an animated WEBP's VP8X chunk."""
    out = bytearray(data)
    pos = out.find(b"VP8X")
    struct.pack_into("<I", out, pos + 12, width - 1)  # 24-bit fields, little endian
    struct.pack_into("<I", out, pos + 15, (height - 1) | (out[pos + 18] << 24))
    return bytes(out)
