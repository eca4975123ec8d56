"""C2PA manifests (Content Credentials) as import sees them.

A manifest's declarations (digital source type, software agent, claim generator,
signer, validation state) are kept in ``params["c2pa"]`` beside whatever the file's
other metadata says. A seedledger credential links the file to its record (the same
record id and key in this ledger), or, in another ledger, is read from the sealed
leaf's row it carries. A manifest made elsewhere (Firefly, OpenAI, Google) with no
other metadata becomes a record naming the software agent as the model: no seed,
since such manifests state none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ledger.core.records import Modality, NewRecord, SeedOrigin
from ledger.workflows.credentials.assertion import CredentialAssertion
from ledger.workflows.credentials.read import ManifestSummary
from ledger.workflows.readers.base import Context
from ledger.workflows.readers.stamps import record_from_stamp
from ledger.workflows.stamp import Stamp

__all__ = ["credential_stamp", "record_from_credential", "record_from_manifest", "with_manifest"]

#: Leaf row columns a record is rebuilt from (the stamp summary's names).
_ROW_FIELDS = (
    "backend", "task_type", "modality", "model", "seed", "seed_origin", "scheduler_requested", "scheduler",
    "prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "output_format", "task_uuid",
    "output_uuid", "output_index", "created_at",
)  # fmt: skip


def credential_stamp(credential: CredentialAssertion, summary: dict[str, object] | None = None) -> Stamp:
    """A stamp naming the credential's record, so import links to it like a stamp."""
    return Stamp(
        record_id=credential.record_id,
        idempotency_key=credential.idempotency_key or f"record:{credential.record_id}",
        stamped_at="",
        checkpoint={"origin": credential.log_origin, "leaf_index": credential.leaf_index},
        record=summary or {},
    )


def record_from_credential(credential: CredentialAssertion, ctx: Context) -> NewRecord:
    row = credential.leaf_row()
    summary = {name: row.get(name) for name in _ROW_FIELDS}
    return record_from_stamp(credential_stamp(credential, summary), ctx)


def record_from_manifest(manifest: ManifestSummary, ctx: Context) -> NewRecord:
    model = manifest.software_agent or manifest.claim_generator or "unknown"
    return NewRecord(
        backend="c2pa",
        task_type="imageInference",
        modality=Modality.IMAGE,
        model=model,
        seed=None,
        seed_origin=SeedOrigin.UNKNOWN,
        output_format=ctx.output_format,
        params={"format": "c2pa", "c2pa": manifest.to_params(), **ctx.info("c2pa")},
        source=ctx.source,
        idempotency_key=ctx.key(0),
    )


def with_manifest(records: Sequence[NewRecord], manifest: ManifestSummary | None) -> tuple[NewRecord, ...]:
    if manifest is None:
        return tuple(records)
    facts = manifest.to_params()
    return tuple(dataclasses.replace(r, params={**r.params, "c2pa": facts}) for r in records)
