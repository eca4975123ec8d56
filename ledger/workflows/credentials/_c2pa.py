"""The one seam to c2pa-python: sign a manifest into bytes, read one back.

Everything the native library raises becomes :class:`CredentialError` (or
``UsageError`` when the extra is missing), with the library's message shortened to a
line. Signing disables thumbnails (the output is the asset itself) and network
timestamping (no TSA is reachable from a ledger host; the claim is timed by the log).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import LedgerError, UsageError

__all__ = ["CredentialError", "ManifestReading", "read_manifest", "sign_manifest", "supported_types"]

_INSTALL = "C2PA needs the c2pa extra: pip install 'seedledger[c2pa]'"


class CredentialError(LedgerError):
    """A C2PA manifest could not be made or read."""

    exit_code = 7


def _lib() -> Any:
    try:
        import c2pa
    except ImportError:
        raise UsageError(_INSTALL) from None
    return c2pa


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def supported_types() -> frozenset[str]:
    return frozenset(_lib().Builder.get_supported_mime_types())


def sign_manifest(
    data: bytes, mime: str, manifest: dict[str, Any], chain_pem: bytes, key_pem: bytes
) -> bytes:
    """``data`` with ``manifest`` signed and embedded (ES256 with the certificate chain)."""
    c2pa = _lib()
    if mime not in supported_types():
        raise UsageError(f"C2PA cannot sign {mime} files")
    try:
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain_pem, key_pem, None)
        context = c2pa.Context.from_dict(
            {"builder": {"thumbnail": {"enabled": False}}, "verify": {"verify_after_sign": False}}
        )
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
            return out.getvalue()
    except c2pa.C2paError as exc:
        raise CredentialError(f"C2PA signing failed: {_one_line(exc)}") from None


@dataclass(frozen=True)
class ManifestReading:
    """What the library says of a file's active manifest."""

    state: str  # "Trusted", "Valid" or "Invalid" (c2pa's validation state)
    manifest: dict[str, Any] | None
    failures: tuple[str, ...] = ()  # status codes of failed validations
    signer: dict[str, Any] = field(default_factory=dict)
    trust_checked: bool = False  # whether caller-supplied anchors were used


def read_manifest(data: bytes, mime: str, trust_anchors: str | None) -> ManifestReading | None:
    """The active manifest and its validation, None when the file carries none.

    With ``trust_anchors`` (PEM) they replace the library's own list, so "Trusted"
    means "chains to an anchor the caller named"; without, trust is not evaluated
    here and the reading is never "Trusted".
    """
    c2pa = _lib()
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    else:
        settings["verify"]["verify_trust"] = False
    try:
        context = c2pa.Context.from_dict(settings)
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
        if reader is None:
            return None
        with reader:
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest()
    except c2pa.C2paError as exc:
        raise CredentialError(f"cannot read the C2PA manifest: {_one_line(exc)}") from None
    active = results.get("activeManifest") or {}
    failures = tuple(str(item.get("code")) for item in active.get("failure") or [] if isinstance(item, dict))
    if not trust_anchors and state == "Trusted":
        state = "Valid"
    signer = manifest.get("signature_info") or {} if isinstance(manifest, dict) else {}
    return ManifestReading(state, manifest, failures, dict(signer), bool(trust_anchors))


def assertion(manifest: dict[str, Any] | None, label: str) -> Any:
    """The data of the first assertion with ``label`` in a manifest, or None."""
    for item in (manifest or {}).get("assertions") or []:
        if isinstance(item, dict) and item.get("label") == label:
            return item.get("data")
    return None
