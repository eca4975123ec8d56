"""`seedledger verify-file` and `keys c2pa-test-cert`: Content Credentials.

`stamp --c2pa-cert/--c2pa-key` (in ``workflows.py``) signs them.
"""

from __future__ import annotations

from pathlib import Path

import click

from ledger.cli.app import app, emit_json, info, main, sanitize
from ledger.cli.integrity import keys
from ledger.errors import IntegrityError, UsageError
from ledger.integrity import note as notes

__all__ = ["keys_c2pa_test_cert", "verify_file_command"]


@main.command("verify-file")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust-anchors",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file of the CA certificates you trust to sign C2PA manifests "
    "(without it the signer is reported untrusted).",
)
@click.option(
    "--key",
    "keys_",
    multiple=True,
    metavar="VERIFIER",
    help=f"Trusted public key of the log (name+id+base64) or a file of them; repeatable "
    f"[also env {notes.ENV_VERIFIER_KEY}].",
)
def verify_file_command(file: Path, trust_anchors: Path | None, keys_: tuple[str, ...]) -> None:
    """Check FILE's Content Credential: the C2PA manifest and its signer, the pixels,
    the inclusion proof under a trusted log key, and (with --db) the record in the
    ledger. Exit 0 only when every check holds; 7 names the checks that failed."""
    from ledger.workflows.credentials import verify_file

    ctx = app()
    anchors = None
    if trust_anchors is not None:
        try:
            anchors = trust_anchors.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise UsageError(f"cannot read {trust_anchors} as a PEM file") from None
        if "-----BEGIN CERTIFICATE-----" not in anchors:
            raise UsageError(f"{trust_anchors} holds no PEM certificate")
    result = verify_file(
        file,
        trust_anchors=anchors,
        verifiers=notes.load_verifiers(keys_),
        ledger=ctx.ledger() if ctx.db_url is not None else None,
    )
    if ctx.json:
        emit_json(result.to_json())
    else:
        width = max(len(c.name) for c in result.checks)
        for check in result.checks:
            click.echo(f"{check.status.upper():<11} {check.name:<{width}}  {sanitize(check.detail)}")
    if not result.ok:
        names = ", ".join(f"{c.name} ({c.status})" for c in result.failed())
        raise IntegrityError(f"{file}: credential not verified: {names}")
    info(f"{file}: every check holds (record {result.record_id})")


@keys.command("c2pa-test-cert")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory to write."
)
@click.option(
    "--days", type=click.IntRange(1, 3650), default=90, show_default=True, help="Validity of the leaf."
)
@click.option("--force", is_flag=True, help="Replace existing files.")
def keys_c2pa_test_cert(out: Path, days: int, force: bool) -> None:
    """Make an UNTRUSTED test CA and C2PA signing certificate (ca.pem, chain.pem, key.pem)
    for trying `stamp --c2pa-cert chain.pem --c2pa-key key.pem`; verify with
    `verify-file --trust-anchors ca.pem`. Not for production: use a certificate from a
    CA your verifiers trust."""
    from ledger.workflows.credentials import make_test_certificates

    made = make_test_certificates(out, days=days, force=force)
    ctx = app()
    data = {"ca": str(made.ca), "chain": str(made.chain), "key": str(made.key), "trusted": False}
    if ctx.json:
        emit_json(data)
    else:
        for name in ("ca", "chain", "key"):
            click.echo(f"{name}\t{data[name]}")
    info("UNTRUSTED TEST MATERIAL: anyone can make such a certificate; do not ship files signed with it")
