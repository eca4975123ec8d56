"""AUTOMATIC1111/Forge infotext parsing, as the WebUI's parse_generation_parameters does it."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.infotext import image_size, parse_infotext, quote, record_from_infotext, split_sampler
from ledger.core.records import SeedOrigin, Source
from ledger.errors import InvalidInputError, InvalidSeedError

FULL = (
    "masterpiece, a red fox\n"
    "in the snow, (detailed:1.2)\n"
    "Negative prompt: blurry, lowres\n"
    "watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3405691582, "
    "Size: 832x1216, Model hash: 45dee52b, Model: sdxl_base, VAE hash: 235745af, "
    'Lora hashes: "fox: a1b2c3, snow: d4e5f6", Template: "Steps: 20, \\"quoted\\"\\nnext", '
    "Hires resize: 1024x1536, Clip skip: 2, RNG: CPU, ENSD: 31337, Version: v1.10.1"
)


def test_full_infotext_every_field() -> None:
    info = parse_infotext(FULL)
    assert info.prompt == "masterpiece, a red fox\nin the snow, (detailed:1.2)"
    assert info.negative_prompt == "blurry, lowres\nwatermark"
    p = info.parameters
    assert p["Steps"] == "28"
    assert p["Sampler"] == "DPM++ 2M"
    assert p["Schedule type"] == "Karras"
    assert p["CFG scale"] == "6.5"
    assert p["Seed"] == "3405691582"
    assert (p["Size-1"], p["Size-2"]) == ("832", "1216")
    assert "Size" not in p
    assert (p["Hires resize-1"], p["Hires resize-2"]) == ("1024", "1536")
    assert p["Model hash"] == "45dee52b"
    assert p["Model"] == "sdxl_base"
    assert p["VAE hash"] == "235745af"
    # Quoted values are JSON-unquoted, with commas, colons, quotes and newlines inside.
    assert p["Lora hashes"] == "fox: a1b2c3, snow: d4e5f6"
    assert p["Template"] == 'Steps: 20, "quoted"\nnext'
    assert p["Clip skip"] == "2"
    assert p["RNG"] == "CPU"
    assert p["ENSD"] == "31337"
    assert p["Version"] == "v1.10.1"
    assert info.sampler == "DPM++ 2M"
    assert info.schedule_type == "Karras"
    assert "Schedule type" not in info.defaulted
    assert info.flags == {}


def test_defaults_filled_when_missing() -> None:
    info = parse_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512")
    assert info.parameters["Clip skip"] == "1"
    assert info.parameters["RNG"] == "GPU"
    assert info.parameters["Schedule type"] == "Automatic"
    assert info.parameters["VAE Encoder"] == "Full"
    assert {"Clip skip", "RNG", "Schedule type"} <= set(info.defaulted)
    assert info.schedule_type == "Automatic"


def test_last_line_with_fewer_than_three_params_is_prompt() -> None:
    info = parse_infotext("a photo\nstyle: noir, mood: dark")
    assert info.prompt == "a photo\nstyle: noir, mood: dark"
    assert "style" not in info.parameters
    only_params = parse_infotext("Steps: 20, Seed: 5, CFG scale: 7")
    assert only_params.prompt == ""
    assert only_params.parameters["Seed"] == "5"


def test_negative_prompt_only_and_prompt_only() -> None:
    info = parse_infotext("Negative prompt: ugly\nSteps: 20, Seed: 5, CFG scale: 7")
    assert info.prompt == ""
    assert info.negative_prompt == "ugly"
    assert parse_infotext("just words").negative_prompt == ""


@pytest.mark.parametrize(
    ("name", "schedule", "expected"),
    [
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Karras", "Automatic", ("DPM++ 2M SDE", "Karras")),
        ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "Exponential")),
        ("DPM++ 2M SGM Uniform", None, ("DPM++ 2M", "SGM Uniform")),
        ("Euler a", None, ("Euler a", "Automatic")),
        ("DDIM", None, ("DDIM", "Automatic")),
        ("DPM++ 2M", "Karras", ("DPM++ 2M", "Karras")),
        ("Euler", "sgm_uniform", ("Euler", "SGM Uniform")),
        ("DPM++ 2M SDE Heun", None, ("DPM++ 2M SDE Heun", "Automatic")),
    ],
)
def test_legacy_sampler_names_split(name: str, schedule: str | None, expected: tuple[str, str]) -> None:
    assert split_sampler(name, schedule) == expected


def test_legacy_sampler_in_infotext_sets_scheduler() -> None:
    record = record_from_infotext(
        "x\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 9, Size: 64x32"
    )
    assert record.scheduler == "DPM++ 2M Karras"
    assert record.scheduler_requested == "DPM++ 2M Karras"
    assert record.params["sampler"] == "DPM++ 2M"
    assert record.params["schedule_type"] == "Karras"
    automatic = record_from_infotext("x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 9")
    assert automatic.scheduler == "Euler a"


def test_record_fields() -> None:
    record = record_from_infotext(FULL, output_format="PNG", idempotency_key="import:x:0")
    assert record.backend == "a1111"
    assert record.source is Source.IMPORT
    assert record.seed == 3405691582
    assert record.seed_origin is SeedOrigin.RESPONSE
    assert record.model == "sdxl_base"
    assert (record.width, record.height, record.steps, record.cfg_scale) == (832, 1216, 28, 6.5)
    assert record.scheduler == "DPM++ 2M Karras"
    assert record.prompt == "masterpiece, a red fox\nin the snow, (detailed:1.2)"
    assert record.negative_prompt == "blurry, lowres\nwatermark"
    assert record.params["infotext"] == FULL
    assert record.params["parameters"]["Lora hashes"] == "fox: a1b2c3, snow: d4e5f6"
    assert record.idempotency_key == "import:x:0"


def test_record_model_hash_only_and_no_seed() -> None:
    record = record_from_infotext("x\nSteps: 20, Model hash: abcdef12, CFG scale: 7")
    assert record.model == "hash:abcdef12"
    assert record.seed is None
    assert record.seed_origin is SeedOrigin.UNKNOWN
    assert record_from_infotext("just a prompt").model == "unknown"


def test_big_and_bad_seeds() -> None:
    big = record_from_infotext(f"x\nSteps: 20, Seed: {2**64 - 1}, CFG scale: 7")
    assert big.seed == 2**64 - 1
    with pytest.raises(InvalidSeedError, match="Seed"):
        record_from_infotext("x\nSteps: 20, Seed: -1, CFG scale: 7")
    with pytest.raises(InvalidSeedError):
        record_from_infotext(f"x\nSteps: 20, Seed: {2**64}, CFG scale: 7")
    with pytest.raises(InvalidInputError, match="Steps"):
        record_from_infotext("x\nSteps: many, Seed: 1, CFG scale: 7")
    with pytest.raises(InvalidInputError, match="CFG scale"):
        record_from_infotext("x\nSteps: 2, Seed: 1, CFG scale: nan")


def test_version_backcompat_flags() -> None:
    old = parse_infotext("[a:b:0.5]\nSteps: 20, Sampler: DDIM, Seed: 1, Version: v1.5.1")
    assert old.flags == {
        "Old prompt editing timelines": True,
        "Pad conds v0": True,
        "Downcast alphas_cumprod": True,
    }
    forge = parse_infotext(
        "x\nSteps: 20, Sampler: Euler, Seed: 1, Version: f2.0.1v1.10.1-previous-665-gae278f79"
    )
    assert forge.flags == {}


@pytest.mark.parametrize("text", ["", "   \n  ", "a\x00b"])
def test_empty_or_nul_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_infotext(text)


# -- properties -----------------------------------------------------------------------


# Arbitrary text, and text built from the pieces infotext is made of (so the
# parameter-line paths are reached, not just the prompt path).
_PIECES = st.sampled_from(
    [
        "Steps: ",
        "Seed: ",
        "Sampler: ",
        "CFG scale: ",
        "Size: ",
        ", ",
        "\n",
        '"',
        "\\",
        "Negative prompt:",
        "512x768",
        "-1",
        "18446744073709551616",
        "DPM++ 2M Karras",
        "nan",
        "1e400",
        ":",
        " ",
    ]
)
_INFOTEXTISH = st.one_of(
    st.text(), st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=40).map("".join)
)


@settings(max_examples=400, deadline=None)
@given(_INFOTEXTISH)
def test_parser_never_raises_other_errors(text: str) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_infotext(text)


@settings(max_examples=300, deadline=None)
@given(_INFOTEXTISH)
def test_record_mapping_only_raises_ledger_usage_errors(text: str) -> None:
    with contextlib.suppress(InvalidInputError, InvalidSeedError):
        record_from_infotext(text)


_KEY = st.from_regex(r"[A-Za-z][A-Za-z0-9 \-/]{0,12}[A-Za-z0-9]", fullmatch=True).filter(
    lambda k: "  " not in k
)
_VALUE = (
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\x00"), max_size=30)
    .map(str.strip)
    # Unquoted values that look quoted, or like WxH sizes, are read differently by the
    # WebUI itself (unquoted / split into Key-1, Key-2).
    .filter(lambda v: not v.startswith('"') and not re.fullmatch(r"\d+x\d+", v))
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEY, _VALUE, min_size=3, max_size=8))
def test_quoted_values_round_trip(values: dict[str, str]) -> None:
    """What the WebUI writes (quote() on values with , : or newline) reads back the same."""
    line = ", ".join(f"{k}: {quote(v)}" for k, v in values.items())
    info = parse_infotext("a prompt\n" + line)
    for key, value in values.items():
        assert info.parameters[key] == value


def test_image_size_and_one_infotext_parser() -> None:
    assert image_size("640x512") == (640, 512)
    assert image_size("640 x 512") is None and image_size("640x") is None
    # One parser for the whole tree: the backends read stated keys through Infotext.stated().
    root = Path(__file__).resolve().parent.parent / "ledger"
    defining = [p.name for p in root.rglob("*.py") if "def parse_infotext(" in p.read_text("utf-8")]
    assert defining == ["infotext.py"]
