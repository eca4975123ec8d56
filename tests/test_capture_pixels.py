"""Pipeline images spooled as decoded pixels (ledger/capture/pixels.py, entry version 3):
the PNG the writer encodes from them is byte for byte the one the hook encoded before,
so a record's ``file_sha256`` does not depend on where the encoding ran.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ledger.capture.entries import (
    CALL_VERSION,
    Output,
    as_dict,
    decode_entries,
    decode_entry,
    encode_call,
    encode_entry,
)
from ledger.capture.pipeline_calls import output_key
from ledger.capture.pixels import encode_image, png, take


def old_png(image: Any) -> bytes:
    """What the hook encoded on its worker before the pixels went to the spool."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)),
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (5, 7, 4), dtype=np.uint8)),
        Image.fromarray(np.random.default_rng(3).integers(0, 256, (5, 7), dtype=np.uint8)),
        np.random.default_rng(4).random((5, 7, 3), dtype=np.float32),
        np.random.default_rng(5).random((5, 7, 1)).astype(np.float16),
        np.random.default_rng(6).integers(0, 256, (5, 7, 3), dtype=np.uint8),
    ],
    ids=["RGB", "RGBA", "L", "float32", "float16-1ch", "uint8-array"],
)
def test_pixels_through_an_entry_give_the_png_the_hook_always_wrote(image: Any) -> None:
    output = take(image)
    assert output is not None and output.pixels is not None and output.data is None
    (decoded,) = decode_entry(_entry(output)).outputs.values()
    assert decoded.pixels == output.pixels
    assert png(decoded.pixels) == old_png(image)


def test_images_raw_bytes_cannot_rebuild_are_encoded_at_once() -> None:
    palette = Image.new("P", (4, 4))
    tagged = Image.new("RGB", (4, 4))
    tagged.info["icc_profile"] = b"not really a profile"
    for image in (palette, tagged):
        output = take(image)
        assert output is not None and output.pixels is None and output.data == encode_image(image)
    latents = np.zeros((4, 8, 8), dtype=np.float32)  # channels first: not an image
    assert take(latents) is None


def test_the_copy_is_taken_on_the_callers_path() -> None:
    image = Image.new("RGB", (4, 4), (10, 20, 30))
    output = take(image)
    image.paste((0, 0, 0), (0, 0, 4, 4))
    assert output is not None and output.pixels is not None
    assert Image.open(io.BytesIO(png(output.pixels))).getpixel((0, 0)) == (10, 20, 30)


def facts(call_id: str = "c1", images: list[list[Any]] | None = None) -> dict[str, Any]:
    """A pipeline call's facts as record_pipeline writes them."""
    return {
        "id": call_id,
        "at": 1796292000.5,  # 2026-12-03 10:00:00.5 UTC
        "model": "tiny",
        "pipeline": "StableDiffusionPipeline",
        "arguments": {"prompt": "p", "num_inference_steps": 2, "guidance_scale": 6, "height": 2, "width": 2},
        "unrecorded": ["latents"],
        "seeds": [[7, False], [8, False], [9, False]],
        "generator": {"kind": "list", "device": "cpu"},
        "scheduler": {"class": "EulerAncestralDiscreteScheduler", "config": {"steps_offset": 1}},
        "environment": {"torch": "2.13.0"},
        "adapters": {},
        "model_info": {"name_or_path": "/m", "revision": None, "weights": {}},
        "model_hash": None,
        "tags": ["t"],
        "experiment_id": None,
        "images": images if images is not None else [[0, 3, 2, True]],
    }


def _entry(output: Output) -> bytes:
    return encode_call(facts(), {output_key("c1", 0): output})


def test_a_call_entry_is_version_3_and_old_entries_stay_version_2() -> None:
    from tests.factories import new_record

    old = encode_entry([new_record(idempotency_key="k")], {"k": Output(data=b"png")})
    assert json.loads(old)["v"] == 2 and len(decode_entry(old).records) == 1
    body = json.loads(_entry(take(Image.new("L", (2, 2))) or Output()))
    assert body["v"] == CALL_VERSION and "records" not in body and "outputs" not in body
    assert set(body["pixels"]["diffusers:c1:0"]) == {"mode", "size", "dtype", "b64"}
    body["pixels"]["diffusers:c1:0"]["size"] = [0, 2]
    with pytest.raises(ValueError, match="malformed pixels"):
        decode_entry(json.dumps(body).encode())


def test_a_call_entry_reads_as_its_records() -> None:
    call_id = 'c"1\\\u00e9'  # an id JSON must escape: the splice keeps the entry valid JSON
    keys = [output_key(call_id, i) for i in range(3)]
    red = take(Image.new("RGB", (3, 2), (255, 0, 0)))
    gray = take(np.full((2, 2, 1), 0.5, dtype=np.float32))
    assert red is not None and gray is not None
    outputs = {keys[0]: red, keys[1]: Output(data=b"bytes"), keys[2]: gray}
    images = [[0, 3, 2, True], [1, 3, 2, True], [2, None, None, True]]
    decoded = decode_entry(encode_call(facts(call_id, images), outputs))
    assert decoded.outputs == outputs
    assert decoded.environments == {key: {"torch": "2.13.0"} for key in keys}
    rows = [as_dict(row) for row in decoded.records]
    assert [r["idempotency_key"] for r in rows] == keys and [r["seed"] for r in rows] == [7, 8, 9]
    assert [(r["width"], r["height"]) for r in rows] == [(3, 2), (3, 2), (2, 2)]  # the size asked for
    assert rows[0]["scheduler"] == "Euler a" and rows[0]["created_at"] == "2026-12-03 10:00:00.500000+00:00"
    params = json.loads(rows[0]["params"])
    assert params["generator"] == {"kind": "list", "device": "cpu", "state": "fresh"}
    assert params["scheduler_class"] == "EulerAncestralDiscreteScheduler"
    assert params["unrecorded_arguments"] == ["latents"] and "model_hash" not in params
    assert rows[0]["task_uuid"] == call_id and [r["output_index"] for r in rows] == [0, 1, 2]


def test_an_advanced_generator_claims_no_seed_and_a_broken_call_is_refused() -> None:
    call = facts()
    call["seeds"] = [[None, True]]  # generator_seed of an advanced generator
    call["generator"] = {"kind": "single", "device": "cpu"}
    (row,) = decode_entry(encode_call(call, {})).records
    assert (
        as_dict(row)["seed"] is None
        and json.loads(as_dict(row)["params"])["generator"]["state"] == "advanced"
    )
    del call["scheduler"]
    (result,) = decode_entries([encode_call(call, {})])
    assert isinstance(result, ValueError) and "malformed pipeline call" in str(result)


@pytest.mark.parametrize("kind", ["pil", "numpy"])
def test_an_image_without_pixels_keeps_its_record_without_an_output(kind: str) -> None:
    """A zero-sized output has nothing to fingerprint; spooled as pixels it would make
    the whole entry unreadable (and every record of the call lost)."""
    empty = Image.new("RGB", (0, 4)) if kind == "pil" else np.zeros((0, 4, 3), np.float32)
    assert take(empty) is None
