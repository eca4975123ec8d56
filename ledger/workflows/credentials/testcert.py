"""A throwaway CA and signing certificate for trying C2PA signing out.

C2PA refuses self-signed leaf certificates: the leaf must be issued by a CA, name an
Organization, allow digitalSignature, carry an extended key usage C2PA accepts
(emailProtection here) and subject/authority key identifiers. This makes exactly
that, labelled in every subject as UNTRUSTED TEST material: a verifier trusts it only
when given ``ca.pem`` as a trust anchor.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.core.files import atomic_write
from ledger.errors import UsageError

__all__ = ["TestCertificates", "make_test_certificates"]

_ORG = "seedledger UNTRUSTED TEST"


@dataclass(frozen=True)
class TestCertificates:
    ca: Path  # the trust anchor to hand to verify-file --trust-anchors
    chain: Path  # leaf + CA, for stamp --c2pa-cert
    key: Path  # the leaf's private key, for stamp --c2pa-key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
        ]
    )


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_test_certificates(out: Path, *, days: int = 90, force: bool = False) -> TestCertificates:
    """Write ``ca.pem``, ``chain.pem`` and ``key.pem`` (0600) into ``out``."""
    paths = TestCertificates(out / "ca.pem", out / "chain.pem", out / "key.pem")
    existing = [p for p in (paths.ca, paths.chain, paths.key) if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; pass --force to replace the test certificates")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("seedledger test CA (untrusted)"))
        .issuer_name(_name("seedledger test CA (untrusted)"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("seedledger test signer (untrusted)"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        atomic_write(paths.ca, _pem(ca))
        atomic_write(paths.chain, _pem(leaf) + _pem(ca))
        atomic_write(paths.key, key_pem)  # mkstemp: 0600
    except OSError as exc:
        raise UsageError(f"cannot write the test certificates into {out}: {exc.strerror or exc}") from None
    return paths
