"""AUTOMATIC1111 / Forge infotext: the ``parameters`` text of a PNG or EXIF comment.

Parsed the way A1111's ``infotext_utils.parse_generation_parameters`` does it
(reference/a1111-comfyui.md), so a record reads what the WebUI itself would read:

1. Split on ``\\n``. The last line is the parameters line only if ``_RE_PARAM`` finds at
   least 3 ``Key: value`` pairs in it; otherwise it belongs to the prompt.
2. Lines before ``Negative prompt:`` are the prompt; that line and the rest the
   negative prompt.
3. Quoted values are JSON-unquoted; ``WxH`` values become ``Key-1`` and ``Key-2``.
4. Missing keys get the WebUI's defaults (``Clip skip`` 1, ``RNG`` GPU, ``Schedule
   type`` Automatic, …); :attr:`Infotext.defaulted` names the ones filled in.
5. ``Version`` sets the back-compat flags (``Old prompt editing timelines``, …).

Legacy combined sampler names (``DPM++ 2M Karras``) are split into sampler and
schedule type as ``sd_samplers.get_sampler_and_scheduler`` does. Everything here is
pure; the only error raised is :class:`InvalidInputError` (or its subclass
:class:`InvalidSeedError` when mapping a record with a bad seed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ledger.core.records import Modality, NewRecord, SeedOrigin, Source, utcnow
from ledger.core.redaction import redact
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, InvalidSeedError

# The WebUI's own pattern: a key starting with a word character, then a quoted value
# (JSON string escapes allowed) or anything up to the next comma. Extensions also write
# JSON arrays/objects unquoted (``Civitai resources: [{…}]``, ``Hashes: {…}``):
# :func:`param_pairs` reads those whole instead of cutting them at their first comma.
_RE_PARAM: Final = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_KEY: Final = re.compile(r"\s*(\w[\w \-/]+):\s*(?=[\[{])")
_JSON_DECODER: Final = json.JSONDecoder()
_RE_IMAGESIZE: Final = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE: Final = "Negative prompt:"

#: Values the WebUI assumes when a key is missing (``parse_generation_parameters``).
DEFAULTS: Final[dict[str, str]] = {
    "Clip skip": "1",
    "Hires resize-1": "0",
    "Hires resize-2": "0",
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": "0",
    "Schedule min sigma": "0",
    "Schedule rho": "0",
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
}

#: Scheduler labels and names (``modules/sd_schedulers.py``), as suffixes of legacy
#: sampler names. Matched longest first so "SGM Uniform" is not read as "Uniform".
SCHEDULE_TYPES: Final[dict[str, str]] = {
    "automatic": "Automatic",
    "uniform": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "polyexponential": "Polyexponential",
    "sgm uniform": "SGM Uniform",
    "sgm_uniform": "SGM Uniform",
    "kl optimal": "KL Optimal",
    "kl_optimal": "KL Optimal",
    "align your steps": "Align Your Steps",
    "align_your_steps": "Align Your Steps",
    "simple": "Simple",
    "normal": "Normal",
    "ddim": "DDIM",
    "beta": "Beta",
}
_SUFFIXES: Final = sorted(SCHEDULE_TYPES, key=len, reverse=True)

_VERSION: Final = re.compile(r"v(\d+)\.(\d+)\.(\d+)(?:-[A-Za-z]*-?(\d+))?")


@dataclass(frozen=True)
class Infotext:
    """One parsed infotext. ``parameters`` holds every key as the WebUI would see it
    (string values, defaults filled in); ``defaulted`` the keys that were missing."""

    prompt: str
    negative_prompt: str
    parameters: Mapping[str, str]
    defaulted: tuple[str, ...] = ()
    sampler: str | None = None
    schedule_type: str = "Automatic"
    flags: Mapping[str, bool] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.parameters.get(key)

    def stated(self) -> dict[str, Any]:
        """Only what the text states (no defaults): ``Prompt``, ``Negative prompt`` when
        not empty, and every parameter, ``Size-1``/``Size-2``-style values as integers."""
        out: dict[str, Any] = {"Prompt": self.prompt.strip()}
        if self.negative_prompt.strip():
            out["Negative prompt"] = self.negative_prompt.strip()
        for key, value in self.parameters.items():
            if key in self.defaulted:
                continue
            out[key] = int(value) if key.startswith("Size-") and value.isdigit() else value
        return out


def image_size(value: str) -> tuple[int, int] | None:
    """``"640x512"`` as ``(640, 512)``; None for anything else."""
    size = _RE_IMAGESIZE.match(value)
    return None if size is None else (int(size.group(1)), int(size.group(2)))


def param_pairs(line: str) -> list[tuple[str, str]]:
    """The ``Key: value`` pairs of a parameters line, in order, as the WebUI's regex
    finds them, except that a value opening with ``[`` or ``{`` that is valid JSON is
    taken whole (its text, verbatim)."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while (m := _RE_PARAM.search(line, pos)) is not None:
        key = _RE_KEY.match(line, m.start())
        if key is not None:
            try:
                _, end = _JSON_DECODER.raw_decode(line, key.end())
            except (ValueError, RecursionError):
                end = -1
            if end > 0 and (end == len(line) or line[end] == ","):
                pairs.append((key.group(1), line[key.end() : end]))
                pos = end + 1
                continue
        pairs.append((m.group(1), m.group(2)))
        pos = max(m.end(), pos + 1)
    return pairs


def json_values(parameters: Mapping[str, str]) -> dict[str, Any]:
    """The parameters whose value is a JSON array/object, parsed."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if value[:1] in ("[", "{"):
            try:
                out[key] = json.loads(value)
            except (ValueError, RecursionError):
                continue
    return out


def unquote(text: str) -> str:
    """JSON-unquote a ``"…"`` value; anything else (or bad JSON) is returned as is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def quote(text: str) -> str:
    """The WebUI's quoting: JSON-quote values containing ``,``, ``:`` or a newline."""
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def split_sampler(sampler: str, schedule_type: str | None) -> tuple[str, str]:
    """Split a legacy ``"DPM++ 2M Karras"`` into ``("DPM++ 2M", "Karras")``.

    A suffix naming a schedule wins over the ``Schedule type`` field, as in the WebUI.
    """
    name = sampler.strip()
    found = SCHEDULE_TYPES.get((schedule_type or "Automatic").strip().lower(), schedule_type or "Automatic")
    lowered = name.lower()
    for suffix in _SUFFIXES:
        if lowered.endswith(" " + suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1].rstrip(), SCHEDULE_TYPES[suffix]
    return name, found


def parse_infotext(text: str) -> Infotext:
    """Parse A1111/Forge infotext. Raises :class:`InvalidInputError` only."""
    if not isinstance(text, str):
        raise InvalidInputError(f"infotext must be text, not {type(text).__name__}")
    if "\x00" in text:
        raise InvalidInputError("infotext contains NUL characters")
    stripped = text.strip()
    if not stripped:
        raise InvalidInputError("infotext is empty")
    *lines, last = stripped.split("\n")
    if len(param_pairs(last)) < 3:
        lines.append(last)
        last = ""

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)

    found: dict[str, str] = {}
    for key, raw_value in param_pairs(last):
        value = unquote(raw_value) if raw_value[:1] == '"' and raw_value[-1:] == '"' else raw_value
        size = _RE_IMAGESIZE.match(value)
        if size is not None:
            found[f"{key}-1"] = size.group(1)
            found[f"{key}-2"] = size.group(2)
        else:
            found[key] = value

    defaulted = tuple(key for key in DEFAULTS if key not in found)
    parameters = {**found, **{key: DEFAULTS[key] for key in defaulted}}
    sampler = parameters.get("Sampler")
    schedule_type = parameters["Schedule type"]
    if sampler is not None:
        sampler, schedule_type = split_sampler(sampler, schedule_type)
    prompt = "\n".join(prompt_lines)
    flags = _backcompat(parameters.get("Version"), prompt, sampler, parameters)
    return Infotext(
        prompt=prompt,
        negative_prompt="\n".join(negative_lines),
        parameters=parameters,
        defaulted=defaulted,
        sampler=sampler,
        schedule_type=schedule_type,
        flags=flags,
    )


def _version(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    matches = list(_VERSION.finditer(text))
    if not matches:
        return None
    # Forge writes "f2.0.1v1.10.1-previous-…": the A1111 version is the last "vX.Y.Z".
    m = matches[-1]
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)


def _backcompat(
    version_text: str | None, prompt: str, sampler: str | None, parameters: Mapping[str, str]
) -> dict[str, bool]:
    """``infotext_versions.backcompat``: behaviour switches implied by old versions."""
    version = _version(version_text)
    if version is None:
        return {}
    flags: dict[str, bool] = {}
    if version < (1, 6, 0, 0) and "[" in prompt:
        flags["Old prompt editing timelines"] = True
    if version < (1, 6, 0, 0) and sampler in ("DDIM", "PLMS"):
        flags["Pad conds v0"] = True
    if version < (1, 7, 0, 225):
        flags["Downcast alphas_cumprod"] = True
    if version < (1, 8, 0, 0) and parameters.get("Refiner"):
        flags["Refiner switch by sampling steps"] = True
    return flags


_FORGE: Final = re.compile(r"^(f\d+\.\d+\.\d+\S*?)v\d+\.\d+\.\d+")


def generator_of(parameters: Mapping[str, str]) -> tuple[str, str | None]:
    """The WebUI that wrote an infotext and its version, from ``App`` / ``Version``
    (Forge writes ``f2.0.1v1.10.1-…``; SD.Next ``App: SD.Next``)."""
    version = parameters.get("Version") or None
    app = parameters.get("App")
    if app:
        return app, version
    if version and (m := _FORGE.match(version)):
        return "Forge", m.group(1)
    if version and version.lower().startswith("fooocus"):
        return "Fooocus", version.split()[-1]
    return ("AUTOMATIC1111" if version else "A1111-compatible"), version


def _int(value: str | None, key: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInputError(f"infotext {key}: {value!r} is not an integer") from None


def _float(value: str | None, key: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value.strip())
    except ValueError:
        raise InvalidInputError(f"infotext {key}: {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidInputError(f"infotext {key}: {value!r} is not a finite number")
    return number


def scheduler_name(sampler: str | None, schedule_type: str) -> str | None:
    """The ledger's resolved scheduler for A1111: ``"DPM++ 2M Karras"`` style, or the
    sampler alone when the schedule is ``Automatic`` (the sampler's own default)."""
    if not sampler:
        return None
    if schedule_type and schedule_type != "Automatic":
        return f"{sampler} {schedule_type}"
    return sampler


def record_from_infotext(
    text: str,
    *,
    backend: str = "a1111",
    source: Source = Source.IMPORT,
    created_at: datetime | None = None,
    output_format: str | None = None,
    idempotency_key: str | None = None,
    extra_params: Mapping[str, Any] | None = None,
) -> NewRecord:
    """Map an infotext to a record. ``params`` keeps the raw text, every parsed key
    and which keys were defaulted, so nothing the file said is lost."""
    info = parse_infotext(text)
    p = info.parameters
    try:
        seed = parse_seed(p["Seed"]) if p.get("Seed") not in (None, "") else None
    except InvalidSeedError as exc:
        raise InvalidSeedError(f"infotext Seed: {exc}") from None
    values = json_values(p)
    hashes = values.get("Hashes")
    model_hash = p.get("Model hash") or (hashes.get("model") if isinstance(hashes, dict) else None)
    model = p.get("Model") or (f"hash:{model_hash}" if model_hash else "unknown")
    name, version = generator_of(p)
    params: dict[str, Any] = {
        "format": "a1111-infotext",
        "generator": {"name": name, "version": version},
        "infotext": text,
        "parameters": dict(p),
        "defaulted": list(info.defaulted),
        "sampler": info.sampler,
        "schedule_type": info.schedule_type,
        # The schedule the file states (None when the WebUI default was filled in).
        "schedule": None if "Schedule type" in info.defaulted else info.schedule_type,
        "model_hash": model_hash if isinstance(model_hash, str) else None,
    }
    if values:
        params["json_values"] = values
    if info.flags:
        params["backcompat"] = dict(info.flags)
    if extra_params:
        params.update(extra_params)
    return NewRecord(
        backend=backend,
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=model,
        # The infotext carries the seed the WebUI used (after -1 was resolved).
        seed=seed,
        seed_origin=SeedOrigin.RESPONSE if seed is not None else SeedOrigin.UNKNOWN,
        scheduler_requested=p.get("Sampler"),
        scheduler=scheduler_name(info.sampler, info.schedule_type),
        prompt=info.prompt,
        negative_prompt=info.negative_prompt,
        width=_int(p.get("Size-1"), "Size"),
        height=_int(p.get("Size-2"), "Size"),
        steps=_int(p.get("Steps"), "Steps"),
        cfg_scale=_float(p.get("CFG scale"), "CFG scale"),
        output_format=output_format,
        params=redact(params),
        source=source,
        created_at=created_at or utcnow(),
        idempotency_key=idempotency_key,
    )
