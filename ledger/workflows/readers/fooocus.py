"""Fooocus: JSON ``parameters`` (``metadata_scheme: fooocus``, with a ``fooocus_scheme``
chunk beside it). With ``fooocus_scheme: a1111`` the ``parameters`` chunk is infotext
and the A1111 reader takes it."""

from __future__ import annotations

import re
from typing import Any, Final

from ledger.core.records import NewRecord
from ledger.workflows.readers._build import build
from ledger.workflows.readers.base import Context, generator, json_object
from ledger.workflows.readers.carriers import Carriers

_RESOLUTION: Final = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def _document(carriers: Carriers) -> dict[str, Any] | None:
    doc = json_object(carriers.text.get("parameters")) or json_object(carriers.exif.get("UserComment"))
    if doc is None:
        return None
    if doc.get("metadata_scheme") == "fooocus" or carriers.text.get("fooocus_scheme") == "fooocus":
        return doc
    return None


class FooocusReader:
    name = "fooocus"

    def detect(self, carriers: Carriers) -> bool:
        return _document(carriers) is not None

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        doc = _document(carriers)
        assert doc is not None
        width = height = None
        if isinstance(doc.get("resolution"), str) and (m := _RESOLUTION.match(doc["resolution"].strip())):
            width, height = int(m.group(1)), int(m.group(2))
        version = doc.get("version")
        if isinstance(version, str) and version.lower().startswith("fooocus"):
            version = version.split()[-1]
        return (
            build(
                ctx,
                backend="fooocus",
                fmt="fooocus",
                generator=generator("Fooocus", version),
                carrier="png:parameters" if "parameters" in carriers.text else f"{ctx.kind}:exif-usercomment",
                metadata=doc,
                seed=doc.get("seed"),
                model=doc.get("base_model"),
                model_hash=doc.get("base_model_hash"),
                sampler=doc.get("sampler"),
                schedule=doc.get("scheduler"),
                prompt=doc.get("prompt"),
                negative_prompt=doc.get("negative_prompt"),
                width=width,
                height=height,
                steps=doc.get("steps"),
                cfg=doc.get("guidance_scale"),
                extra={"performance": doc.get("performance")},
            ),
        )
