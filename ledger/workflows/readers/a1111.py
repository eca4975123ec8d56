"""AUTOMATIC1111 / Forge / SD.Next infotext: PNG ``parameters``, EXIF UserComment
(JPEG, WEBP, and the ``eXIf`` chunk of a PNG), or stealth info in the pixels.

Only plain text is infotext: a carrier holding JSON belongs to another reader
(SwarmUI, Fooocus, Civitai) and is never parsed as A1111 text.
"""

from __future__ import annotations

import json

from ledger.core.infotext import record_from_infotext
from ledger.core.records import NewRecord
from ledger.workflows.readers.base import Context
from ledger.workflows.readers.carriers import Carriers


def _is_text(value: str | None) -> bool:
    """Non-empty and not JSON (a prompt may well open with ``{`` — dynamic prompts)."""
    if not value or not value.strip():
        return False
    if value.lstrip()[:1] not in ("{", "["):
        return True
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return True
    return False


def infotext_of(carriers: Carriers) -> tuple[str, str] | None:
    """(infotext, where it was found) or None."""
    if _is_text(carriers.text.get("parameters")):
        return carriers.text["parameters"], "png:parameters"
    if _is_text(carriers.exif.get("UserComment")):
        return carriers.exif["UserComment"], f"{carriers.kind}:exif-usercomment"
    return None


class A1111Reader:
    name = "a1111"

    def detect(self, carriers: Carriers) -> bool:
        return infotext_of(carriers) is not None

    def read(self, carriers: Carriers, ctx: Context) -> tuple[NewRecord, ...]:
        found = infotext_of(carriers)
        assert found is not None
        return (read_infotext(found[0], found[1], ctx),)


def read_infotext(text: str, carrier: str, ctx: Context) -> NewRecord:
    info = ctx.info()
    info["import"]["carrier"] = carrier
    return record_from_infotext(
        text,
        source=ctx.source,
        output_format=ctx.output_format,
        idempotency_key=ctx.key(),
        extra_params=info,
    )
