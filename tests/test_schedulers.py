"""Scheduler and model catalogs.

Expected classes are written from the tables in reference/schedulers.md and the
Runware literal list in reference/runware.md, not from the code's output.
"""

from __future__ import annotations

import json

import pytest

from ledger.core import models
from ledger.core.models import AIR, ModelCatalog, is_pinned, parse_air, seed_range, supports_seed
from ledger.core.schedulers import SchedulerKind, classify, split_schedule
from ledger.core.seeds import SEED_RANGES
from ledger.errors import InvalidInputError

D, S, U = "deterministic", "stochastic", "unknown"

# reference/runware.md, "Accepted scheduler names": the literal list, every entry.
RUNWARE_LITERALS = {
    "Default": U,
    "DDIM": D,
    "DDIMScheduler": D,
    "DDPMScheduler": S,
    "DEISMultistepScheduler": D,
    "DPM++": D,
    "DPM++ Beta": D,
    "DPM++ Exponential": D,
    "DPM++ Karras": D,
    "DPM++ Uniform": D,
    "DPM++ Uniform Beta": D,
    "DPM++ Uniform Exponential": D,
    "DPM++ Uniform Karras": D,
    "DPM++ 2M": D,
    "DPM++ 2M Beta": D,
    "DPM++ 2M Exponential": D,
    "DPM++ 2M Karras": D,
    "DPM++ 2M Uniform": D,
    "DPM++ 2M SDE": S,
    "DPM++ 2M SDE Beta": S,
    "DPM++ 2M SDE Exponential": S,
    "DPM++ 2M SDE Karras": S,
    "DPM++ 2M SDE Uniform": S,
    "DPM++ 3M": D,
    "DPM++ 3M Beta": D,
    "DPM++ 3M Exponential": D,
    "DPM++ 3M Karras": D,
    "DPM++ 3M Uniform": D,
    "DPM++ 3M SDE Uniform": S,
    "DPM++ SDE": S,
    "DPM++ SDE Beta": S,
    "DPM++ SDE Exponential": S,
    "DPM++ SDE Karras": S,
    "DPMSolverMultistepInverse": D,
    "DPMSolverMultistepScheduler": D,
    "DPMSolverSinglestepScheduler": D,
    "EDMDPMSolverMultistepScheduler": D,
    "EDMEulerScheduler": D,
    "Euler": D,
    "Euler a": S,
    "Euler Beta": D,
    "Euler Exponential": D,
    "Euler Karras": D,
    "EulerAncestralDiscreteScheduler": S,
    "EulerDiscreteScheduler": D,
    "FlowMatchEulerDiscreteScheduler": D,
    "Heun": D,
    "HeunDiscreteScheduler": D,
    "Heun Karras": D,
    "IPNDMScheduler": D,
    "IPNDM Uniform": D,
    "IPNDM Uniform Beta": D,
    "IPNDM Uniform Exponential": D,
    "IPNDM Uniform Karras": D,
    "KDPM2AncestralDiscreteScheduler": S,
    "KDPM2DiscreteScheduler": D,
    "LCM": S,
    "LCMScheduler": S,
    "LMS": D,
    "LMSDiscreteScheduler": D,
    "LMS Karras": D,
    "PNDMScheduler": D,
    "TCDScheduler": S,
    "UniPC": D,
    "UniPC 2M": D,
    "UniPC 2M Karras": D,
    "UniPC 2M Uniform": D,
    "UniPC 3M": D,
    "UniPC 3M Karras": D,
    "UniPC 3M Uniform": D,
    "UniPC Karras": D,
    "UniPC Uniform": D,
    "UniPC Uniform Beta": D,
    "UniPC Uniform Exponential": D,
    "UniPC Uniform Karras": D,
}

# reference/runware.md: per-model lists and names seen elsewhere in the docs.
RUNWARE_OTHER = {
    "Euler Trailing": D,
    "DDPM": S,
    "PNDM": D,
    "UniPCMultistepScheduler": D,
    "DPMSolverMultistep": D,  # the RW-PY README spelling, not in the literal list
}

# reference/schedulers.md, table column "diffusers class", default configuration.
DIFFUSERS = {
    "EulerAncestralDiscreteScheduler": S,
    "KDPM2AncestralDiscreteScheduler": S,
    "DPMSolverSDEScheduler": S,
    "CosineDPMSolverMultistepScheduler": S,
    "DDPMScheduler": S,
    "LCMScheduler": S,
    "TCDScheduler": S,
    "CMStochasticIterativeScheduler": S,
    "SASolverScheduler": S,
    "EulerDiscreteScheduler": D,
    "HeunDiscreteScheduler": D,
    "KDPM2DiscreteScheduler": D,
    "LMSDiscreteScheduler": D,
    "EDMEulerScheduler": D,
    "FlowMatchHeunDiscreteScheduler": D,
    "FlowMatchEulerDiscreteScheduler": D,
    "DPMSolverMultistepScheduler": D,
    "DPMSolverSinglestepScheduler": D,
    "EDMDPMSolverMultistepScheduler": D,
    "DPMSolverMultistepInverseScheduler": D,
    "DDIMScheduler": D,
    "UniPCMultistepScheduler": D,
    "PNDMScheduler": D,
    "DEISMultistepScheduler": D,
    "IPNDMScheduler": D,
}

# (class, options, expected): the conditions in the table.
DIFFUSERS_CONDITIONS = [
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, S),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver"}, S),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}, D),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver"}, D),
    ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}, S),
    ("EDMDPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, S),
    ("DPMSolverMultistepInverseScheduler", {"algorithm_type": "sde-dpmsolver++"}, S),
    ("DDIMScheduler", {"eta": 0.0}, D),
    ("DDIMScheduler", {"eta": 0.5}, S),
    ("DDIM", {"eta": 1.0}, S),
    ("TCDScheduler", {"eta": 0.0}, D),
    ("TCDScheduler", {"eta": 0.3}, S),
    ("EulerDiscreteScheduler", {"s_churn": 0.5}, S),
    ("HeunDiscreteScheduler", {"s_churn": 1}, S),
    ("KDPM2DiscreteScheduler", {"s_churn": 0.1}, S),
    ("LMSDiscreteScheduler", {"s_churn": 0}, D),
    ("EDMEulerScheduler", {"s_churn": 2.0}, S),
    ("FlowMatchHeunDiscreteScheduler", {"s_churn": 0.2}, S),
    ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}, S),
    ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": False}, D),
]

# reference/schedulers.md, column "A1111/Forge" (with the "(+Karras)" variants spelled
# out), plus the A1111 v1.9+ and Forge lists of reference/a1111-comfyui.md.
A1111 = {
    "Euler a": S,
    "DPM2 a": S,
    "DPM2 a Karras": S,
    "DPM++ 2S a": S,
    "DPM++ 2S a Karras": S,
    "DPM++ SDE": S,
    "DPM++ SDE Karras": S,
    "DPM++ 2M SDE": S,
    "DPM++ 2M SDE Karras": S,
    "DPM++ 2M SDE Heun": S,
    "DPM++ 2M SDE Heun Karras": S,
    "DPM++ 3M SDE": S,
    "DPM++ 3M SDE Karras": S,
    "DDPM": S,
    "LCM": S,
    "Restart": S,
    "DPM fast": S,
    "DPM adaptive": S,
    "Euler": D,
    "Heun": D,
    "DPM2": D,
    "LMS": D,
    "Euler Karras": D,
    "Heun Karras": D,
    "DPM2 Karras": D,
    "LMS Karras": D,
    "DPM++ 2M": D,
    "DPM++ 2M Karras": D,
    "DDIM": D,
    "DDIM CFG++": D,
    "UniPC": D,
    "PLMS": D,
    "DEIS": D,
    "IPNDM": D,
    "IPNDM_V": D,
    "HeunPP2": D,
}

# reference/schedulers.md, column "ComfyUI".
COMFYUI = {
    "euler_ancestral": S,
    "euler_ancestral_cfg_pp": S,
    "dpm_2_ancestral": S,
    "dpmpp_2s_ancestral": S,
    "dpmpp_2s_ancestral_cfg_pp": S,
    "dpmpp_sde": S,
    "dpmpp_sde_gpu": S,
    "dpmpp_2m_sde": S,
    "dpmpp_2m_sde_gpu": S,
    "dpmpp_2m_sde_heun": S,
    "dpmpp_2m_sde_heun_gpu": S,
    "dpmpp_3m_sde": S,
    "dpmpp_3m_sde_gpu": S,
    "ddpm": S,
    "lcm": S,
    "er_sde": S,
    "seeds_2": S,
    "seeds_3": S,
    "sa_solver": S,
    "sa_solver_pece": S,
    "res_multistep_ancestral": S,
    "res_multistep_ancestral_cfg_pp": S,
    "exp_heun_2_x0_sde": S,
    "dpm_fast": D,
    "dpm_adaptive": D,
    "euler": D,
    "euler_cfg_pp": D,
    "heun": D,
    "heunpp2": D,
    "dpm_2": D,
    "lms": D,
    "exp_heun_2_x0": D,
    "dpmpp_2m": D,
    "dpmpp_2m_cfg_pp": D,
    "ddim": D,
    "ddim_uniform": D,
    "uni_pc": D,
    "uni_pc_bh2": D,
    "deis": D,
    "ipndm": D,
    "ipndm_v": D,
    "res_multistep": D,
    "res_multistep_cfg_pp": D,
    "gradient_estimation": D,
    "gradient_estimation_cfg_pp": D,
}

# Family per row of the table, for a representative of each spelling.
FAMILIES = {
    "Euler a": "euler-ancestral",
    "euler_ancestral_cfg_pp": "euler-ancestral",
    "EulerAncestralDiscreteScheduler": "euler-ancestral",
    "DPM2 a Karras": "dpm2-ancestral",
    "dpm_2_ancestral": "dpm2-ancestral",
    "KDPM2AncestralDiscreteScheduler": "dpm2-ancestral",
    "DPM++ 2S a": "dpmpp-2s-ancestral",
    "dpmpp_2s_ancestral_cfg_pp": "dpmpp-2s-ancestral",
    "DPM++ SDE Karras": "dpmpp-sde",
    "dpmpp_sde_gpu": "dpmpp-sde",
    "DPMSolverSDEScheduler": "dpmpp-sde",
    "DPM++ 2M SDE Heun": "dpmpp-2m-3m-sde",
    "DPM++ 3M SDE Uniform": "dpmpp-2m-3m-sde",
    "dpmpp_3m_sde_gpu": "dpmpp-2m-3m-sde",
    "DDPM": "ddpm",
    "DDPMScheduler": "ddpm",
    "LCM": "lcm-tcd",
    "TCDScheduler": "lcm-tcd",
    "Restart": "other-sde",
    "seeds_3": "other-sde",
    "SASolverScheduler": "other-sde",
    "DPM fast": "dpm-fast-adaptive",
    "dpm_adaptive": "dpm-fast-adaptive",
    "Euler Karras": "euler-heun-dpm2-lms",
    "LMSDiscreteScheduler": "euler-heun-dpm2-lms",
    "FlowMatchEulerDiscreteScheduler": "flow-match",
    "DPM++ 2M Karras": "dpmpp-ode",
    "dpmpp_2m_cfg_pp": "dpmpp-ode",
    "DPMSolverMultistepScheduler": "dpmpp-ode",
    "DDIM CFG++": "ddim",
    "ddim_uniform": "ddim",
    "UniPC 3M Karras": "multistep-ode",
    "uni_pc_bh2": "multistep-ode",
    "IPNDM_V": "multistep-ode",
}


def _cases(table: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(table.items())


def _check(name: str, expected: str, **kw: object) -> None:
    result = classify(name, **kw)  # type: ignore[arg-type]
    assert result.kind == SchedulerKind(expected), (name, result)
    assert result.reason.strip()


@pytest.mark.parametrize(("name", "expected"), _cases(RUNWARE_LITERALS))
def test_runware_literal_list(name: str, expected: str) -> None:
    _check(name, expected, backend="runware")


@pytest.mark.parametrize(("name", "expected"), _cases(RUNWARE_OTHER))
def test_runware_other_names(name: str, expected: str) -> None:
    _check(name, expected, backend="runware")


@pytest.mark.parametrize(("name", "expected"), _cases(DIFFUSERS))
def test_diffusers_classes_default_config(name: str, expected: str) -> None:
    _check(name, expected)


@pytest.mark.parametrize(("name", "options", "expected"), DIFFUSERS_CONDITIONS)
def test_diffusers_conditions(name: str, options: dict[str, object], expected: str) -> None:
    _check(name, expected, options=options)


@pytest.mark.parametrize(("name", "expected"), _cases(A1111))
def test_a1111_forge_names(name: str, expected: str) -> None:
    _check(name, expected, backend="a1111")


@pytest.mark.parametrize(("name", "expected"), _cases(COMFYUI))
def test_comfyui_names(name: str, expected: str) -> None:
    _check(name, expected, backend="comfyui")


@pytest.mark.parametrize(("name", "expected"), _cases(A1111) + _cases(COMFYUI))
def test_names_classify_without_a_backend(name: str, expected: str) -> None:
    # DPM fast/adaptive are guessed from the spelling: A1111 "DPM fast", ComfyUI "dpm_fast".
    _check(name, expected)


@pytest.mark.parametrize(("name", "family"), sorted(FAMILIES.items()))
def test_families(name: str, family: str) -> None:
    assert classify(name).family == family


@pytest.mark.parametrize(
    ("name", "backend", "expected"),
    [
        ("DPM fast", "a1111", S),
        ("DPM adaptive", "forge", S),
        ("dpm_fast", "a1111", S),
        ("DPM fast", "comfyui", D),
        ("dpm_adaptive", "comfyui", D),
        ("DPM fast", "runware", U),
    ],
)
def test_dpm_fast_adaptive_depend_on_the_backend(name: str, backend: str, expected: str) -> None:
    _check(name, expected, backend=backend)


def test_dpm_fast_on_a1111_with_eta_zero_is_deterministic() -> None:
    assert classify("DPM fast", backend="a1111", options={"eta": 0}).kind is SchedulerKind.DETERMINISTIC


@pytest.mark.parametrize("name", [None, "", "  ", "Default", "default", "DEFAULT"])
def test_default_or_omitted_is_unknown(name: str | None) -> None:
    result = classify(name)
    assert result.kind is SchedulerKind.UNKNOWN
    assert "default" in result.reason


def test_default_resolves_through_the_model_default_scheduler() -> None:
    result = classify("Default", options={"model": "runware:101@1"})
    assert result.kind is SchedulerKind.DETERMINISTIC
    assert result.resolved == "FlowMatchEulerDiscreteScheduler"
    assert "runware:101@1" in result.reason
    assert classify(None, options={"model": "civitai:1@1"}).kind is SchedulerKind.UNKNOWN


def test_default_on_the_reference_backend_is_its_fallback() -> None:
    result = classify("Default", backend="reference", options={"model": "civitai:1@1"})
    assert result.kind is SchedulerKind.DETERMINISTIC
    assert result.resolved == "DPM++ 2M Karras"
    assert (
        classify("Default", backend="runware", options={"model": "civitai:1@1"}).kind is SchedulerKind.UNKNOWN
    )
    # A model's own default still wins on the reference backend.
    assert classify(None, backend="reference", options={"default_scheduler": "Euler a"}).is_stochastic


def test_default_resolves_through_an_explicit_default() -> None:
    assert classify("Default", options={"default_scheduler": "Euler a"}).kind is SchedulerKind.STOCHASTIC
    assert classify(None, options={"default_scheduler": "DPM++ 2M Karras"}).is_deterministic


@pytest.mark.parametrize(
    "name", ["Karras", "sgm_uniform", "Align Your Steps", "simple", "MyFancySampler", "DPM++ 2S"]
)
def test_schedules_and_unlisted_names_are_unknown(name: str) -> None:
    result = classify(name)
    assert result.kind is SchedulerKind.UNKNOWN
    assert result.family is None


def test_split_schedule() -> None:
    assert split_schedule("DPM++ 2M Karras") == ("dpm++ 2m", "karras")
    assert split_schedule("UniPC Uniform Exponential") == ("unipc", "uniform exponential")
    assert split_schedule("DDIM") == ("ddim", None)
    assert split_schedule("dpmpp_2m_sde_gpu") == ("dpm++ 2m sde gpu", None)


def test_result_is_frozen() -> None:
    result = classify("Euler a")
    with pytest.raises(AttributeError):
        result.kind = SchedulerKind.DETERMINISTIC  # type: ignore[misc]
    assert result.is_stochastic and not result.is_deterministic


# --- model catalog ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "air"),
    [
        ("runware:101@1", AIR("runware", "101", "1")),
        ("civitai:101055@128078", AIR("civitai", "101055", "128078")),
        ("runware:kandinsky-5.0-image-lite@1", AIR("runware", "kandinsky-5.0-image-lite", "1")),
        ("bytedance:seedance@2.0", AIR("bytedance", "seedance", "2.0")),
        ("ideogram:layerize-text@0", AIR("ideogram", "layerize-text", "0")),
        ("Runware:101", AIR("runware", "101", None)),
    ],
)
def test_parse_air(text: str, air: AIR) -> None:
    assert parse_air(text) == air


def test_air_pinning_and_str() -> None:
    assert parse_air("runware:101@1").is_pinned
    assert not parse_air("runware:101").is_pinned
    assert str(parse_air("civitai:4384@128713")) == "civitai:4384@128713"
    assert is_pinned("runware:101@1") and not is_pinned("runware:101") and not is_pinned("nonsense")


@pytest.mark.parametrize(
    "text", ["", "runware", "runware:", ":101@1", "runware:101@", "a:b@c@d", "runware:1 01@1"]
)
def test_parse_air_refuses_malformed(text: str) -> None:
    with pytest.raises(InvalidInputError, match="AIR"):
        parse_air(text)


@pytest.mark.parametrize(
    ("model", "seed"),
    [
        ("recraft:1@1", False),
        ("klingai:5@3", False),
        ("luma:1@1", False),
        ("openai:1@1", False),
        ("sourceful:1@1", False),
        ("xai:1@1", False),
        ("lightricks:2@0", False),
        ("minimax:1@1", False),
        ("ideogram:3@1", False),
        ("ideogram:4@1", True),
        ("ideogram:layerize-text@0", True),
        ("bytedance:seedance@2.0", False),
        ("bytedance:seedance@2.0-fast", False),
        ("google:4@1", None),
        ("runware:101@1", True),
        ("civitai:101055@128078", True),
        ("rundiffusion:1@1", True),
        ("bfl:2@1", True),
        ("alibaba:wan@2.2", True),
        ("vidu:1@1", True),
        ("pixverse:1@1", True),
        ("somebody:1@1", None),
    ],
)
def test_builtin_seed_support(model: str, seed: bool | None) -> None:
    assert supports_seed(model) is seed


def test_user_overrides_from_a_mapping() -> None:
    catalog = ModelCatalog().with_overrides(
        {
            "models": {
                "myco:*": {"seed": False},
                "runware:101@1": {"seed": False, "note": "we know better"},
                "civitai:4384@128713": {"default_scheduler": "Euler a"},
            }
        }
    )
    assert catalog.supports_seed("myco:7@1") is False
    assert catalog.is_known("myco:7@1")
    assert catalog.supports_seed("runware:101@1") is False  # user beats built-in at equal specificity
    assert catalog.supports_seed("runware:100@1") is True
    assert catalog.default_scheduler("civitai:4384@128713") == "Euler a"
    assert classify(
        "Default", options={"default_scheduler": catalog.default_scheduler("civitai:4384@128713")}
    ).is_stochastic
    # The default catalog is untouched.
    assert supports_seed("runware:101@1") is True


def test_exact_entry_beats_pattern() -> None:
    catalog = ModelCatalog().with_overrides({"models": {"ideogram:*": {"seed": True}}})
    assert catalog.supports_seed("ideogram:3@1") is True
    catalog = ModelCatalog().with_overrides({"models": {"recraft:v3@1": {"seed": True}}})
    assert catalog.supports_seed("recraft:v3@1") is True
    assert catalog.supports_seed("recraft:v2@1") is False


def test_user_overrides_from_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text('[models."acme:*"]\nseed = true\ndefault_scheduler = "DDIM"\n', encoding="utf-8")
    catalog = ModelCatalog().with_overrides(toml)
    assert catalog.supports_seed("acme:1@2") is True
    assert catalog.default_scheduler("acme:1@2") == "DDIM"
    js = tmp_path / "models.json"
    js.write_text(json.dumps({"models": {"acme:*": {"seed": False}}}), encoding="utf-8")
    assert ModelCatalog().with_overrides(str(js)).supports_seed("acme:1@2") is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"models": {"acme:*": {"seed": "yes"}}}, "seed"),
        ({"models": {"acme:*": {"colour": "red"}}}, "unknown field"),
        ({"models": {"acme": {"seed": True}}}, "AIR"),
        ({"models": ["acme:*"]}, "models"),
        ({"models": {"acme:*": {"default_scheduler": 3}}}, "default_scheduler"),
    ],
)
def test_bad_overrides_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ModelCatalog().with_overrides(config)


def test_bad_override_files_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[models\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid"):
        ModelCatalog().with_overrides(bad)
    with pytest.raises(InvalidInputError, match="cannot read"):
        ModelCatalog().with_overrides(tmp_path / "missing.toml")


def test_seed_ranges_are_reexported() -> None:
    assert models.SEED_RANGES is SEED_RANGES
    assert seed_range("runware").low == 1 and seed_range("runware").high == 2**63 - 1
    assert seed_range("comfyui").high == 2**64 - 1
    assert seed_range("a1111").high == 2**32 - 1
    assert 2**63 not in seed_range("reference")
    with pytest.raises(InvalidInputError, match="unknown backend"):
        seed_range("nosuch")


def test_is_known() -> None:
    catalog = models.default_catalog()
    assert catalog.is_known("runware:101@1")
    assert catalog.is_known("recraft:1@1")
    assert not catalog.is_known("nosuch:1@1")
    assert not catalog.is_known("not an air")
