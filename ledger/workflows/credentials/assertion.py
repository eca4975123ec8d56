"""The ``org.seedledger.record`` assertion: what a credential says of its record.

Seeds are decimal strings (2^64−1 survives every JSON reader). ``proof`` is the
inclusion proof of :func:`ledger.integrity.prove` (format ``seedledger/proof``): the
record's canonical leaf, its index, the signed checkpoint and the audit path, so the
assertion can be checked offline against a trusted log key. The other fields repeat
what a reader wants to see at a glance; :func:`CredentialAssertion.leaf_mismatches`
checks that they say what the sealed leaf says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger.core.canonical import canonical_json
from ledger.core.records import Record
from ledger.core.seeds import parse_seed
from ledger.errors import InvalidInputError, InvalidSeedError

__all__ = ["ASSERTION_LABEL", "ASSERTION_VERSION", "CredentialAssertion", "params_digest"]

ASSERTION_LABEL: Final = "org.seedledger.record"
ASSERTION_VERSION: Final = 1


def params_digest(params: Mapping[str, Any]) -> str:
    """SHA-256 of the request parameters' canonical JSON, hex."""
    return hashlib.sha256(canonical_json(dict(params))).hexdigest()


@dataclass(frozen=True)
class CredentialAssertion:
    record_id: int
    idempotency_key: str | None
    seed: int | None
    model: str
    scheduler: str | None
    params_sha256: str
    pixel_sha256: str
    fingerprint_version: str
    log_origin: str
    leaf_index: int
    tree_size: int
    proof: Mapping[str, Any]

    @classmethod
    def for_record(
        cls, record: Record, *, pixel_sha256: str, fingerprint_version: str, proof: Mapping[str, Any]
    ) -> CredentialAssertion:
        origin = str(proof.get("checkpoint", "")).split("\n", 1)[0]
        return cls(
            record_id=record.id,
            idempotency_key=record.idempotency_key,
            seed=record.seed,
            model=record.model,
            scheduler=record.scheduler,
            params_sha256=params_digest(record.params),
            pixel_sha256=pixel_sha256,
            fingerprint_version=fingerprint_version,
            log_origin=origin,
            leaf_index=int(proof["leaf_index"]),
            tree_size=int(proof["tree_size"]),
            proof=dict(proof),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "v": ASSERTION_VERSION,
            "record_id": self.record_id,
            "idempotency_key": self.idempotency_key,
            "seed": None if self.seed is None else str(self.seed),
            "model": self.model,
            "scheduler": self.scheduler,
            "params_sha256": self.params_sha256,
            "pixel_sha256": self.pixel_sha256,
            "fingerprint_version": self.fingerprint_version,
            "log": {
                "origin": self.log_origin,
                "leaf_index": self.leaf_index,
                "tree_size": self.tree_size,
                "checkpoint": self.proof.get("checkpoint"),
                "inclusion_path": self.proof.get("inclusion_path"),
            },
            "proof": dict(self.proof),
        }

    @classmethod
    def from_data(cls, data: Any) -> CredentialAssertion:
        """Parse an assertion read from a file; InvalidInputError names what is wrong."""
        if not isinstance(data, dict) or data.get("v") != ASSERTION_VERSION:
            raise InvalidInputError(f"{ASSERTION_LABEL}: not a version {ASSERTION_VERSION} assertion")
        proof = data.get("proof")
        log = data.get("log")
        if not isinstance(proof, dict) or not isinstance(log, dict):
            raise InvalidInputError(f"{ASSERTION_LABEL}: no inclusion proof")
        seed_text = data.get("seed")
        try:
            seed = None if seed_text is None else parse_seed(_text(data, "seed"))
        except InvalidSeedError as exc:
            raise InvalidInputError(f"{ASSERTION_LABEL}: {exc}") from None
        return cls(
            record_id=_int(data, "record_id"),
            idempotency_key=data.get("idempotency_key")
            if isinstance(data.get("idempotency_key"), str)
            else None,
            seed=seed,
            model=_text(data, "model"),
            scheduler=data.get("scheduler") if isinstance(data.get("scheduler"), str) else None,
            params_sha256=_text(data, "params_sha256"),
            pixel_sha256=_text(data, "pixel_sha256"),
            fingerprint_version=_text(data, "fingerprint_version"),
            log_origin=_text(log, "origin"),
            leaf_index=_int(log, "leaf_index"),
            tree_size=_int(log, "tree_size"),
            proof=proof,
        )

    def leaf_row(self) -> dict[str, Any]:
        """The record row inside the proof's leaf (checked by verify_proof first)."""
        try:
            leaf = json.loads(base64.b64decode(str(self.proof.get("leaf", "")), validate=True))
        except (ValueError, binascii.Error):
            raise InvalidInputError(f"{ASSERTION_LABEL}: the proof's leaf is not base64 JSON") from None
        row = leaf.get("row") if isinstance(leaf, dict) else None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{ASSERTION_LABEL}: the proof's leaf holds no row")
        return row

    def leaf_mismatches(self) -> list[str]:
        """Fields of the assertion that differ from the sealed leaf's row."""
        row = self.leaf_row()
        seed = row.get("seed")
        wanted = {
            "record_id": row.get("id"),
            "seed": None if seed is None else int(seed),
            "model": row.get("model"),
            "scheduler": row.get("scheduler"),
            "params_sha256": params_digest(row["params"]) if isinstance(row.get("params"), dict) else None,
            "leaf_index": self.proof.get("leaf_index"),
            "tree_size": self.proof.get("tree_size"),
        }
        mine = {
            "record_id": self.record_id,
            "seed": self.seed,
            "model": self.model,
            "scheduler": self.scheduler,
            "params_sha256": self.params_sha256,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
        }
        return [name for name, value in mine.items() if wanted[name] != value]


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise InvalidInputError(f"{ASSERTION_LABEL}: {name} must be a string")
    return value


def _int(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{ASSERTION_LABEL}: {name} must be an integer")
    return value
