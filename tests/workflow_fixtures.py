"""Files in the real formats other tools write, made by the tests (no binary fixtures).

- A1111/Forge PNG: infotext in the ``parameters`` tEXt chunk (``image.info["parameters"]``).
- A1111 JPEG/WEBP: infotext in EXIF UserComment (0x9286 in the Exif IFD) with the
  8-byte charset prefix, big-endian UTF-16 for ``UNICODE`` as piexif writes it.
- ComfyUI PNG: tEXt ``prompt`` (API graph) and ``workflow`` (UI graph), as SaveImage does.
- Runware JSON Lines: one {"request": [...], "response": {"data": [...]}} per line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

A1111_INFOTEXT = (
    "a lighthouse at dusk, (oil painting:1.1)\n"
    "dramatic sky\n"
    "Negative prompt: blurry, text, watermark\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 4012345678, "
    "Size: 96x64, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, "
    'Lora hashes: "coast: 0a1b2c3d4e, paint: 5f6a7b8c9d", '
    'Hires prompt: "a lighthouse, \\"golden hour\\"", Clip skip: 2, RNG: CPU, ENSD: 31337, '
    "Version: v1.10.1"
)

JPEG_INFOTEXT = (
    "a fox in snow\n"
    "Negative prompt: lowres\n"
    "Steps: 25, Sampler: Euler a, CFG scale: 7, Seed: 123456789, Size: 80x48, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.9.4"
)


def image(width: int = 96, height: int = 64, color: tuple[int, int, int] = (40, 90, 160)) -> Image.Image:
    im = Image.new("RGB", (width, height), color)
    # A little structure so fingerprints are not degenerate.
    for x in range(0, width, 8):
        for y in range(0, height, 8):
            im.putpixel((x, y), ((x * 7) % 256, (y * 11) % 256, (x + y) % 256))
    return im


def a1111_png(path: Path, text: str = A1111_INFOTEXT, **kwargs: Any) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    image(**kwargs).save(path, pnginfo=info)
    return path


def user_comment(text: str, charset: str = "unicode") -> bytes:
    if charset == "unicode":
        return b"UNICODE\x00" + text.encode("utf-16-be")
    return b"ASCII\x00\x00\x00" + text.encode("ascii")


def exif_image(path: Path, text: str = JPEG_INFOTEXT, *, fmt: str = "JPEG", charset: str = "unicode") -> Path:
    im = image(80, 48, (200, 120, 40))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = user_comment(text, charset)
    im.save(path, format=fmt, exif=exif.tobytes(), quality=90)
    return path


def comfy_graph(*, seed_base: int = 156680208700286, seed_refine: int = 2**64 - 1) -> dict[str, Any]:
    """Base pass + hires refine pass: two KSamplers, a LoRA, one SaveImage."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "film_grain.safetensors",
                "strength_model": 0.8,
                "strength_clip": 0.6,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": 'a castle on a cliff, "storm", 35mm', "clip": ["10", 1]},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry, jpeg artifacts", "clip": ["10", 1]},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed_base,
                "steps": 20,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "11": {
            "class_type": "LatentUpscaleBy",
            "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["3", 0]},
        },
        "12": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "noise_seed": seed_refine,
                "add_noise": "enable",
                "steps": 14,
                "cfg": 5.5,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "start_at_step": 4,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["11", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "castle", "images": ["8", 0]}},
    }


COMFY_WORKFLOW = {
    "last_node_id": 12,
    "last_link_id": 20,
    "nodes": [{"id": 3, "type": "KSampler"}],
    "links": [],
}


def comfy_png(path: Path, graph: dict[str, Any] | None = None, workflow: Any = COMFY_WORKFLOW) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph or comfy_graph()))
    if workflow is not None:
        info.add_text("workflow", json.dumps(workflow))
    image(64, 96, (10, 140, 60)).save(path, pnginfo=info)
    return path


def runware_exchange(task_uuid: str, seeds: list[int], *, cfg: float = 7.0) -> dict[str, Any]:
    task = {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "model": "runware:101@1",
        "positivePrompt": "a koi pond, top view",
        "negativePrompt": "people",
        "width": 1024,
        "height": 1024,
        "steps": 28,
        "CFGScale": cfg,
        "scheduler": "DPM++ 2M Karras",
        "numberResults": len(seeds),
        "outputFormat": "PNG",
        "apiKey": "sk-should-never-be-stored",
    }
    data = [
        {
            "taskType": "imageInference",
            "taskUUID": task_uuid,
            "imageUUID": f"{task_uuid[:8]}-img-{i}",
            "imageURL": f"https://im.runware.ai/image/{task_uuid[:8]}-{i}.png",
            "seed": seed,
            "cost": 0.0038,
        }
        for i, seed in enumerate(seeds)
    ]
    return {"request": [task], "response": {"data": data}, "created_at": "2026-11-20T10:00:00Z"}


def runware_jsonl(path: Path) -> Path:
    lines = [
        runware_exchange("0b9a7c1e-1111-4a4a-9a9a-000000000001", [11, 2**63 - 1]),
        runware_exchange("0b9a7c1e-1111-4a4a-9a9a-000000000002", [987654321], cfg=4.5),
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def reencode(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.save(out, format="PNG")
        return out.getvalue()
