"""Inclusion proofs: one entry of the log against the latest checkpoint, exported as
JSON (:func:`prove`) and checked offline, without the database (:func:`verify_proof`),
against a key the checker trusts."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ledger.core.canonical import canonical_json
from ledger.errors import IntegrityError, InvalidInputError, NotFoundError, UsageError
from ledger.integrity import merkle
from ledger.integrity._input import load_json
from ledger.integrity._reading import range_hash, snapshot
from ledger.integrity.leaves import ENTRY_TYPES, LEAF_FORMAT
from ledger.integrity.merkle import ProofError
from ledger.integrity.note import ENV_VERIFIER_KEY, Verifier, open_checkpoint
from ledger.integrity.seal import latest_checkpoint
from ledger.store import Ledger
from ledger.store.schema import log_entries

PROOF_FORMAT = "seedledger/inclusion-proof"
PROOF_VERSION = 1


def prove(ledger: Ledger, entry_id: int, *, entry_type: str = "record") -> dict[str, Any]:
    """An inclusion proof of one entry against the latest checkpoint, as JSON data
    that :func:`verify_proof` checks without the database."""
    et = ENTRY_TYPES.get(entry_type)
    if et is None:
        raise NotFoundError(f"no entry type {entry_type!r}")
    with snapshot(ledger) as conn:
        entry = conn.execute(
            select(log_entries.c.leaf_index, log_entries.c.leaf_hash).where(
                log_entries.c.entry_type == entry_type, log_entries.c.entry_id == entry_id
            )
        ).first()
        if entry is None:
            exists_row = conn.execute(
                select(et.table.c[et.id_column]).where(et.table.c[et.id_column] == entry_id)
            ).first()
            if exists_row is None:
                raise NotFoundError(f"no {entry_type} with id {entry_id}")
            raise NotFoundError(f"{entry_type} {entry_id} is not sealed yet; run `seedledger seal`")
        index = int(entry.leaf_index)
        cp = latest_checkpoint(conn)
        if cp is None or cp.size <= index:
            raise NotFoundError(
                f"{entry_type} {entry_id} was sealed after the latest checkpoint; run `seedledger seal`"
            )
        row = conn.execute(select(*et.raw_columns()).where(et.table.c[et.id_column] == entry_id)).first()
        if row is None:
            raise IntegrityError(f"leaf {index} ({entry_type} {entry_id}): the sealed row is gone")
        leaf = et.leaf_bytes_from_fields(index, et.row_fields_from_raw(row, conn.dialect))
        digest = merkle.leaf_hash(leaf)
        if digest != bytes(entry.leaf_hash):
            raise IntegrityError(
                f"leaf {index} ({entry_type} {entry_id}): the row no longer matches its sealed leaf"
            )
        path = merkle.inclusion_proof(index, cp.size, lambda a, b: range_hash(conn, a, b))
    try:
        merkle.verify_inclusion(index, cp.size, digest, path, cp.root)
    except ProofError as exc:
        raise IntegrityError(f"leaf {index} ({entry_type} {entry_id}): {exc}") from None
    return {
        "format": PROOF_FORMAT,
        "v": PROOF_VERSION,
        "entry_type": entry_type,
        "entry_id": entry_id,
        "leaf_index": index,
        "tree_size": cp.size,
        "leaf": base64.b64encode(leaf).decode(),
        "leaf_hash": digest.hex(),
        "inclusion_path": [h.hex() for h in path],
        "checkpoint": cp.note,
        "verifier": cp.verifier,
    }


@dataclass(frozen=True)
class ProofReport:
    entry_type: str
    entry_id: int
    leaf_index: int
    tree_size: int
    origin: str
    root: bytes
    key: str  # the trusted verifier key that verified the checkpoint's signature
    row: dict[str, Any] = field(default_factory=dict)


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInputError(f"proof field {name!r} is missing or not a {kind.__name__}")
    return value


def verify_proof(data: Any, verifiers: Sequence[Verifier] = ()) -> ProofReport:
    """Check an inclusion proof from :func:`prove` offline (no database).

    Steps: (1) the format; (2) the checkpoint's signature, by one of ``verifiers`` (keys
    the caller trusts; none given is a :class:`UsageError`, never the key in the file);
    (3) the checkpoint's size is the proof's tree size; (4) the leaf is canonical and
    names the same entry and index; (5) its hash is the given leaf hash; (6) RFC 9162
    inclusion of the leaf hash under the signed root. Raises :class:`IntegrityError`
    (``ProofError``/``NoteError``) on failure.
    """
    # The key the proof file names vouches for nothing: whoever forged the proof would
    # have put their own key there.
    if not verifiers:
        raise UsageError(
            f"no trusted key to check the proof with: pass --key VERIFIER (or set {ENV_VERIFIER_KEY}); "
            "the key inside the proof file is not trusted"
        )
    # (1) format
    if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
        raise InvalidInputError(f"not a {PROOF_FORMAT} file")
    if data.get("v") != PROOF_VERSION:
        raise InvalidInputError(f"unsupported proof version {data.get('v')!r}")
    entry_type = _field(data, "entry_type", str)
    entry_id = _field(data, "entry_id", int)
    index = _field(data, "leaf_index", int)
    size = _field(data, "tree_size", int)
    note = _field(data, "checkpoint", str)
    path_hex = _field(data, "inclusion_path", list)
    try:
        path = [bytes.fromhex(h) for h in path_hex]
        leaf = base64.b64decode(_field(data, "leaf", str), validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise InvalidInputError("proof hashes must be hex and the leaf base64") from None
    # (2) signature, by a key the caller trusts (required above)
    checkpoint, opened = open_checkpoint(note, list(verifiers))
    # (3) sizes
    if checkpoint.size != size:
        raise ProofError(f"proof is for tree size {size}, the checkpoint has size {checkpoint.size}")
    # (4) the leaf itself
    try:
        decoded = load_json(leaf, "the proof's leaf")
    except InvalidInputError as exc:
        raise ProofError(str(exc)) from None
    if not isinstance(decoded, dict) or canonical_json(decoded) != leaf:
        raise ProofError("leaf is not canonical JSON")
    et = ENTRY_TYPES.get(entry_type)
    id_column = et.id_column if et else "id"
    found_row = decoded.get("row")
    row: dict[str, Any] = found_row if isinstance(found_row, dict) else {}
    if (
        decoded.get("format") != LEAF_FORMAT
        or decoded.get("type") != entry_type
        or decoded.get("index") != index
        or row.get(id_column) != entry_id
    ):
        raise ProofError("leaf does not name the entry and leaf index the proof claims")
    # (5) leaf hash
    digest = merkle.leaf_hash(leaf)
    if "leaf_hash" in data and data["leaf_hash"] != digest.hex():
        raise ProofError("leaf hash in the proof does not match the leaf")
    # (6) inclusion
    merkle.verify_inclusion(index, size, digest, path, checkpoint.root)
    return ProofReport(
        entry_type,
        entry_id,
        index,
        size,
        checkpoint.origin,
        checkpoint.root,
        str(opened.verified_by[0]),
        row,
    )
