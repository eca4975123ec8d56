"""SwarmUI: ``{"sui_image_params": {…}, "sui_extra_data": {…}, "sui_models": […]}`` as
JSON in the EXIF UserComment (JPEG/WEBP) or the PNG ``parameters`` chunk."""

from __future__ import annotations

from typing import Any

from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.readers._build import build
from ledger.workflows.readers.base import Context, generator, json_object
from ledger.workflows.readers.carriers import Carriers


def _document(carriers: Carriers) -> tuple[dict[str, Any], str] | None:
    for value, where in (
        (carriers.exif.get("UserComment"), f"{carriers.kind}:exif-usercomment"),
        (carriers.text.get("parameters"), "png:parameters"),
    ):
        doc = json_object(value)
        if doc is not None and "sui_image_params" in doc:
            return doc, where
    return None


class SwarmUIReader:
    name = "swarmui"

    def detect(self, carriers: Carriers) -> bool:
        return _document(carriers) is not None

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        doc, where = _document(carriers)  # type: ignore[misc]
        p = doc["sui_image_params"]
        if not isinstance(p, dict):
            raise InvalidInputError("SwarmUI metadata: sui_image_params is not an object")
        models = doc.get("sui_models") if isinstance(doc.get("sui_models"), list) else []
        model_hash = next(
            (m.get("hash") for m in models if isinstance(m, dict) and m.get("param") == "model"), None
        )
        return (
            build(
                ctx,
                backend="swarmui",
                fmt="swarmui",
                generator=generator("SwarmUI", p.get("swarm_version")),
                carrier=where,
                metadata=doc,
                seed=p.get("seed"),
                model=p.get("model"),
                model_hash=model_hash,
                sampler=p.get("sampler"),
                schedule=p.get("scheduler"),
                prompt=p.get("prompt"),
                negative_prompt=p.get("negativeprompt"),
                width=p.get("width"),
                height=p.get("height"),
                steps=p.get("steps"),
                cfg=p.get("cfgscale"),
                extra={"images": p.get("images")},
            ),
        )
