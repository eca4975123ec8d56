"""Files in each generator's own format, written by the tests (no binary fixtures).

Layouts follow what each tool writes (see docs/workflows.md, "Formats read"):
ComfyUI PNG text chunks / animated-WEBP EXIF Make+Model, InvokeAI ``sd-metadata`` /
``invokeai_metadata`` / ``Dream``, NovelAI ``Software``+``Comment``, Draw Things XMP,
A1111 stealth alpha bits, A1111 text in a PNG ``eXIf`` UserComment, SwarmUI and Civitai
JSON in a JPEG UserComment, Fooocus JSON ``parameters``.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from tests.workflow_fixtures import image, user_comment

STEALTH_INFOTEXT = (
    "a circle\nNegative prompt: a square\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
    "Seed: 2015833630, Size: 64x64, Model hash: 15012c538f, Model: realisticVisionV51_v51VAE, Version: v1.9.4"
)


def png_with_text(path: Path, chunks: dict[str, str], size: tuple[int, int] = (64, 96)) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    image(*size).save(path, pnginfo=info)
    return path


def _exif(tags: dict[int, bytes | str], *, in_exif_ifd: tuple[int, ...] = (0x9286,)) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        if tag in in_exif_ifd:
            exif.get_ifd(0x8769)[tag] = value
        else:
            exif[tag] = value
    return exif.tobytes()


def jpeg_with_comment(path: Path, comment: str, size: tuple[int, int] = (80, 48)) -> Path:
    image(*size).save(path, format="JPEG", exif=_exif({0x9286: user_comment(comment)}), quality=90)
    return path


def png_with_exif_comment(path: Path, comment: str) -> Path:
    """A PNG whose ``eXIf`` chunk holds the text in UserComment (as some WebUI forks write)."""
    image().save(path, exif=_exif({0x9286: user_comment(comment)}))
    return path


def animated_webp(path: Path, graph: dict[str, Any], workflow: dict[str, Any]) -> Path:
    """Two frames, the graph in EXIF Model and the UI workflow in Make, as SaveAnimatedWEBP."""
    frames = [image(64, 48, (10 * i, 90, 160)) for i in range(2)]
    exif = _exif({0x0110: "prompt:" + json.dumps(graph), 0x010F: "workflow:" + json.dumps(workflow)})
    frames[0].save(path, format="WEBP", save_all=True, append_images=frames[1:], exif=exif, lossless=True)
    return path


def stealth_png(path: Path, text: str = STEALTH_INFOTEXT, *, compressed: bool = True) -> Path:
    """A1111 stealth pnginfo: signature, bit count, (gzipped) text in the alpha LSBs."""
    payload = gzip.compress(text.encode()) if compressed else text.encode()
    signature = b"stealth_pngcomp" if compressed else b"stealth_pnginfo"
    data = signature + struct.pack(">I", len(payload) * 8) + payload
    bits = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
    width = height = 64
    im = image(width, height).convert("RGBA")
    pixels = im.load()
    for index, bit in enumerate(bits):
        x, y = divmod(index, height)  # column by column
        r, g, b, _ = pixels[x, y]
        pixels[x, y] = (r, g, b, 254 | bit)
    im.save(path)
    return path


def xmp_png(path: Path, xmp: str) -> Path:
    return png_with_text(path, {"XML:com.adobe.xmp": xmp})


def drawthings_xmp(settings: dict[str, Any]) -> str:
    comment = json.dumps(settings).replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return (
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/' "
        "xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:CreatorTool='Draw Things'>"
        f"<exif:UserComment><rdf:Alt><rdf:li xml:lang='x-default'>{comment}</rdf:li></rdf:Alt>"
        "</exif:UserComment>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def raw_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A 1×1 PNG with the given extra chunks before IDAT (for corrupt-carrier cases)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00\x00\x00")
    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr))
    for kind, body in chunks:
        out.write(chunk(kind, body))
    out.write(chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return out.getvalue()


# -- ComfyUI graphs ---------------------------------------------------------------------


def flux_custom_graph(seed: int = 8123456789) -> dict[str, Any]:
    """SamplerCustomAdvanced with RandomNoise, KSamplerSelect, BasicScheduler, BasicGuider
    and FluxGuidance; UNET through a LoRA; an SD3 empty latent."""
    return {
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a red fox, studio light", "clip": ["11", 0]},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "11": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors", "type": "flux"}},
        "12": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8"},
        },
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"scheduler": "simple", "steps": 28, "denoise": 1.0, "model": ["30", 0]},
        },
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0], "conditioning": ["26", 0]}},
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 96, "batch_size": 1}},
        "29": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"lora_name": "fox.safetensors", "strength_model": 0.7, "model": ["12", 0]},
        },
        "30": {"class_type": "ModelSamplingFlux", "inputs": {"max_shift": 1.15, "model": ["29", 0]}},
    }


def sampler_custom_graph() -> dict[str, Any]:
    """SamplerCustom (SD-Turbo style): seed, cfg, add_noise on the node, SDTurboScheduler."""
    return {
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 96, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle", "clip": ["20", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text", "clip": ["20", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["20", 2]}},
        "13": {
            "class_type": "SamplerCustom",
            "inputs": {
                "add_noise": True,
                "noise_seed": 77,
                "cfg": 1.0,
                "model": ["20", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "sampler": ["14", 0],
                "sigmas": ["22", 0],
                "latent_image": ["5", 0],
            },
        },
        "14": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "20": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_turbo_1.0.safetensors"},
        },
        "22": {"class_type": "SDTurboScheduler", "inputs": {"steps": 1, "model": ["20", 0]}},
        "25": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


def _ksampler_advanced(
    seed: int, add_noise: str, start: int, end: int, latent: list[Any], cfg: float
) -> dict:
    return {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": add_noise,
            "noise_seed": seed,
            "steps": 20,
            "cfg": cfg,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "start_at_step": start,
            "end_at_step": end,
            "return_with_leftover_noise": "enable" if end < 20 else "disable",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": latent,
        },
    }


def two_pass_noop_seed_graph() -> dict[str, Any]:
    """Base pass adds the noise (seed 5550001); the finishing pass adds none (seed 0)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 96, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a harbour", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blur", "clip": ["4", 1]}},
        "10": _ksampler_advanced(5550001, "enable", 0, 12, ["5", 0], 7.0),
        "11": _ksampler_advanced(0, "disable", 12, 10000, ["10", 0], 4.5),
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "harbour", "images": ["8", 0]}},
    }


def several_outputs_graph() -> dict[str, Any]:
    """Two saves: the 64×96 base and a 2× latent-upscaled refine (128×192)."""
    graph = two_pass_noop_seed_graph()
    graph["11"]["inputs"]["add_noise"] = "enable"
    graph["11"]["inputs"]["noise_seed"] = 5550002
    graph["20"] = {"class_type": "LatentUpscaleBy", "inputs": {"scale_by": 2.0, "samples": ["11", 0]}}
    graph["21"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": 5550003,
            "steps": 8,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["20", 0],
        },
    }
    graph["22"] = {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["4", 2]}}
    graph["23"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "harbour", "images": ["22", 0]}}
    return graph


def detailer_graph() -> dict[str, Any]:
    """A KSampler image refined by an Impact-pack FaceDetailer pass, then saved."""
    graph = two_pass_noop_seed_graph()
    graph["11"]["inputs"].update(add_noise="enable", noise_seed=5550002)
    graph["30"] = {
        "class_type": "FaceDetailer",
        "inputs": {
            "image": ["8", 0],
            "model": ["4", 0],
            "clip": ["4", 1],
            "vae": ["4", 2],
            "seed": 9990001,
            "steps": 15,
            "cfg": 6.0,
            "sampler_name": "dpmpp_sde",
            "scheduler": "normal",
            "denoise": 0.4,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "bbox_detector": ["31", 0],
            "guide_size": 384,
        },
    }
    graph["31"] = {"class_type": "UltralyticsDetectorProvider", "inputs": {"model_name": "face_yolov8m.pt"}}
    graph["9"]["inputs"]["images"] = ["30", 0]
    return graph


def ui_workflow(*, sampler_type: str = "KSampler") -> dict[str, Any]:
    """A UI-format workflow (no API graph): checkpoint → KSampler → VAEDecode → SaveImage,
    with a Reroute on the model link and a muted preview."""

    def node(nid: int, kind: str, widgets: list[Any], inputs: list[tuple[str, int]], mode: int = 0) -> dict:
        return {
            "id": nid,
            "type": kind,
            "mode": mode,
            "widgets_values": widgets,
            "inputs": [{"name": n, "type": "*", "link": link} for n, link in inputs],
        }

    return {
        "last_node_id": 9,
        "last_link_id": 9,
        "nodes": [
            node(4, "CheckpointLoaderSimple", ["ui_model.safetensors"], []),
            node(2, "Reroute", [], [("", 1)]),
            node(5, "EmptyLatentImage", [64, 96, 1], []),
            node(6, "CLIPTextEncode", ["a lighthouse"], [("clip", 2)]),
            node(
                3,
                sampler_type,
                [4242, "fixed", 25, 6.5, "dpmpp_2m", "karras", 1.0],
                [("model", 3), ("positive", 4), ("latent_image", 5)],
            ),
            node(8, "VAEDecode", [], [("samples", 6), ("vae", 7)]),
            node(9, "SaveImage", ["ui"], [("images", 8)]),
            node(7, "PreviewImage", [], [("images", 9)], mode=2),
        ],
        "links": [
            [1, 4, 0, 2, 0, "MODEL"],
            [2, 4, 1, 6, 0, "CLIP"],
            [3, 2, 0, 3, 0, "MODEL"],
            [4, 6, 0, 3, 1, "CONDITIONING"],
            [5, 5, 0, 3, 3, "LATENT"],
            [6, 3, 0, 8, 0, "LATENT"],
            [7, 4, 2, 8, 1, "VAE"],
            [8, 8, 0, 9, 0, "IMAGE"],
            [9, 8, 0, 7, 0, "IMAGE"],
        ],
    }
