"""NovelAI: PNG ``Software: NovelAI``, ``Description`` (the prompt), ``Source`` (the
model, e.g. ``Stable Diffusion 1D44365E``: the hex suffix is its hash) and ``Comment``
(JSON: ``seed``, ``steps``, ``scale``, ``sampler``, ``uc`` the negative prompt,
``width``/``height`` and ``noise_schedule`` in newer versions). Newer files hide the
same chunks as JSON in the alpha channel's stealth bits; the registry reads those
through this reader too."""

from __future__ import annotations

import re
from typing import Final

from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.readers._build import build
from ledger.workflows.readers.base import Context, generator, json_object
from ledger.workflows.readers.carriers import Carriers

_HASH: Final = re.compile(r"\b([0-9A-Fa-f]{8})$")


class NovelAIReader:
    name = "novelai"

    def detect(self, carriers: Carriers) -> bool:
        return carriers.text.get("Software", "").strip().startswith("NovelAI")

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        t = carriers.text
        doc = json_object(t.get("Comment"))
        if doc is None:
            raise InvalidInputError(
                "NovelAI PNG: the 'Comment' chunk (generation settings) is missing or not JSON"
            )
        source = t.get("Source", "").strip()
        found = _HASH.search(source)
        return (
            build(
                ctx,
                backend="novelai",
                fmt="novelai",
                generator=generator("NovelAI", doc.get("version")),
                carrier="png:Comment",
                metadata={"Comment": doc, "Source": source or None, "Software": t.get("Software")},
                seed=doc.get("seed"),
                model=source or None,
                model_hash=found.group(1) if found else None,
                sampler=doc.get("sampler"),
                schedule=doc.get("noise_schedule"),
                prompt=t.get("Description") or doc.get("prompt"),
                negative_prompt=doc.get("uc"),
                width=doc.get("width"),
                height=doc.get("height"),
                steps=doc.get("steps"),
                cfg=doc.get("scale"),
                extra={"strength": doc.get("strength"), "noise": doc.get("noise")},
            ),
        )
