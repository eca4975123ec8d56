"""What a file's C2PA manifest says, for `seedledger import` (no trust decision).

Adobe Firefly, OpenAI, Google and seedledger itself attach Content Credentials to
generated media. Import keeps what they declare — digital source type, software agent,
claim generator, signer, C2PA's validation state — and, for a seedledger credential,
the record it carries, so the file links to that record in its own ledger. Whether the
signer is trusted is `verify-file`'s question, asked with trust anchors; import never
calls anything trusted.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.workflows._media import sniff
from ledger.workflows.credentials.assertion import ASSERTION_LABEL, CredentialAssertion

__all__ = ["ManifestSummary", "manifest_summary", "may_carry_manifest"]

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def may_carry_manifest(data: bytes) -> bool:
    """A cheap look for C2PA's JUMBF box (PNG ``caBX`` chunk, JPEG APP11, WEBP ``C2PA``)."""
    kind = sniff(data)
    if kind == "png":
        return b"caBX" in data
    if kind == "jpeg":
        return b"\xff\xeb" in data and b"jumb" in data
    if kind == "webp":
        return b"C2PA" in data
    return False


@dataclass(frozen=True)
class ManifestSummary:
    validation_state: str
    claim_generator: str | None
    signer: dict[str, Any]
    digital_source_type: str | None
    software_agent: str | None
    title: str | None
    credential: CredentialAssertion | None  # a seedledger record assertion, if any
    problem: str | None = None  # why the seedledger assertion could not be read

    def to_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "validation_state": self.validation_state,
            "claim_generator": self.claim_generator,
            "signer": self.signer,
            "digital_source_type": self.digital_source_type,
            "software_agent": self.software_agent,
            "trusted": None,  # not evaluated at import: `seedledger verify-file --trust-anchors`
        }
        if self.credential is not None:
            out["seedledger_record"] = {
                "record_id": self.credential.record_id,
                "log_origin": self.credential.log_origin,
                "leaf_index": self.credential.leaf_index,
            }
        if self.problem:
            out["problem"] = self.problem
        return {k: v for k, v in out.items() if v is not None or k == "trusted"}


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name, version = info[0].get("name"), info[0].get("version")
        if isinstance(name, str):
            return f"{name} {version}" if isinstance(version, str) else name
    generator = manifest.get("claim_generator")
    return generator if isinstance(generator, str) else None


def _created(manifest: dict[str, Any]) -> tuple[str | None, str | None]:
    """(digitalSourceType, softwareAgent name) of the first created/opened action."""
    for item in manifest.get("assertions") or []:
        if not isinstance(item, dict) or not str(item.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (item.get("data") or {}).get("actions") or []:
            if not isinstance(action, dict):
                continue
            agent = action.get("softwareAgent")
            name = agent.get("name") if isinstance(agent, dict) else agent if isinstance(agent, str) else None
            source = action.get("digitalSourceType")
            if source or name:
                return (source if isinstance(source, str) else None, name if isinstance(name, str) else None)
    return None, None


def manifest_summary(data: bytes) -> ManifestSummary | None:
    """The active manifest of ``data``, or None when it has none, the c2pa extra is
    not installed, or c2pa cannot read it (import then reads the file's other metadata)."""
    kind = sniff(data)
    if kind not in _MIME or not may_carry_manifest(data) or importlib.util.find_spec("c2pa") is None:
        return None
    from ledger.workflows.credentials._c2pa import assertion, read_manifest

    try:
        reading = read_manifest(data, _MIME[kind], None)
    except LedgerError:
        return None
    if reading is None or not isinstance(reading.manifest, dict):
        return None
    manifest = reading.manifest
    source, agent = _created(manifest)
    credential, problem = None, None
    data_ = assertion(manifest, ASSERTION_LABEL)
    if data_ is not None:
        try:
            credential = CredentialAssertion.from_data(data_)
        except LedgerError as exc:
            problem = str(exc)
    title = manifest.get("title")
    return ManifestSummary(
        validation_state=reading.state,
        claim_generator=_claim_generator(manifest),
        signer={k: v for k, v in reading.signer.items() if k in ("issuer", "common_name", "alg", "time")},
        digital_source_type=source,
        software_agent=agent,
        title=title if isinstance(title, str) else None,
        credential=credential,
        problem=problem,
    )
