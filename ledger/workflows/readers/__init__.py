"""One reader per file format, behind one registry.

:func:`read_image` decodes a file's metadata carriers once (``carriers.py``), asks each
reader in :data:`IMAGE_READERS` whether the carriers are its format (by what they
hold: chunk names, JSON shape, the tool's own marker — never by trying to parse one
format as another), and lets the first that recognises them read the records. A reader
that recognises its format but cannot read it raises the precise reason. A record that
states no generation setting at all is never returned: the file is refused with its
reason instead. :func:`read_text` does the same for JSON files (ComfyUI graphs and UI
workflows, Runware logs).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from ledger.core import comfy
from ledger.core.records import NewRecord
from ledger.errors import InvalidInputError
from ledger.workflows.credentials.read import manifest_summary
from ledger.workflows.readers.a1111 import A1111Reader, read_infotext
from ledger.workflows.readers.base import Context, Reader, Reading, json_object
from ledger.workflows.readers.c2pa import (
    credential_stamp,
    record_from_credential,
    record_from_manifest,
    with_manifest,
)
from ledger.workflows.readers.carriers import Carriers, extract
from ledger.workflows.readers.civitai import CivitaiReader
from ledger.workflows.readers.comfyui import ComfyUIReader, check_readable
from ledger.workflows.readers.drawthings import DrawThingsReader
from ledger.workflows.readers.fooocus import FooocusReader
from ledger.workflows.readers.invokeai import InvokeAIReader
from ledger.workflows.readers.novelai import NovelAIReader
from ledger.workflows.readers.runware import read_runware
from ledger.workflows.readers.stamps import record_from_stamp, stamp_of
from ledger.workflows.readers.stealth import read_stealth
from ledger.workflows.readers.swarmui import SwarmUIReader

__all__ = [
    "IMAGE_READERS",
    "Carriers",
    "Context",
    "Reader",
    "Reading",
    "extract",
    "read_image",
    "read_text",
    "stated",
]

#: Most specific first: ComfyUI's own chunks, then JSON schemes, then plain infotext.
IMAGE_READERS: Final[tuple[Reader, ...]] = (
    ComfyUIReader(),
    CivitaiReader(),
    SwarmUIReader(),
    FooocusReader(),
    InvokeAIReader(),
    NovelAIReader(),
    DrawThingsReader(),
    A1111Reader(),
)


def stated(record: NewRecord) -> bool:
    """Whether a record states any generation setting (else it is not kept)."""
    return (
        record.seed is not None
        or record.model != "unknown"
        or record.steps is not None
        or record.cfg_scale is not None
        or record.scheduler_requested is not None
    )


def _kept(records: tuple[NewRecord, ...], what: str) -> tuple[NewRecord, ...]:
    kept = tuple(r for r in records if stated(r))
    if kept:
        return kept
    notes = [n for r in records for n in r.params.get("notes", ())]
    detail = f": {'; '.join(notes[:3])}" if notes else ""
    raise InvalidInputError(
        f"{what} states no generation settings (no seed, model, sampler, steps or CFG){detail}"
    )


def _unknown_json(carriers: Carriers) -> str | None:
    for key, value in (("PNG 'parameters'", carriers.text.get("parameters")),
                       ("EXIF UserComment", carriers.exif.get("UserComment"))):  # fmt: skip
        doc = json_object(value)
        if doc is not None:
            keys = ", ".join(sorted(map(str, doc))[:6])
            return f"{key} holds JSON of no known scheme (keys: {keys})"
    return None


def read_image(data: bytes, ctx: Context) -> Reading:
    """The records of one PNG/JPEG/WEBP. Raises InvalidInputError (with the reason)."""
    carriers = extract(data)
    stamp = stamp_of(carriers)
    manifest = manifest_summary(data)  # C2PA: what the manifest declares, never trusted here
    if stamp is None and manifest is not None and manifest.credential is not None:
        stamp = credential_stamp(manifest.credential)
    for reader in IMAGE_READERS:
        if reader.detect(carriers):
            records = _kept(reader.read(carriers, ctx), f"{reader.name} metadata")
            return Reading(f"{reader.name}-{ctx.kind}", with_manifest(records, manifest), data, stamp)
    if stamp is not None:
        if not stamp.record and manifest is not None and manifest.credential is not None:
            # a credential without the XMP stamp (WEBP): the sealed leaf's row
            record = record_from_credential(manifest.credential, ctx)
        else:
            record = record_from_stamp(stamp, ctx)
        return Reading("seedledger-stamp", with_manifest((record,), manifest), data, stamp)
    if manifest is not None:
        return Reading(
            f"c2pa-{ctx.kind}", _kept((record_from_manifest(manifest, ctx),), "C2PA manifest"), data
        )
    unknown = _unknown_json(carriers)
    if unknown is not None:
        raise InvalidInputError(unknown)
    if carriers.kind in ("png", "webp"):
        hidden = read_stealth(data, carriers.has_alpha)
        if hidden is not None:
            return _stealth(hidden, carriers, ctx, data)
    stealth = ", no stealth info in the pixels" if carriers.kind in ("png", "webp") else ""
    found = carriers.describe() + stealth
    raise InvalidInputError(f"{carriers.kind.upper()} has no generation metadata seedledger reads ({found})")


def _stealth(hidden: str, carriers: Carriers, ctx: Context, data: bytes) -> Reading:
    """Stealth info: A1111 infotext, or (NovelAI) a JSON object of the text chunks the
    file would otherwise carry, read by the reader of that format."""
    doc = json_object(hidden)
    if doc is None:
        where = f"{ctx.kind}:stealth-{'alpha' if carriers.has_alpha else 'rgb'}"
        record = read_infotext(hidden, where, ctx)
        return Reading(f"a1111-stealth-{ctx.kind}", _kept((record,), "stealth infotext"), data)
    chunks = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    inner = dataclasses.replace(carriers, text=chunks)
    for reader in IMAGE_READERS:
        if reader.detect(inner):
            records = _kept(reader.read(inner, ctx), f"{reader.name} stealth metadata")
            return Reading(f"{reader.name}-stealth-{ctx.kind}", records, data)
    keys = ", ".join(sorted(chunks)[:6])
    raise InvalidInputError(f"stealth info in the pixels holds JSON of no known scheme (keys: {keys})")


def read_text(text: str, ctx: Context) -> Reading:
    """A JSON file: a ComfyUI API graph or ``/prompt`` body (one record per save node), a
    UI workflow (read from its widgets), or Runware request+response documents."""
    whole = _json(text)
    graph: Any = None
    if comfy.is_api_graph(whole):
        graph = whole
    elif isinstance(whole, dict) and comfy.is_api_graph(whole.get("prompt")):
        graph = whole["prompt"]
    if graph is not None:
        workflow = None
        if isinstance(whole, dict) and isinstance(whole.get("extra_data"), dict):
            extra = whole["extra_data"].get("extra_pnginfo")
            workflow = extra.get("workflow") if isinstance(extra, dict) else None
        return Reading("comfyui-json", _graph_records(comfy.load_graph(graph), ctx, workflow, "json"))
    if comfy.is_ui_workflow(whole):
        ui = comfy.workflow_to_graph(whole)
        records = _graph_records(ui.graph, ctx, None, "json:workflow-only", ui.unknown, ui.notes)
        return Reading("comfyui-workflow-json", records)
    return Reading("runware-json", read_runware(text, ctx))


def _json(text: str) -> Any:
    try:
        return comfy.loads(text, "file")
    except InvalidInputError:
        return None


def _graph_records(
    graph: dict[str, Any],
    ctx: Context,
    workflow: Any,
    carrier: str,
    unknown: frozenset[str] = frozenset(),
    notes: tuple[str, ...] = (),
) -> tuple[NewRecord, ...]:
    outputs = comfy.outputs_of(graph)
    if not outputs:
        raise InvalidInputError("ComfyUI graph has no image-saving node (SaveImage)")
    records = []
    refused: list[str] = []
    for index, output in enumerate(outputs):
        try:
            check_readable(output, graph, unknown)
        except InvalidInputError as exc:
            refused.append(exc.message)  # this output only; the others are still read
            continue
        info = ctx.info("json")
        info["import"]["carrier"] = carrier
        if notes:
            info["ui_notes"] = list(notes)
        records.append(
            comfy.record_for_output(
                output,
                graph,
                workflow=workflow,
                all_outputs=outputs,
                matched_by="graph",
                source=ctx.source,
                idempotency_key=ctx.key(output.node_id),
                output_index=index,
                extra_params=info,
            )
        )
    if not records:
        raise InvalidInputError(refused[0])
    return _kept(tuple(records), "ComfyUI graph")
