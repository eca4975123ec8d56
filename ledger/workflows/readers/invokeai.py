"""InvokeAI, every generation of its metadata:

- **3.x+**: PNG ``invokeai_metadata`` (JSON: ``positive_prompt``, ``seed``, ``steps``,
  ``cfg_scale``, ``scheduler``, ``width``/``height``, ``model`` as ``{"model_name"…}``
  (3.x) or ``{"name", "hash", "key"…}`` (4.x+), ``app_version``); the
  ``invokeai_graph`` chunk beside it is kept, not read.
- **2.x**: PNG ``sd-metadata`` (JSON: ``model_weights`` / ``model_id``, ``model_hash``,
  ``app_version``, and ``image``: ``prompt`` as ``[{"prompt", "weight"}]``, ``seed``,
  ``steps``, ``cfg_scale``, ``sampler``, ``width``, ``height``).
- **Dream** (early 2.x, alone): the command line ``"prompt" -s 50 -S 42 -W 512 …``.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Final

from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.readers._build import build
from ledger.workflows.readers.base import Context, generator, json_object, text
from ledger.workflows.readers.carriers import Carriers

_KEYS: Final = ("invokeai_metadata", "sd-metadata", "Dream", "invokeai_graph")
# Dream flags (InvokeAI 2 ``dream.py`` / ``args.py``): short and long names.
_FLAGS: Final = {
    "-s": "steps", "--steps": "steps", "-S": "seed", "--seed": "seed", "-W": "width", "--width": "width",
    "-H": "height", "--height": "height", "-C": "cfg_scale", "--cfg_scale": "cfg_scale",
    "-A": "sampler", "--sampler": "sampler", "-m": "model", "--model": "model",
}  # fmt: skip
_ATTACHED: Final = re.compile(r"^(-[sSWHCAm])(.+)$")


class InvokeAIReader:
    name = "invokeai"

    def detect(self, carriers: Carriers) -> bool:
        return any(k in carriers.text for k in _KEYS)

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        t = carriers.text
        if "invokeai_metadata" in t:
            return (_v3(t["invokeai_metadata"], ctx, "invokeai_graph" in t),)
        if "sd-metadata" in t:
            return (_v2(t["sd-metadata"], t.get("Dream"), ctx),)
        if "Dream" in t:
            return (_dream(t["Dream"], ctx),)
        raise InvalidInputError(
            "InvokeAI PNG holds only 'invokeai_graph' (the node graph), no 'invokeai_metadata': "
            "its generation settings are not stated"
        )


def _object(raw: str, key: str) -> dict[str, Any]:
    doc = json_object(raw)
    if doc is None:
        raise InvalidInputError(f"InvokeAI '{key}' chunk is not a JSON object")
    return doc


def _v3(raw: str, ctx: Context, has_graph: bool) -> NewRecord:
    doc = _object(raw, "invokeai_metadata")
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    return build(
        ctx,
        backend="invokeai",
        fmt="invokeai-3",
        generator=generator("InvokeAI", doc.get("app_version")),
        carrier="png:invokeai_metadata",
        metadata=doc,
        seed=doc.get("seed"),
        model=model.get("model_name") or model.get("name") or text(doc.get("model")),
        model_hash=model.get("hash"),
        sampler=doc.get("scheduler"),
        prompt=doc.get("positive_prompt"),
        negative_prompt=doc.get("negative_prompt"),
        width=doc.get("width"),
        height=doc.get("height"),
        steps=doc.get("steps"),
        cfg=doc.get("cfg_scale"),
        extra={"generation_mode": doc.get("generation_mode"), "graph_chunk": has_graph},
    )


def _prompt(value: Any) -> str | None:
    if isinstance(value, list):
        parts = [p.get("prompt") for p in value if isinstance(p, dict) and isinstance(p.get("prompt"), str)]
        return " ".join(parts) if parts else None
    return text(value)


def _v2(raw: str, dream: str | None, ctx: Context) -> NewRecord:
    doc = _object(raw, "sd-metadata")
    image = doc.get("image")
    images = doc.get("images")
    if not isinstance(image, dict) and isinstance(images, list) and len(images) == 1:
        image = images[0]  # 1.x files: "images": [{…}]
    if not isinstance(image, dict):
        raise InvalidInputError("InvokeAI 'sd-metadata' has no 'image' object (or one-entry 'images' list)")
    return build(
        ctx,
        backend="invokeai",
        fmt="invokeai-2",
        generator=generator("InvokeAI", doc.get("app_version"), app_id=doc.get("app_id")),
        carrier="png:sd-metadata",
        metadata={"sd-metadata": doc, "Dream": dream},
        seed=image.get("seed"),
        model=doc.get("model_weights") or doc.get("model_id"),
        model_hash=doc.get("model_hash"),
        sampler=image.get("sampler"),
        prompt=_prompt(image.get("prompt")),
        width=image.get("width"),
        height=image.get("height"),
        steps=image.get("steps"),
        cfg=image.get("cfg_scale"),
        extra={"type": image.get("type"), "variations": image.get("variations")},
    )


def parse_dream(line: str) -> dict[str, str]:
    """The prompt and known flags of a Dream command line."""
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise InvalidInputError(f"InvokeAI 'Dream' line cannot be split: {exc}") from None
    out: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        attached = _ATTACHED.match(token)
        if attached is not None and attached.group(1) in _FLAGS:
            out[_FLAGS[attached.group(1)]] = attached.group(2)
        elif token in _FLAGS and i + 1 < len(tokens):
            out[_FLAGS[token]] = tokens[i + 1]
            i += 1
        elif not token.startswith("-") and not out:
            words.append(token)
        i += 1
    if words:
        out["prompt"] = " ".join(words)
    return out


def _dream(line: str, ctx: Context) -> NewRecord:
    d = parse_dream(line)
    return build(
        ctx,
        backend="invokeai",
        fmt="invokeai-dream",
        generator=generator("InvokeAI"),
        carrier="png:Dream",
        metadata={"Dream": line},
        seed=d.get("seed"),
        model=d.get("model"),
        sampler=d.get("sampler"),
        prompt=d.get("prompt"),
        width=d.get("width"),
        height=d.get("height"),
        steps=d.get("steps"),
        cfg=d.get("cfg_scale"),
    )
