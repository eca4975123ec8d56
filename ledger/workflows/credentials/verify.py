"""`seedledger verify-file`: check a file's credential, layer by layer.

Each check is named and reported; the file passes only when every one holds:

1. ``c2pa-manifest``: the file carries a C2PA manifest whose signature and hard
   binding validate (C2PA's status codes are reported on failure);
2. ``c2pa-signer``: its signing certificate chains to a trust anchor the caller gave
   (without ``--trust-anchors`` the signer is untrusted, never assumed trusted);
3. ``assertion``: the manifest carries a readable ``org.seedledger.record`` assertion;
4. ``pixels``: the file's decoded pixels are the ones the assertion names (and, with a
   ledger, the record's stored fingerprint);
5. ``log-proof``: the inclusion proof holds under a checkpoint signed by a trusted
   log key (``--key`` / ``SEEDLEDGER_VERIFIER_KEY``; a key inside the file is no proof);
6. ``assertion-matches-leaf``: the assertion's record, seed, model, scheduler and
   parameter digest are what the sealed leaf says;
7. ``ledger-record`` (only with a ledger): the record is still in the log at that leaf
   and its row still hashes to it.
A check that cannot run because an earlier one failed is reported as not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import FingerprintError, IntegrityError, LedgerError, UsageError
from ledger.fingerprint import fingerprint_bytes
from ledger.integrity import Verifier, prove, verify_proof
from ledger.store import Ledger
from ledger.workflows._media import sniff
from ledger.workflows.credentials._c2pa import ManifestReading, assertion, read_manifest
from ledger.workflows.credentials.assertion import ASSERTION_LABEL, CredentialAssertion
from ledger.workflows.credentials.sign import MIME_TYPES

__all__ = ["Check", "FileVerification", "verify_file"]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "failed", "untrusted" or "not-checked"
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class FileVerification:
    path: str
    checks: tuple[Check, ...]
    record_id: int | None
    seed: int | None
    model: str | None
    signer: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "record_id": self.record_id,
            "seed": None if self.seed is None else str(self.seed),
            "model": self.model,
            "signer": self.signer,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
        }


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, ok: bool, detail: str, *, status_if_not: str = "failed") -> bool:
        self.items.append(Check(name, "ok" if ok else status_if_not, detail))
        return ok

    def skip(self, *names: str, because: str) -> None:
        self.items.extend(Check(n, "not-checked", f"not checked: {because}") for n in names)


def _signer_check(checks: _Checks, reading: ManifestReading) -> None:
    who = reading.signer.get("common_name") or reading.signer.get("issuer") or "unknown signer"
    if not reading.trust_checked:
        checks.add(
            "c2pa-signer", False, f"{who}: untrusted (no --trust-anchors given)", status_if_not="untrusted"
        )
    elif reading.state == "Trusted":
        checks.add("c2pa-signer", True, f"{who}: chains to a given trust anchor")
    else:
        codes = ", ".join(c for c in reading.failures if c.startswith("signingCredential")) or reading.state
        checks.add("c2pa-signer", False, f"{who}: untrusted ({codes})", status_if_not="untrusted")


def verify_file(
    path: Path,
    *,
    trust_anchors: str | None = None,
    verifiers: Sequence[Verifier] = (),
    ledger: Ledger | None = None,
) -> FileVerification:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    kind = sniff(data)
    if kind not in MIME_TYPES:
        raise UsageError(f"{path}: verify-file reads PNG, JPEG or WEBP files")
    checks = _Checks()
    later: tuple[str, ...] = ("c2pa-signer", "assertion", "pixels", "log-proof", "assertion-matches-leaf")
    if ledger is not None:
        later = (*later, "ledger-record")
    reading = read_manifest(data, MIME_TYPES[kind], trust_anchors)
    if reading is None:
        checks.add("c2pa-manifest", False, "the file carries no C2PA manifest")
        checks.skip(*later, because="no manifest")
        return FileVerification(str(path), tuple(checks.items), None, None, None, {})
    structural = [c for c in reading.failures if not c.startswith("signingCredential")]
    checks.add(
        "c2pa-manifest",
        reading.state != "Invalid" and not structural,
        "signature and hard binding valid"
        if reading.state != "Invalid" and not structural
        else "C2PA validation failed: " + (", ".join(structural) or reading.state),
    )
    _signer_check(checks, reading)
    try:
        claim = CredentialAssertion.from_data(assertion(reading.manifest, ASSERTION_LABEL))
    except LedgerError as exc:
        checks.add("assertion", False, str(exc))
        checks.skip(*later[2:], because="no readable seedledger assertion")
        return FileVerification(str(path), tuple(checks.items), None, None, None, reading.signer)
    checks.add("assertion", True, f"record {claim.record_id}, seed {claim.seed}, model {claim.model}")
    _pixels(checks, data, claim, ledger)
    _log(checks, claim, verifiers)
    if ledger is not None:
        _ledger(checks, claim, ledger)
    return FileVerification(
        str(path), tuple(checks.items), claim.record_id, claim.seed, claim.model, reading.signer
    )


def _pixels(checks: _Checks, data: bytes, claim: CredentialAssertion, ledger: Ledger | None) -> None:
    try:
        actual = fingerprint_bytes(data).pixel_sha256
    except FingerprintError as exc:
        checks.add("pixels", False, f"the file does not decode: {exc}")
        return
    if actual != claim.pixel_sha256:
        checks.add("pixels", False, "the decoded pixels are not the ones the credential names")
        return
    if ledger is not None:
        try:
            stored = ledger.fingerprint_of(claim.record_id).pixel_sha256
        except LedgerError as exc:
            checks.add("pixels", False, f"cannot compare with the ledger: {exc}")
            return
        if stored != actual:
            checks.add(
                "pixels", False, f"the decoded pixels differ from record {claim.record_id}'s fingerprint"
            )
            return
    checks.add("pixels", True, "decoded pixels match the record's fingerprint")


def _log(checks: _Checks, claim: CredentialAssertion, verifiers: Sequence[Verifier]) -> None:
    if not verifiers:
        checks.add("log-proof", False, "no trusted log key: pass --key or set SEEDLEDGER_VERIFIER_KEY")
        checks.skip("assertion-matches-leaf", because="the proof was not checked")
        return
    try:
        report = verify_proof(dict(claim.proof), verifiers)
    except LedgerError as exc:
        checks.add("log-proof", False, str(exc))
        checks.skip("assertion-matches-leaf", because="the proof does not hold")
        return
    if report.entry_type != "record" or report.entry_id != claim.record_id:
        checks.add(
            "log-proof", False, f"the proof is for {report.entry_type} {report.entry_id}, not this record"
        )
        checks.skip("assertion-matches-leaf", because="the proof is for another entry")
        return
    checks.add(
        "log-proof",
        True,
        f"leaf {report.leaf_index} of {report.tree_size} in {report.origin}, "
        f"checkpoint signed by {report.key}",
    )
    try:
        wrong = claim.leaf_mismatches()
    except LedgerError as exc:
        checks.add("assertion-matches-leaf", False, str(exc))
        return
    checks.add(
        "assertion-matches-leaf",
        not wrong,
        "record, seed, model, scheduler and parameters match the sealed leaf"
        if not wrong
        else "the assertion differs from the sealed leaf in: " + ", ".join(wrong),
    )


def _ledger(checks: _Checks, claim: CredentialAssertion, ledger: Ledger) -> None:
    try:
        current = prove(ledger, claim.record_id)
    except (IntegrityError, LedgerError) as exc:
        checks.add("ledger-record", False, str(exc))
        return
    same = (current["leaf_index"], current["leaf_hash"]) == (claim.leaf_index, claim.proof.get("leaf_hash"))
    checks.add(
        "ledger-record",
        same,
        f"record {claim.record_id} is in this ledger's log at leaf {claim.leaf_index}, unchanged"
        if same
        else f"record {claim.record_id} in this ledger is not the one sealed in the credential",
    )
