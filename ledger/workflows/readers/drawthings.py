"""Draw Things: XMP with ``xmp:CreatorTool`` ``Draw Things`` and the settings as JSON in
``exif:UserComment`` (``c`` prompt, ``uc`` negative, ``seed``, ``steps``, ``scale``,
``sampler``, ``model``, ``size`` ``"WxH"``). The XMP is searched as text, never parsed
as XML (no entity expansion on untrusted files)."""

from __future__ import annotations

import html
import re
from typing import Final

from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.readers._build import build
from ledger.workflows.readers.base import Context, generator, json_object
from ledger.workflows.readers.carriers import Carriers

_COMMENT: Final = re.compile(
    r"<exif:UserComment>\s*(?:<rdf:Alt>\s*<rdf:li[^>]*>)?(.*?)(?:</rdf:li>\s*</rdf:Alt>\s*)?</exif:UserComment>",
    re.S,
)
_SIZE: Final = re.compile(r"^(\d+)\s*x\s*(\d+)$")


class DrawThingsReader:
    name = "drawthings"

    def detect(self, carriers: Carriers) -> bool:
        return bool(carriers.xmp) and "Draw Things" in carriers.xmp  # type: ignore[operator]

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        found = _COMMENT.search(carriers.xmp or "")
        doc = json_object(html.unescape(found.group(1)).strip()) if found else None
        if doc is None:
            raise InvalidInputError(
                "Draw Things XMP: exif:UserComment (generation settings) is missing or not JSON"
            )
        width = height = None
        if isinstance(doc.get("size"), str) and (m := _SIZE.match(doc["size"].strip())):
            width, height = int(m.group(1)), int(m.group(2))
        return (
            build(
                ctx,
                backend="drawthings",
                fmt="drawthings",
                generator=generator("Draw Things"),
                carrier=f"{ctx.kind}:xmp",
                metadata=doc,
                seed=doc.get("seed"),
                model=doc.get("model"),
                sampler=doc.get("sampler"),
                prompt=doc.get("c"),
                negative_prompt=doc.get("uc"),
                width=width,
                height=height,
                steps=doc.get("steps"),
                cfg=doc.get("scale"),
                extra={"seed_mode": doc.get("seed_mode"), "strength": doc.get("strength")},
            ),
        )
