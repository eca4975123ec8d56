"""ComfyUI API graphs: samplers, seeds, checkpoint and prompts followed through links."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import comfy
from ledger.core.records import SeedOrigin
from ledger.errors import InvalidInputError, InvalidSeedError
from tests.workflow_fixtures import comfy_graph


def test_two_ksamplers_primary_is_the_one_feeding_the_image() -> None:
    (output,) = comfy.outputs_of(comfy_graph())
    assert output.node_id == "9"
    assert output.filename_prefix == "castle"
    assert output.sampler is not None
    primary = output.sampler
    assert primary.node_id == "12"
    assert primary.class_type == "KSamplerAdvanced"
    assert primary.seed == 2**64 - 1
    assert (primary.steps, primary.cfg, primary.sampler_name, primary.scheduler) == (
        14,
        5.5,
        "dpmpp_2m",
        "karras",
    )
    assert primary.extra["start_at_step"] == 4
    assert [s.node_id for s in output.samplers] == ["12", "3"]
    base = output.samplers[1]
    assert (base.seed, base.steps, base.cfg, base.sampler_name, base.scheduler, base.denoise) == (
        156680208700286,
        20,
        8.0,
        "euler",
        "normal",
        1.0,
    )
    assert output.checkpoint == "dreamshaper_8.safetensors"
    assert output.loras[0]["lora_name"] == "film_grain.safetensors"
    assert output.loras[0]["strength_model"] == 0.8
    assert output.prompt == 'a castle on a cliff, "storm", 35mm'
    assert output.negative_prompt == "blurry, jpeg artifacts"
    # The refine pass denoises the 1.5x upscaled latent of the 512x768 base.
    assert (output.width, output.height, output.batch_size) == (768, 1152, 1)


def test_record_for_output_keeps_every_sampler_seed() -> None:
    graph = comfy_graph()
    outputs = comfy.outputs_of(graph)
    record = comfy.record_for_output(outputs[0], graph, workflow={"nodes": []}, all_outputs=outputs)
    assert record.backend == "comfyui"
    assert record.seed == 2**64 - 1
    assert record.seed_origin is SeedOrigin.REQUEST
    assert record.model == "dreamshaper_8.safetensors"
    assert record.scheduler == "dpmpp_2m karras"
    assert record.scheduler_requested == "dpmpp_2m"
    assert (record.steps, record.cfg_scale, record.width, record.height) == (14, 5.5, 768, 1152)
    assert record.params["seeds"] == {"12": 2**64 - 1, "3": 156680208700286}
    assert record.params["sampler_node"] == "12"
    assert record.params["graph"] == graph
    assert record.params["workflow"] == {"nodes": []}
    assert [s["seed"] for s in record.params["samplers"]] == [2**64 - 1, 156680208700286]


def test_links_to_primitive_nodes_and_sdxl_text() -> None:
    graph = comfy_graph()
    graph["20"] = {"class_type": "PrimitiveInt", "inputs": {"value": 77}}
    graph["12"]["inputs"]["noise_seed"] = ["20", 0]
    graph["6"] = {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "global", "text_l": "local"}}
    graph["21"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0]}}
    graph["12"]["inputs"]["positive"] = ["21", 0]
    (output,) = comfy.outputs_of(graph)
    assert output.sampler is not None and output.sampler.seed == 77
    assert output.prompt == "global\nlocal"


def test_two_save_nodes_matched_by_filename_prefix() -> None:
    graph = comfy_graph()
    graph["13"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    graph["14"] = {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "preview/base", "images": ["13", 0]},
    }
    outputs = comfy.outputs_of(graph)
    assert [o.node_id for o in outputs] == ["9", "14"]
    base, how = comfy.match_output(outputs, "base_00003_.png")
    assert (base.node_id, how) == ("14", "filename_prefix")
    assert base.sampler is not None and base.sampler.node_id == "3"
    assert [s.node_id for s in base.samplers] == ["3"]
    final, how = comfy.match_output(outputs, "castle_00001_.png")
    assert (final.node_id, how) == ("9", "filename_prefix")
    guessed, how = comfy.match_output(outputs, "renamed.png")
    assert (guessed.node_id, how) == ("14", "last")
    # Every sampler seed of the graph is kept, even those not feeding this image.
    record = comfy.record_for_output(base, graph, all_outputs=outputs)
    assert record.params["seeds"] == {"12": 2**64 - 1, "3": 156680208700286}
    assert record.seed == 156680208700286


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        "[]",
        "{}",
        json.dumps({"nodes": [], "links": []}),
        json.dumps({"1": {"inputs": {}}}),
        json.dumps({"1": {"class_type": "KSampler", "inputs": []}}),
        "NaN",
    ],
)
def test_bad_graphs_are_refused(value: str) -> None:
    with pytest.raises(InvalidInputError):
        comfy.outputs_of(value)


def test_bad_sampler_values() -> None:
    graph = comfy_graph()
    graph["12"]["inputs"]["noise_seed"] = 2**64
    with pytest.raises(InvalidSeedError, match="node 12"):
        comfy.outputs_of(graph)
    graph = comfy_graph()
    graph["12"]["inputs"]["steps"] = "many"
    with pytest.raises(InvalidInputError, match="steps"):
        comfy.outputs_of(graph)


def test_non_finite_and_absurd_numbers() -> None:
    graph = comfy_graph()
    graph["12"]["inputs"]["cfg"] = json.loads("1e400")  # JSON overflows to inf
    with pytest.raises(InvalidInputError, match="finite"):
        comfy.outputs_of(graph)
    graph = comfy_graph()
    graph["11"]["inputs"]["scale_by"] = 1e308
    (output,) = comfy.outputs_of(graph)
    assert (output.width, output.height) == (None, None)


def test_cycles_and_dangling_links_do_not_hang() -> None:
    graph = copy.deepcopy(comfy_graph())
    graph["8"]["inputs"]["samples"] = ["99", 0]  # dangling
    (output,) = comfy.outputs_of(graph)
    # The sampler chain is still in the graph (the only one): it is read, and the break noted.
    assert output.sampler is not None and output.sampler.node_id == "12"
    assert output.notes[0] == "ComfyUI node 8 (VAEDecode).samples links to node 99, which is not in the graph"
    graph["50"] = copy.deepcopy(graph["3"])  # a second terminal chain: which one is not knowable
    graph["50"]["inputs"]["latent_image"] = ["5", 0]
    (output,) = comfy.outputs_of(graph)
    assert output.sampler is None
    cyclic = {
        "1": {"class_type": "Loop", "inputs": {"x": ["2", 0]}},
        "2": {"class_type": "Loop", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    (output,) = comfy.outputs_of(cyclic)
    assert output.sampler is None and output.samplers == ()


def test_no_save_node() -> None:
    graph = {"1": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    assert comfy.outputs_of(graph) == []
    with pytest.raises(InvalidInputError, match="SaveImage"):
        comfy.match_output([], "x.png")


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False),
    st.sampled_from([float("inf"), 1e308, 2**70, 0.0, -1]),
    st.text(max_size=8),
)
_NODE_IDS = st.sampled_from(["1", "2", "3", "4", "9"])
_INPUT_VALUES = st.one_of(_SCALARS, st.tuples(_NODE_IDS, st.integers(0, 2)).map(list))
_CLASS = st.sampled_from(
    ["KSampler", "KSamplerAdvanced", "SaveImage", "VAEDecode", "CheckpointLoaderSimple", "CLIPTextEncode",
     "LoraLoader", "EmptyLatentImage", "LatentUpscaleBy", "PrimitiveInt", "Custom"]
)  # fmt: skip
_INPUT_NAMES = st.sampled_from(
    ["seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "model", "positive",
     "negative", "latent_image", "samples", "images", "ckpt_name", "text", "width", "height", "scale_by",
     "value", "filename_prefix", "lora_name"]
)  # fmt: skip
_GRAPHS = st.dictionaries(
    _NODE_IDS,
    st.fixed_dictionaries({"class_type": _CLASS, "inputs": st.dictionaries(_INPUT_NAMES, _INPUT_VALUES)}),
    min_size=1,
)


@settings(max_examples=300, deadline=None)
@given(_GRAPHS)
def test_arbitrary_graphs_only_raise_input_errors(graph: dict) -> None:
    try:
        outputs = comfy.outputs_of(graph)
    except (InvalidInputError, InvalidSeedError):
        return
    for output in outputs:
        comfy.record_for_output(output, graph, all_outputs=outputs)
