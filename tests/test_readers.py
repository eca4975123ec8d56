"""The reader registry: each generator's format, written by the tests, read field by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.records import NewRecord, SeedOrigin
from ledger.errors import InvalidInputError, LedgerError
from ledger.store import Ledger
from ledger.workflows import import_paths, parse_file
from ledger.workflows.readers import stated
from tests import reader_fixtures as rf
from tests.workflow_fixtures import comfy_graph, image


def _one(path: Path) -> tuple[str, NewRecord]:
    parsed = parse_file(path.name, path.read_bytes())
    (record,) = parsed.records
    return parsed.kind, record


def _fields(record: NewRecord) -> tuple[Any, ...]:
    return (
        record.seed,
        record.model,
        record.scheduler_requested,
        record.params.get("schedule"),
        record.steps,
        record.cfg_scale,
        record.width,
        record.height,
    )


# -- ComfyUI graph patterns ----------------------------------------------------------


def test_comfy_sampler_custom_advanced_flux(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "flux_00001_.png", {"prompt": json.dumps(rf.flux_custom_graph())})
    kind, record = _one(path)
    assert kind == "comfyui-png"
    assert _fields(record) == (8123456789, "flux1-dev.safetensors", "euler", "simple", 28, None, 64, 96)
    assert record.prompt == "a red fox, studio light"
    assert record.params["flux_guidance"] == 3.5
    assert record.params["loras"][0]["lora_name"] == "fox.safetensors"
    assert (record.params["sampler_node"], record.params["seed_node"]) == ("13", "13")
    (sampler,) = record.params["samplers"]
    assert sampler["noise_node"] == "25 RandomNoise" and sampler["sigmas_node"] == "17 BasicScheduler"


def test_comfy_cfg_guider_and_disable_noise() -> None:
    graph = rf.flux_custom_graph()
    graph["22"] = {
        "class_type": "CFGGuider",
        "inputs": {"cfg": 4.5, "model": ["30", 0], "positive": ["26", 0]},
    }
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.seed, record.cfg_scale, record.prompt) == (8123456789, 4.5, "a red fox, studio light")
    graph["25"] = {"class_type": "DisableNoise", "inputs": {}}
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert record.seed is None and record.seed_origin is SeedOrigin.UNKNOWN
    assert "no pass on the image's path adds noise" in record.params["notes"][0]


def test_comfy_sampler_custom_with_preview_only(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "turbo.png", {"prompt": json.dumps(rf.sampler_custom_graph())})
    _, record = _one(path)
    assert _fields(record) == (
        77,
        "sd_xl_turbo_1.0.safetensors",
        "euler_ancestral",
        "SDTurboScheduler",
        1,
        1.0,
        64,
        96,
    )
    assert record.params["output_class"] == "PreviewImage"


def test_comfy_two_pass_records_the_seed_that_drew_the_noise(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "h.png", {"prompt": json.dumps(rf.two_pass_noop_seed_graph())})
    _, record = _one(path)
    # Steps/CFG/sampler of the finishing pass; the seed of the pass that added noise.
    assert _fields(record) == (5550001, "base.safetensors", "dpmpp_2m", "karras", 20, 4.5, 64, 96)
    assert (record.params["sampler_node"], record.params["seed_node"]) == ("11", "10")
    assert record.params["chain"] == ["11", "10"]
    assert record.params["seeds"] == {"10": 5550001, "11": 0}
    assert "adds no noise" in record.params["notes"][0]


@pytest.mark.parametrize(("size", "node", "seed"), [((64, 96), "9", 5550002), ((128, 192), "23", 5550003)])
def test_comfy_several_outputs_chosen_by_pixel_size(
    tmp_path: Path, size: tuple[int, int], node: str, seed: int
) -> None:
    path = rf.png_with_text(tmp_path / "x.png", {"prompt": json.dumps(rf.several_outputs_graph())}, size)
    _, record = _one(path)
    assert (record.params["output_node"], record.params["output_matched_by"]) == (node, "pixel_size")
    assert (record.seed, record.width, record.height) == (seed, *size)


def test_comfy_detailer_pass_is_the_final_pass(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "face.png", {"prompt": json.dumps(rf.detailer_graph())})
    _, record = _one(path)
    assert _fields(record) == (9990001, "base.safetensors", "dpmpp_sde", "normal", 15, 6.0, 64, 96)
    assert record.params["chain"] == ["30", "11", "10"]
    assert record.params["denoise"] == 0.4


def test_comfy_nan_in_node_fields_is_tolerated(tmp_path: Path) -> None:
    text = json.dumps(comfy_graph()).replace(
        '"class_type": "SaveImage"', '"is_changed": NaN, "class_type": "SaveImage"'
    )
    text = text.replace(
        '"upscale_method": "nearest-exact"', '"upscale_method": "nearest-exact", "x": Infinity'
    )
    assert "NaN" in text and "Infinity" in text
    record = parse_file(
        "castle_00001_.png", rf.png_with_text(tmp_path / "n.png", {"prompt": text}).read_bytes()
    )
    r = record.records[0]
    assert (r.seed, r.steps, r.model) == (2**64 - 1, 14, "dreamshaper_8.safetensors")
    assert r.params["graph"]["11"]["inputs"]["x"] is None  # stored as null, and said so
    assert any("NaN/Infinity" in n for n in r.params["notes"])


def test_comfy_animated_webp_graph_in_exif(ledger: Ledger, tmp_path: Path) -> None:
    graph = rf.two_pass_noop_seed_graph()
    graph["5"]["inputs"].update(width=64, height=48)
    graph["9"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"filename_prefix": "v", "images": ["8", 0]}}
    path = rf.animated_webp(tmp_path / "v.webp", graph, {"nodes": [], "links": []})
    (outcome,) = import_paths(ledger, [path]).outcomes
    assert (outcome.status, outcome.kind) == ("imported", "comfyui-webp"), outcome
    record = ledger.get(outcome.record_ids[0])
    assert _fields(record) == (5550001, "base.safetensors", "dpmpp_2m", "karras", 20, 4.5, 64, 48)
    assert record.params["workflow"] == {"nodes": [], "links": []}
    assert str(record.modality) == "video"  # fingerprinted as a video (sampled frames)
    assert ledger.fingerprint_of(record.id).modality == "video"


def test_comfy_ui_workflow_only_read_from_widgets(tmp_path: Path) -> None:
    workflow = rf.ui_workflow()
    workflow["nodes"][0]["properties"] = {"cnr_id": "comfy-core", "ver": "0.3.10"}
    path = rf.png_with_text(tmp_path / "ui.png", {"workflow": json.dumps(workflow)})
    kind, record = _one(path)
    assert kind == "comfyui-png"
    assert record.params["generator"] == {"name": "ComfyUI", "version": "0.3.10"}
    assert _fields(record) == (4242, "ui_model.safetensors", "dpmpp_2m", "karras", 25, 6.5, 64, 96)
    assert record.prompt == "a lighthouse"
    assert record.params["import"]["carrier"] == "png:workflow-only"
    # The same workflow as a JSON file.
    (tmp_path / "wf.json").write_text(json.dumps(rf.ui_workflow()))
    parsed = parse_file("wf.json", (tmp_path / "wf.json").read_bytes())
    assert parsed.kind == "comfyui-workflow-json"
    assert [_fields(r)[:5] for r in parsed.records] == [
        (4242, "ui_model.safetensors", "dpmpp_2m", "karras", 25)
    ]


def test_comfy_ui_workflow_with_unknown_sampler_type_is_skipped(tmp_path: Path) -> None:
    path = rf.png_with_text(
        tmp_path / "ui.png", {"workflow": json.dumps(rf.ui_workflow(sampler_type="KSampler //Inspire"))}
    )
    with pytest.raises(
        InvalidInputError, match=r"node 3 \(KSampler //Inspire\) has widget values seedledger cannot name"
    ):
        parse_file(path.name, path.read_bytes())


def test_comfy_dangling_link_reads_what_is_there_or_skips() -> None:
    graph = comfy_graph()
    graph["9"]["inputs"]["images"] = ["99", 0]  # the save node points at a missing node
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.seed, record.model, record.steps) == (2**64 - 1, "dreamshaper_8.safetensors", 14)
    assert "links to node 99, which is not in the graph" in record.params["notes"][0]
    lone = {
        "9": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
    }
    with pytest.raises(
        InvalidInputError,
        match=r"no sampler pass feeds save node 9 \(SaveImage\): .*links to node 99, which is not in",
    ):
        parse_file("x.png", _png_bytes(lone))


def test_comfy_value_computed_at_run_time_is_unknown_with_a_note() -> None:
    graph = comfy_graph()
    graph["40"] = {"class_type": "SimpleMath+", "inputs": {"value": "a*2", "a": ["41", 0]}}
    graph["41"] = {"class_type": "PrimitiveInt", "inputs": {"value": 3}}
    graph["12"]["inputs"]["noise_seed"] = ["40", 0]
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert record.seed is None and record.steps == 14
    assert any("computed at run time by node 40 (SimpleMath+)" in n for n in record.params["notes"])


def test_comfy_model_merge_is_named() -> None:
    graph = comfy_graph()
    graph["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "other.safetensors"}}
    graph["51"] = {
        "class_type": "ModelMergeSimple",
        "inputs": {"ratio": 0.5, "model1": ["10", 0], "model2": ["50", 0]},
    }
    graph["12"]["inputs"]["model"] = ["51", 0]
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert record.model == "MERGE(dreamshaper_8.safetensors, other.safetensors)"


def _png_bytes(graph: dict[str, Any]) -> bytes:
    import io

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    out = io.BytesIO()
    image(64, 96).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


# -- the other generators ------------------------------------------------------------


def test_invokeai_3_metadata(tmp_path: Path) -> None:
    meta = {
        "app_version": "4.2.1",
        "generation_mode": "txt2img",
        "positive_prompt": "a cube",
        "negative_prompt": "blur",
        "width": 512,
        "height": 768,
        "seed": 3293022630,
        "cfg_scale": 7.5,
        "steps": 30,
        "scheduler": "dpmpp_2m",
        "model": {"name": "juggernautXL", "hash": "blake3:abc123", "key": "k", "base": "sdxl"},
    }
    path = rf.png_with_text(
        tmp_path / "i.png", {"invokeai_metadata": json.dumps(meta), "invokeai_graph": "{}"}
    )
    kind, record = _one(path)
    assert kind == "invokeai-png"
    assert _fields(record) == (3293022630, "juggernautXL", "dpmpp_2m", None, 30, 7.5, 512, 768)
    assert (record.prompt, record.negative_prompt) == ("a cube", "blur")
    assert record.params["generator"] == {"name": "InvokeAI", "version": "4.2.1"}
    assert record.params["model_hash"] == "blake3:abc123"


def test_invokeai_2_sd_metadata_and_dream(tmp_path: Path) -> None:
    meta = {
        "model": "stable diffusion",
        "model_weights": "deliberate_v08",
        "model_hash": "56d1",
        "app_version": "2.3.0",
        "image": {
            "prompt": [{"prompt": "a duck", "weight": 1.0}],
            "steps": 50,
            "cfg_scale": 5,
            "height": 768,
            "width": 512,
            "seed": 2980747362,
            "sampler": "k_lms",
            "type": "txt2img",
        },
    }
    dream = '"a duck" -s 50 -S 2980747362 -W 512 -H 768 -C 5 -A k_lms'
    path = rf.png_with_text(tmp_path / "d.png", {"Dream": dream, "sd-metadata": json.dumps(meta)})
    _, record = _one(path)
    assert _fields(record) == (2980747362, "deliberate_v08", "k_lms", None, 50, 5.0, 512, 768)
    assert record.prompt == "a duck" and record.params["model_hash"] == "56d1"
    only = rf.png_with_text(
        tmp_path / "e.png", {"Dream": '"rick astley" -s50 -W512 -H512 -C7.5 -Ak_lms -F -S777114188'}
    )
    _, record = _one(only)
    assert _fields(record) == (777114188, "unknown", "k_lms", None, 50, 7.5, 512, 512)
    assert record.prompt == "rick astley"


def test_invokeai_graph_alone_is_refused_with_its_reason(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "g.png", {"invokeai_graph": '{"nodes": {}}'})
    with pytest.raises(InvalidInputError, match="holds only 'invokeai_graph'"):
        parse_file(path.name, path.read_bytes())


def test_novelai(tmp_path: Path) -> None:
    comment = {
        "steps": 28,
        "sampler": "k_euler_ancestral",
        "seed": 2253955223,
        "scale": 10.0,
        "uc": "lowres",
        "width": 832,
        "height": 1216,
        "strength": 0.4,
    }
    path = rf.png_with_text(
        tmp_path / "n.png",
        {
            "Software": "NovelAI",
            "Description": "a cat",
            "Source": "Stable Diffusion 1D44365E",
            "Comment": json.dumps(comment),
        },
    )
    kind, record = _one(path)
    assert kind == "novelai-png"
    assert _fields(record) == (
        2253955223,
        "Stable Diffusion 1D44365E",
        "k_euler_ancestral",
        None,
        28,
        10.0,
        832,
        1216,
    )
    assert (record.prompt, record.negative_prompt, record.params["model_hash"]) == (
        "a cat",
        "lowres",
        "1D44365E",
    )


def test_drawthings_xmp(tmp_path: Path) -> None:
    settings = {
        "c": "a <red> fox & hound",
        "uc": "blurry",
        "seed": 1234567,
        "steps": 20,
        "scale": 7.0,
        "sampler": "DPM++ 2M Karras",
        "model": "sd_v1.5_f16.ckpt",
        "size": "512x768",
    }
    path = rf.xmp_png(tmp_path / "dt.png", rf.drawthings_xmp(settings))
    kind, record = _one(path)
    assert kind == "drawthings-png"
    assert _fields(record) == (1234567, "sd_v1.5_f16.ckpt", "DPM++ 2M Karras", None, 20, 7.0, 512, 768)
    assert record.prompt == "a <red> fox & hound"


@pytest.mark.parametrize("compressed", [True, False])
def test_a1111_stealth_alpha(tmp_path: Path, compressed: bool) -> None:
    path = rf.stealth_png(tmp_path / "s.png", compressed=compressed)
    kind, record = _one(path)
    assert kind == "a1111-stealth-png"
    assert _fields(record) == (2015833630, "realisticVisionV51_v51VAE", "Euler", "Automatic", 20, 7.0, 64, 64)
    assert record.params["model_hash"] == "15012c538f"
    assert record.params["generator"] == {"name": "AUTOMATIC1111", "version": "v1.9.4"}


def test_a1111_text_in_png_exif_user_comment(tmp_path: Path) -> None:
    text = (
        "a fox\nSteps: 25, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 96x64, Model: m1, "
        "Version: f2.0.1v1.10.1-previous-1"
    )
    kind, record = _one(rf.png_with_exif_comment(tmp_path / "e.png", text))
    assert kind == "a1111-png"
    assert _fields(record) == (123, "m1", "Euler a", None, 25, 7.0, 96, 64)
    assert record.params["generator"] == {"name": "Forge", "version": "f2.0.1"}
    assert record.params["import"]["carrier"] == "png:exif-usercomment"


def test_a1111_json_values_are_not_cut_at_their_first_comma(tmp_path: Path) -> None:
    resources = [
        {"type": "checkpoint", "modelVersionId": 1, "modelName": "Real, Vision"},
        {"type": "lora", "weight": 0.8},
    ]
    text = (
        "a boat\nNegative prompt: fog\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, "
        'Seed: 99, Size: 64x96, Hashes: {"model": "aabbccddee", "lora:boat": "1122"}, '
        f"Civitai resources: {json.dumps(resources)}, Version: v1.10.1"
    )
    _, record = _one(rf.png_with_text(tmp_path / "c.png", {"parameters": text}))
    assert _fields(record) == (99, "hash:aabbccddee", "DPM++ 2M", "Karras", 30, 6.0, 64, 96)
    assert record.params["json_values"]["Civitai resources"] == resources
    assert record.params["json_values"]["Hashes"] == {"model": "aabbccddee", "lora:boat": "1122"}
    assert record.params["parameters"]["Version"] == "v1.10.1"
    assert record.params["model_hash"] == "aabbccddee"


def test_a1111_prompt_opening_with_a_brace_is_still_infotext(tmp_path: Path) -> None:
    text = "{red|blue} car, [dusk:night:0.5]\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 31, Size: 64x96"
    kind, record = _one(rf.jpeg_with_comment(tmp_path / "dyn.jpg", text))
    assert kind == "a1111-jpeg"
    assert (record.prompt, record.seed, record.steps) == ("{red|blue} car, [dusk:night:0.5]", 31, 12)


def test_swarmui_json_in_jpeg(tmp_path: Path) -> None:
    doc = {
        "sui_image_params": {
            "prompt": "a cat",
            "negativeprompt": "dog",
            "model": "Flux/flux1-dev-fp8",
            "seed": 1,
            "steps": 20,
            "cfgscale": 3.5,
            "width": 1024,
            "height": 768,
            "sampler": "euler",
            "scheduler": "normal",
            "swarm_version": "0.9.4",
        },
        "sui_models": [{"name": "flux1-dev-fp8.safetensors", "param": "model", "hash": "0x7ea1"}],
    }
    kind, record = _one(rf.jpeg_with_comment(tmp_path / "s.jpg", json.dumps(doc, indent=2)))
    assert kind == "swarmui-jpeg"
    assert _fields(record) == (1, "Flux/flux1-dev-fp8", "euler", "normal", 20, 3.5, 1024, 768)
    assert record.backend == "swarmui"
    assert (record.params["generator"], record.params["model_hash"]) == (
        {"name": "SwarmUI", "version": "0.9.4"},
        "0x7ea1",
    )
    assert "parameters" not in record.params  # never read as A1111 text


def test_fooocus_json_parameters(tmp_path: Path) -> None:
    doc = {
        "base_model": "juggernautXL_v8",
        "base_model_hash": "aeb7e9e689",
        "guidance_scale": 4,
        "metadata_scheme": "fooocus",
        "prompt": "a goldfish",
        "negative_prompt": "",
        "resolution": "(768, 1280)",
        "sampler": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "seed": "6952411511246973023",
        "steps": 30,
        "version": "Fooocus v2.4.3",
    }
    path = rf.png_with_text(tmp_path / "f.png", {"parameters": json.dumps(doc), "fooocus_scheme": "fooocus"})
    kind, record = _one(path)
    assert kind == "fooocus-png"
    assert _fields(record) == (
        6952411511246973023,
        "juggernautXL_v8",
        "dpmpp_2m_sde_gpu",
        "karras",
        30,
        4.0,
        768,
        1280,
    )
    assert record.params["generator"] == {"name": "Fooocus", "version": "v2.4.3"}


def test_civitai_comfy_json_in_jpeg(tmp_path: Path) -> None:
    doc: dict[str, Any] = dict(comfy_graph())
    doc["extra"] = {"airs": ["urn:air:sd1:checkpoint:civitai:4384@128713"]}
    doc["extraMetadata"] = json.dumps({"prompt": "a castle", "seed": 1, "steps": 14})
    kind, record = _one(rf.jpeg_with_comment(tmp_path / "civ.jpg", json.dumps(doc)))
    assert kind == "civitai-jpeg"
    assert _fields(record)[:6] == (2**64 - 1, "dreamshaper_8.safetensors", "dpmpp_2m", "karras", 14, 5.5)
    assert record.params["civitai"]["extra"] == doc["extra"]
    assert record.params["generator"]["name"] == "Civitai"


def test_unknown_json_is_refused_not_read_as_a1111(tmp_path: Path) -> None:
    path = rf.jpeg_with_comment(tmp_path / "j.jpg", json.dumps({"foo": 1, "bar": [1, 2]}))
    with pytest.raises(
        InvalidInputError, match=r"EXIF UserComment holds JSON of no known scheme \(keys: bar, foo\)"
    ):
        parse_file(path.name, path.read_bytes())


def test_no_metadata_reason_says_what_was_looked_at(tmp_path: Path) -> None:
    path = rf.png_with_text(tmp_path / "plain.png", {"date:create": "2024"})
    with pytest.raises(InvalidInputError) as caught:
        parse_file(path.name, path.read_bytes())
    assert caught.value.message == (
        "PNG has no generation metadata seedledger reads (PNG text chunks: date:create; EXIF tags: none; "
        "XMP: none, no stealth info in the pixels)"
    )


_BROKEN = ['{"', '{"a": [1, 2', "[[[[" * 20000, '{"seed": "x"}']


@pytest.mark.parametrize(
    "chunks",
    [
        {"prompt": _BROKEN[0]},
        {"workflow": _BROKEN[1]},
        {"invokeai_metadata": _BROKEN[1]},
        {"sd-metadata": _BROKEN[0]},
        {"Software": "NovelAI", "Comment": _BROKEN[1]},
        {"parameters": _BROKEN[3], "fooocus_scheme": "fooocus"},
        {"parameters": "{" + _BROKEN[2]},
        {"XML:com.adobe.xmp": "<x>Draw Things<exif:UserComment>{bad</exif:UserComment></x>"},
        {"Dream": '"unclosed -s 5'},
    ],
)
def test_corrupt_carriers_give_a_reason(tmp_path: Path, chunks: dict[str, str]) -> None:
    path = rf.png_with_text(tmp_path / "bad.png", chunks)
    with pytest.raises(LedgerError):
        parse_file(path.name, path.read_bytes())


def test_corrupt_exif_beside_good_text_still_reads() -> None:
    import struct
    import zlib

    bad_exif = b"MM\x00*\x00\x00\x00\x08\x00\x05"  # IFD runs past the end
    text = b"parameters\x00a fox\nSteps: 5, Sampler: Euler, Seed: 7"
    data = rf.raw_png([(b"eXIf", bad_exif), (b"tEXt", text)])
    (record,) = parse_file("x.png", data).records
    assert (record.seed, record.steps) == (7, 5)
    with pytest.raises(InvalidInputError, match="corrupt EXIF"):
        parse_file("y.png", rf.raw_png([(b"eXIf", bad_exif)]))
    assert struct and zlib  # imported for clarity of the raw layout above


def test_every_format_reimports_idempotently(ledger: Ledger, tmp_path: Path) -> None:
    rf.png_with_text(tmp_path / "flux.png", {"prompt": json.dumps(rf.flux_custom_graph())})
    rf.stealth_png(tmp_path / "stealth.png")
    rf.jpeg_with_comment(tmp_path / "swarm.jpg", json.dumps({"sui_image_params": {"seed": 3, "model": "m"}}))
    rf.png_with_text(tmp_path / "dream.png", {"Dream": '"a" -s 5 -S 9'})
    # NaN in metadata kept as the file said it: stored as null (JSON columns cannot hold NaN).
    nan = json.dumps({"sui_image_params": {"seed": 4, "model": "m", "x": float("nan")}})
    rf.jpeg_with_comment(tmp_path / "nan.jpg", nan)
    first = import_paths(ledger, [tmp_path])
    assert [o.status for o in first.outcomes] == ["imported"] * 5, first.outcomes
    by_name = {Path(o.path).name: o for o in first.outcomes}
    stored = ledger.get(by_name["nan.jpg"].record_ids[0])
    assert stored.params["metadata"]["sui_image_params"]["x"] is None
    assert by_name["nan.jpg"].notes == ("non-finite numbers stored as null: metadata.sui_image_params.x",)
    again = import_paths(ledger, [tmp_path])
    assert [o.status for o in again.outcomes] == ["unchanged"] * 5
    assert ledger.count() == 5


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    ["prompt", "workflow", "parameters", "fooocus_scheme", "invokeai_metadata", "sd-metadata", "Dream",
     "Software", "Comment", "Source", "XML:com.adobe.xmp"]
)  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=60),
    _JSONISH.map(json.dumps),
    st.sampled_from(["NovelAI", "fooocus", '{"sui_image_params": 1}', '"a" -s x -S', "Draw Things"]),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_any_carrier_content_gives_records_or_a_reason(chunks: dict[str, str]) -> None:
    data = _chunks_png(chunks)
    try:
        parsed = parse_file("x.png", data)
    except LedgerError as exc:
        assert exc.message and "\n" not in exc.message
        return
    assert parsed.records and all(stated(r) for r in parsed.records)


@settings(max_examples=150, deadline=None)
@given(_JSONISH)
def test_any_ui_workflow_only_raises_input_errors(nodes: Any) -> None:
    from ledger.core import comfy

    workflow = {"nodes": nodes if isinstance(nodes, list) else [nodes], "links": [[1, 1, 0, 2, 0, "X"]]}
    try:
        ui = comfy.workflow_to_graph(workflow)
        comfy.outputs_of(ui.graph)
    except LedgerError:
        pass


def _chunks_png(chunks: dict[str, str]) -> bytes:
    import io

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    out = io.BytesIO()
    image(8, 8).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_comfy_split_sigmas_sd3_text_and_flux_encoder() -> None:
    graph = rf.flux_custom_graph()
    graph["40"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["17", 0], "step": 10}}
    graph["13"]["inputs"]["sigmas"] = ["40", 1]
    graph["6"] = {
        "class_type": "CLIPTextEncodeFlux",
        "inputs": {"clip_l": "fox", "t5xxl": "a red fox", "guidance": 4.0, "clip": ["11", 0]},
    }
    graph["22"]["inputs"]["conditioning"] = ["6", 0]  # no FluxGuidance node: the encoder's own
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.steps, record.params["schedule"], record.prompt) == (28, "simple", "fox\na red fox")
    assert record.params["flux_guidance"] == 4.0
    assert record.params["samplers"][0]["sigmas_via"] == ["40 SplitSigmas"]


def test_comfy_pipes_and_prompt_literals_on_loaders() -> None:
    graph = rf.two_pass_noop_seed_graph()
    graph["50"] = {
        "class_type": "Efficient Loader",
        "inputs": {"ckpt_name": "eff.safetensors", "positive": "a meadow", "negative": "text"},
    }
    graph["51"] = {
        "class_type": "ToBasicPipe",
        "inputs": {"model": ["50", 0], "clip": ["50", 5], "vae": ["50", 4], "positive": ["50", 1],
                   "negative": ["50", 2]},
    }  # fmt: skip
    graph["11"] = {
        "class_type": "ImpactKSamplerBasicPipe",
        "inputs": {"basic_pipe": ["51", 0], "seed": 31337, "steps": 9, "cfg": 3.0, "sampler_name": "euler",
                   "scheduler": "normal", "denoise": 1.0, "latent_image": ["5", 0]},
    }  # fmt: skip
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.seed, record.model, record.steps, record.prompt, record.negative_prompt) == (
        31337,
        "eff.safetensors",
        9,
        "a meadow",
        "text",
    )


def test_comfy_json_user_comment_and_a_foreign_prompt_chunk(tmp_path: Path) -> None:
    doc = {"prompt": rf.two_pass_noop_seed_graph(), "workflow": {"nodes": [], "links": []}}
    kind, record = _one(rf.jpeg_with_comment(tmp_path / "c.jpg", json.dumps(doc)))
    assert (kind, record.seed, record.steps) == ("comfyui-jpeg", 5550001, 20)
    assert record.params["workflow"] == {"nodes": [], "links": []}
    # A 'prompt' chunk that is not a graph, beside A1111 text: the A1111 text is read.
    chunks = {"parameters": "a\nSteps: 5, Sampler: Euler, Seed: 8", "prompt": '{"text": "a"}'}
    kind, record = _one(rf.png_with_text(tmp_path / "p.png", chunks))
    assert (kind, record.seed) == ("a1111-png", 8)


def test_novelai_stealth_json(tmp_path: Path) -> None:
    comment = {"prompt": "a cat", "steps": 23, "sampler": "k_euler", "seed": 42, "scale": 5.0,
               "width": 64, "height": 64, "noise_schedule": "karras", "uc": "dog"}  # fmt: skip
    hidden = {
        "Software": "NovelAI",
        "Source": "NovelAI Diffusion V3 4BDE2A90",
        "Comment": json.dumps(comment),
    }
    kind, record = _one(rf.stealth_png(tmp_path / "nai.png", json.dumps(hidden)))
    assert kind == "novelai-stealth-png"
    assert _fields(record) == (42, "NovelAI Diffusion V3 4BDE2A90", "k_euler", "karras", 23, 5.0, 64, 64)
    assert (record.prompt, record.params["model_hash"]) == ("a cat", "4BDE2A90")


_PICKER = {"class_type": "SDXLEmptyLatentSizePicker+", "inputs": {"resolution": "832x1216 (0.68)"}}
_PRESETS = {
    "class_type": "Empty Latent Image Presets",
    "inputs": {"dimensions": "768 x 512 (l)", "invert": True},
}


@pytest.mark.parametrize(("node", "size"), [(_PICKER, (832, 1216)), (_PRESETS, (512, 768))])
def test_comfy_size_from_preset_nodes(node: dict[str, Any], size: tuple[int, int]) -> None:
    graph = rf.two_pass_noop_seed_graph()
    graph["5"] = node
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.width, record.height) == size


def test_comfy_size_linked_from_an_aspect_ratio_node() -> None:
    graph = rf.two_pass_noop_seed_graph()
    graph["60"] = {
        "class_type": "CR SDXL Aspect Ratio",
        "inputs": {
            "width": 1024,
            "height": 1024,
            "aspect_ratio": "3:4 portrait 896x1152",
            "swap_dimensions": "Off",
        },
    }
    graph["5"]["inputs"].update(width=["60", 0], height=["60", 1])
    record = parse_file("x.png", _png_bytes(graph)).records[0]
    assert (record.width, record.height) == (896, 1152)


def test_reasons_and_notes_are_one_printable_line(ledger: Ledger, tmp_path: Path) -> None:
    rf.jpeg_with_comment(tmp_path / "k.jpg", json.dumps({"a\nb\x1b[31m": 1}))
    graph = comfy_graph()
    graph["8"]["inputs"]["samples"] = ["9\n9", 0]
    graph["50"] = dict(graph["3"])  # two chains left: the dangling output cannot be read
    rf.png_with_text(tmp_path / "d.png", {"prompt": json.dumps(graph)})
    outcomes = {Path(o.path).name: o for o in import_paths(ledger, [tmp_path]).outcomes}
    assert outcomes["k.jpg"].reason == "EXIF UserComment holds JSON of no known scheme (keys: a\\nb\\x1b[31m)"
    assert "node 9\\n9, which is not in the graph" in (outcomes["d.png"].reason or "")
