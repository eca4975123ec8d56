"""`seedledger stamp --c2pa-cert … --c2pa-key …`: sign a credential into a file.

Order matters: the unsigned stamp (XMP with IPTC fields, PNG iTXt) is written first,
because C2PA's hard binding hashes the bytes and anything added afterwards breaks the
manifest. The file must be the record's output (its decoded pixels match the
record's fingerprint) and the record must be sealed (the credential carries its
inclusion proof).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import __version__
from ledger.core.files import atomic_write
from ledger.core.records import Record
from ledger.errors import InvalidInputError, LedgerError, UsageError
from ledger.fingerprint import fingerprint_bytes
from ledger.integrity import prove
from ledger.store import Ledger
from ledger.workflows._media import sniff as sniff_image_format
from ledger.workflows.credentials._c2pa import sign_manifest
from ledger.workflows.credentials.assertion import ASSERTION_LABEL, CredentialAssertion
from ledger.workflows.stamp import TRAINED_ALGORITHMIC_MEDIA, latest_checkpoint, stamp_bytes, stamp_for

__all__ = ["MIME_TYPES", "CredentialResult", "credential_file", "manifest_for"]

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class CredentialResult:
    record_id: int
    path: str
    format: str
    leaf_index: int
    tree_size: int
    bytes_written: int


def manifest_for(record: Record, assertion: CredentialAssertion, title: str) -> dict[str, Any]:
    return {
        "claim_generator_info": [{"name": "seedledger", "version": __version__}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": record.model},
                        }
                    ]
                },
            },
            {"label": ASSERTION_LABEL, "data": assertion.to_data()},
        ],
    }


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def credential_file(
    ledger: Ledger, record_id: int, image: Path, out: Path, *, cert_chain: Path, key: Path
) -> CredentialResult:
    record = ledger.get(record_id)
    data = _read(image, "image")
    chain_pem, key_pem = _read(cert_chain, "certificate chain"), _read(key, "private key")
    kind = sniff_image_format(data)
    if kind not in MIME_TYPES:
        raise InvalidInputError(f"{image}: C2PA stamping takes PNG, JPEG or WEBP, not {kind or 'this file'}")
    expected = ledger.fingerprint_of(record_id)
    actual = fingerprint_bytes(data)
    if actual.pixel_sha256 != expected.pixel_sha256:
        raise InvalidInputError(
            f"{image} is not record {record_id}'s output: "
            "its decoded pixels differ from the record's fingerprint"
        )
    proof = prove(ledger, record_id)  # NotFoundError until the record is sealed
    assertion = CredentialAssertion.for_record(
        record, pixel_sha256=actual.pixel_sha256, fingerprint_version=actual.version, proof=proof
    )
    if kind in ("png", "jpeg"):  # XMP and IPTC first: writing them after signing breaks it
        data, _ = stamp_bytes(data, stamp_for(record, latest_checkpoint(ledger, record_id)))
    signed = sign_manifest(
        data, MIME_TYPES[kind], manifest_for(record, assertion, out.name), chain_pem, key_pem
    )
    try:
        atomic_write(out, signed, like=image)
    except OSError as exc:
        raise LedgerError(f"cannot write {out}: {exc.strerror or exc}") from None
    return CredentialResult(record_id, str(out), kind, assertion.leaf_index, assertion.tree_size, len(signed))
