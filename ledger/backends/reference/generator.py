"""The reference generator: a stand-in for a diffusion model, for demos and tests.

This is a **reference backend, not a model**. It draws procedural images with numpy
and Pillow (no weights, no GPU) that behave like diffusion outputs in the ways an
auditor cares about:

- the seed sets the composition (blob layout and low-frequency structure), so two
  seeds give clearly different images;
- prompt, negative prompt and CFG change palette, texture and contrast but keep the
  seed's composition (they do not move the luminance structure);
- more steps refine: the seeded residual noise shrinks as steps grow;
- another model gives another image for the same seed;
- a model *revision* moves the composition noticeably (a provider silently updating
  a model): similar at best, never near-identical;
- deterministic schedulers reproduce bit-exactly; stochastic ones (per
  :mod:`ledger.core.schedulers`) add unseeded noise on every call: a small
  displacement of the layout and a few percent of pixel noise, so replays drift
  visibly yet stay similar;
- seedless models (per :mod:`ledger.core.models`) ignore the seed entirely.

"Bit-exactly" means on the same numpy/Pillow build and CPU family: numpy's vectorised
float32 ``sin``/``exp`` may round differently on another instruction set, just as GPU
kernels do for real models.

A 1024×1024 image takes well under a second: the structure is rendered at low
resolution, upscaled, and detailed at full resolution with vectorised numpy.
"""

from __future__ import annotations

import hashlib
import io
import math
import wave
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from PIL import Image

from ledger.core.models import ModelCatalog, default_catalog
from ledger.core.schedulers import REFERENCE_DEFAULT_SCHEDULER, classify
from ledger.core.seeds import SEED_RANGES, random_seed
from ledger.errors import InvalidInputError

#: Written into PNG text chunks so nobody mistakes these images for model output.
SOFTWARE_TAG: Final = "seedledger reference backend (procedural test images, not a model)"

#: Scheduler the reference backend uses when ``Default``/omitted and the catalog has none.
FALLBACK_SCHEDULER: Final = REFERENCE_DEFAULT_SCHEDULER

IMAGE_FORMATS: Final[dict[str, tuple[str, str]]] = {
    "PNG": ("png", "image/png"),
    "JPG": ("jpg", "image/jpeg"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}
VIDEO_FORMAT: Final = ("gif", "image/gif")
AUDIO_FORMAT: Final = ("wav", "audio/wav")

_WORK_SIDE: Final = 128  # the composition is rendered at this size, then upscaled
_SEED_RANGE: Final = SEED_RANGES["reference"]


@dataclass(frozen=True)
class ImageRequest:
    """The parameters of one image, as the generator sees them."""

    model: str
    prompt: str
    width: int = 512
    height: int = 512
    seed: int | None = None
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    scheduler: str | None = None
    output_format: str = "PNG"
    output_quality: int = 95


@dataclass(frozen=True)
class Output:
    """One generated artefact and how it was made."""

    data: bytes = field(repr=False)
    seed: int | None
    extension: str
    content_type: str
    #: True when the seed decided the output (False: seedless model).
    seeded: bool = True
    stochastic: bool = False
    scheduler: str | None = None


def _digest(*parts: object) -> int:
    """A stable 128-bit integer from parts (never Python's salted ``hash``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_digest(*parts)))


def _fresh_rng() -> np.random.Generator:
    # Unseeded on purpose: stochastic schedulers and seedless models must not repeat.
    return np.random.default_rng()


@dataclass
class _Layout:
    """The composition: low-frequency waves and blobs, in unit coordinates."""

    wave_freq: np.ndarray  # (n, 2)
    wave_phase: np.ndarray  # (n,)
    wave_amp: np.ndarray  # (n,)
    blob_xy: np.ndarray  # (m, 2)
    blob_sigma: np.ndarray  # (m, 2)
    blob_theta: np.ndarray  # (m,)
    blob_amp: np.ndarray  # (m,)
    hue_freq: np.ndarray  # (k, 2)
    hue_phase: np.ndarray  # (k,)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Layout:
        n, m, k = 4, 9, 3
        return cls(
            wave_freq=rng.uniform(-2.5, 2.5, (n, 2)),
            wave_phase=rng.uniform(0, 2 * math.pi, n),
            wave_amp=rng.uniform(0.3, 0.8, n),
            blob_xy=rng.uniform(0.05, 0.95, (m, 2)),
            blob_sigma=rng.uniform(0.05, 0.2, (m, 2)),
            blob_theta=rng.uniform(0, math.pi, m),
            blob_amp=rng.choice([-1.0, 1.0], m) * rng.uniform(1.0, 2.2, m),
            hue_freq=rng.uniform(-2.0, 2.0, (k, 2)),
            hue_phase=rng.uniform(0, 2 * math.pi, k),
        )

    def perturbed(self, rng: np.random.Generator, move: float, phase: float, scale: float) -> _Layout:
        """The same layout nudged: ``move`` in image units, ``phase`` in radians."""
        m = len(self.blob_amp)
        return _Layout(
            wave_freq=self.wave_freq,
            wave_phase=self.wave_phase + rng.normal(0, phase, self.wave_phase.shape),
            wave_amp=self.wave_amp * np.exp(rng.normal(0, scale, self.wave_amp.shape)),
            blob_xy=self.blob_xy + rng.normal(0, move, (m, 2)),
            blob_sigma=self.blob_sigma * np.exp(rng.normal(0, scale, (m, 2))),
            blob_theta=self.blob_theta + rng.normal(0, phase, m),
            blob_amp=self.blob_amp * np.exp(rng.normal(0, scale, m)),
            hue_freq=self.hue_freq,
            hue_phase=self.hue_phase + rng.normal(0, phase, self.hue_phase.shape),
        )

    def render(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Structure (signed field) and hue field, both float32 (h, w)."""
        y = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
        x = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
        two_pi = np.float32(2 * math.pi)
        f = np.zeros((h, w), dtype=np.float32)
        for (fx, fy), ph, amp in zip(self.wave_freq, self.wave_phase, self.wave_amp, strict=True):
            f += np.float32(amp) * np.cos(two_pi * (np.float32(fx) * x + np.float32(fy) * y) + np.float32(ph))
        for (cx, cy), (sx, sy), th, amp in zip(
            self.blob_xy, self.blob_sigma, self.blob_theta, self.blob_amp, strict=True
        ):
            dx, dy = x - np.float32(cx), y - np.float32(cy)
            c, s = np.float32(math.cos(th)), np.float32(math.sin(th))
            u, v = (dx * c + dy * s) / np.float32(sx), (dy * c - dx * s) / np.float32(sy)
            f += np.float32(amp) * np.exp(np.float32(-0.5) * (u * u + v * v))
        hue = np.zeros((h, w), dtype=np.float32)
        for (fx, fy), ph in zip(self.hue_freq, self.hue_phase, strict=True):
            hue += np.sin(two_pi * (np.float32(fx) * x + np.float32(fy) * y) + np.float32(ph))
        return f, hue / np.float32(len(self.hue_phase))


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _palette(prompt: str, negative: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, ...]]:
    """Dark and light ends, a zero-luminance accent, and texture parameters."""
    rng = _rng("palette", prompt.strip().lower(), negative.strip().lower())
    dark = rng.uniform(0.0, 0.35, 3)
    light = rng.uniform(0.6, 1.0, 3)
    accent = rng.uniform(-1, 1, 3)
    accent = accent - _luma(accent)  # moves hue, not luminance: keeps the phash
    texture = (
        rng.uniform(0, math.pi),  # orientation
        rng.uniform(18, 60),  # spatial frequency (cycles per image)
        rng.uniform(0, 2 * math.pi),  # phase
        rng.uniform(2, 6),  # warp by structure
    )
    return dark.astype(np.float32), light.astype(np.float32), accent.astype(np.float32), texture


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    if a.shape == (h, w):
        return a
    return np.asarray(Image.fromarray(a, mode="F").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def _work_size(w: int, h: int) -> tuple[int, int]:
    scale = _WORK_SIDE / max(w, h)
    if scale >= 1:
        return w, h
    return max(8, round(w * scale)), max(8, round(h * scale))


class ReferenceGenerator:
    """Procedural generator behind the reference server; thread-safe, stateless per call.

    ``model_revision`` is the silent-update knob: ``None``/``0`` is the original
    weights; any other value (globally, or per model AIR through a mapping) moves
    every output of that model for the same parameters.
    """

    def __init__(
        self,
        *,
        model_revision: int | str | dict[str, int | str] | None = None,
        catalog: ModelCatalog | None = None,
    ) -> None:
        self.model_revision = model_revision
        self.catalog = catalog or default_catalog()

    # -- knobs and catalog -------------------------------------------------------
    def revision_for(self, model: str) -> str | None:
        rev = self.model_revision
        if isinstance(rev, dict):
            rev = rev.get(model, rev.get("*"))
        if rev is None or str(rev) in ("", "0"):
            return None
        return str(rev)

    def is_seedless(self, model: str) -> bool:
        return self.catalog.supports_seed(model) is False

    def resolve_scheduler(self, model: str, scheduler: str | None) -> str:
        """The scheduler actually used: the request's, else the model's default."""
        if scheduler is not None and scheduler.strip().lower() not in ("", "default"):
            return scheduler
        return self.catalog.default_scheduler(model) or FALLBACK_SCHEDULER

    def pick_seeds(self, seed: int | None, count: int) -> list[int]:
        """Distinct seeds for ``count`` results: the given seed first, then derived ones.

        Derived seeds are hashed, not sequential, so nobody can rely on seed+i.
        """
        if seed is None:
            seeds: list[int] = []
            while len(seeds) < count:
                s = random_seed(_SEED_RANGE)
                if s not in seeds:
                    seeds.append(s)
            return seeds
        seeds = [seed]
        i = 1
        while len(seeds) < count:
            s = 1 + _digest("numberResults", seed, i) % _SEED_RANGE.high
            if s not in seeds:
                seeds.append(s)
            i += 1
        return seeds

    # -- images ------------------------------------------------------------------
    def render(self, req: ImageRequest) -> tuple[np.ndarray, int | None, bool, str]:
        """Pixels (uint8 HxWx3), the seed used, whether stochastic, the scheduler used."""
        if req.width < 1 or req.height < 1:
            raise InvalidInputError("width and height must be positive")
        scheduler = self.resolve_scheduler(req.model, req.scheduler)
        stochastic = classify(scheduler).is_stochastic
        seedless = self.is_seedless(req.model)
        if seedless:
            seed_used = None
            layout_rng = _fresh_rng()
        else:
            seed_used = req.seed if req.seed is not None else random_seed(_SEED_RANGE)
            layout_rng = _rng("layout", req.model, seed_used)
        layout = _Layout.draw(layout_rng)
        revision = self.revision_for(req.model)
        if revision is not None:
            # A new revision keeps a family resemblance but moves things a lot.
            layout = layout.perturbed(_rng("revision", req.model, revision, seed_used), 0.09, 0.9, 0.35)
        live = _fresh_rng() if stochastic else None
        if live is not None:
            layout = layout.perturbed(live, 0.006, 0.04, 0.03)

        w, h = req.width, req.height
        lw, lh = _work_size(w, h)
        field_lo, hue_lo = layout.render(lh, lw)
        family = classify(scheduler).family or scheduler
        residual_rng = _rng("residual", req.model, seed_used, family, revision)
        steps = max(1, int(req.steps))
        # More steps refine: less of the seeded residual noise remains.
        field_lo += residual_rng.standard_normal((lh, lw), dtype=np.float32) * np.float32(2.0 / steps**0.9)
        if live is not None:
            field_lo += live.standard_normal((lh, lw), dtype=np.float32) * np.float32(0.12)

        cfg = float(req.cfg_scale)
        gain = np.float32(0.55 + 0.06 * min(max(cfg, 0.0), 30.0))
        lum = np.float32(1.0) / (np.float32(1.0) + np.exp(-gain * field_lo))
        lum = _resize(lum.astype(np.float32), w, h)
        hue = _resize(hue_lo, w, h)

        dark, light, accent, (theta, freq, phase, warp) = _palette(req.prompt, req.negative_prompt)
        y = (np.arange(h, dtype=np.float32) / max(h, w))[:, None]
        x = (np.arange(w, dtype=np.float32) / max(h, w))[None, :]
        ct, st = np.float32(math.cos(theta)), np.float32(math.sin(theta))
        detail_amp = np.float32(0.015 + 0.004 * min(max(cfg, 0.0), 20.0))
        texture = np.sin(
            np.float32(2 * math.pi * freq) * (x * ct + y * st) + np.float32(warp) * lum + np.float32(phase)
        )
        lum = lum + detail_amp * texture * (lum * (1 - lum) * 4)
        grain_rng = _rng("grain", req.model, seed_used, revision)
        lum += grain_rng.standard_normal((h, w), dtype=np.float32) * np.float32(0.35 / steps)
        if live is not None:
            lum += live.standard_normal((h, w), dtype=np.float32) * np.float32(0.03)
        chroma = np.float32(0.15 + 0.03 * min(max(cfg, 0.0), 15.0))
        lum3 = lum[:, :, None]
        rgb = dark + (light - dark) * lum3 + (chroma * hue)[:, :, None] * accent
        pixels = np.clip(rgb * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
        return pixels, seed_used, stochastic, scheduler

    def image(self, req: ImageRequest) -> Output:
        fmt = req.output_format.upper()
        if fmt not in IMAGE_FORMATS:
            raise InvalidInputError(f"outputFormat {req.output_format!r} is not one of PNG, JPG, WEBP")
        pixels, seed_used, stochastic, scheduler = self.render(req)
        ext, ctype = IMAGE_FORMATS[fmt]
        return Output(
            encode_image(pixels, fmt, req.output_quality),
            seed_used,
            ext,
            ctype,
            seeded=seed_used is not None,
            stochastic=stochastic,
            scheduler=scheduler,
        )

    # -- video and audio ---------------------------------------------------------
    def video(
        self, model: str, prompt: str, seed: int | None, *, width: int = 96, height: int = 96, frames: int = 8
    ) -> Output:
        """A small animated GIF whose frames drift slowly; seeded like images."""
        seedless = self.is_seedless(model)
        seed_used = None if seedless else (seed if seed is not None else random_seed(_SEED_RANGE))
        w, h = max(16, min(width, 160)), max(16, min(height, 160))
        base = _rng("video", model, seed_used, self.revision_for(model)) if not seedless else _fresh_rng()
        layout = _Layout.draw(base)
        dark, light, accent, _ = _palette(prompt, "")
        images = []
        for i in range(max(1, min(frames, 24))):
            moved = _Layout(**{**layout.__dict__, "wave_phase": layout.wave_phase + 0.25 * i})
            f, hue = moved.render(h, w)
            lum = (1 / (1 + np.exp(-f)))[:, :, None]
            rgb = dark + (light - dark) * lum + (0.3 * hue)[:, :, None] * accent
            images.append(Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), "RGB"))
        buf = io.BytesIO()
        images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=125, loop=0)
        return Output(buf.getvalue(), seed_used, *VIDEO_FORMAT, seeded=seed_used is not None)

    def audio(self, model: str, prompt: str, seed: int | None, *, duration: float = 1.0) -> Output:
        """A short mono 16 kHz WAV: a seeded chord with a prompt-dependent timbre."""
        seedless = self.is_seedless(model)
        seed_used = None if seedless else (seed if seed is not None else random_seed(_SEED_RANGE))
        rng = _rng("audio", model, seed_used, self.revision_for(model)) if not seedless else _fresh_rng()
        rate = 16000
        n = int(rate * max(0.1, min(float(duration), 10.0)))
        t = np.arange(n, dtype=np.float64) / rate
        freqs = rng.uniform(110, 880, 3)
        bright = 1 + _digest("timbre", prompt) % 4
        sig = sum(np.sin(2 * np.pi * f * t) + np.sin(2 * np.pi * f * bright * t) / bright for f in freqs)
        sig = (
            sig
            / np.max(np.abs(sig))
            * 0.6
            * np.minimum(1.0, 20 * t)
            * np.minimum(1.0, 20 * (t[-1] - t + 1e-3))
        )
        pcm = (sig * 32767).astype("<i2").tobytes()
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(pcm)
        return Output(buf.getvalue(), seed_used, *AUDIO_FORMAT, seeded=seed_used is not None)


def encode_image(pixels: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """Encode deterministically: same pixels, same bytes (no timestamps)."""
    img = Image.fromarray(pixels, "RGB")
    buf = io.BytesIO()
    fmt = fmt.upper()
    q = max(1, min(int(quality), 100))
    if fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Software", SOFTWARE_TAG)
        img.save(buf, "PNG", compress_level=1, pnginfo=info)
    elif fmt in ("JPG", "JPEG"):
        img.save(buf, "JPEG", quality=q)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=q, method=2)
    else:
        raise InvalidInputError(f"outputFormat {fmt!r} is not one of PNG, JPG, WEBP")
    return buf.getvalue()


__all__ = [
    "AUDIO_FORMAT",
    "FALLBACK_SCHEDULER",
    "IMAGE_FORMATS",
    "SOFTWARE_TAG",
    "VIDEO_FORMAT",
    "ImageRequest",
    "Output",
    "ReferenceGenerator",
    "encode_image",
]
