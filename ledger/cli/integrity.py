"""`seedledger seal | keys | verify | checkpoint | prove | verify-proof`: the tamper-evident log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ledger.cli.app import app, emit_json, emit_mapping, info, main
from ledger.cli.progress import ProgressLine
from ledger.errors import InvalidInputError, UsageError
from ledger.integrity import note as notes
from ledger.integrity._input import load_json
from ledger.integrity.proofs import prove, verify_proof
from ledger.integrity.seal import DEFAULT_BATCH_SIZE, latest_checkpoint, seal
from ledger.integrity.verify import verify

_KEY_FILE = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Private signing key file [default: env {notes.ENV_SIGNING_KEY}].",
)
_VERIFIER_KEYS = click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VERIFIER",
    help=f"Trusted public key (name+id+base64) or a file of them; repeatable "
    f"[also env {notes.ENV_VERIFIER_KEY}, and the signing key's own public key].",
)


def _verifiers(keys: tuple[str, ...], key_file: Path | None) -> list[notes.Verifier]:
    signer = notes.load_signer(key_file)
    verifiers = notes.load_verifiers(keys, signer=signer)
    if not verifiers:
        raise UsageError(
            f"no public key to check signatures with: pass --key VERIFIER or set {notes.ENV_VERIFIER_KEY}"
        )
    return verifiers


@main.command("seal")
@_KEY_FILE
@click.option("--origin", help="Checkpoint origin line [default: the log's, or the key name].")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True)
def seal_command(key_file: Path | None, origin: str | None, batch_size: int) -> None:
    """Append unsealed records to the Merkle log and sign one checkpoint."""
    ctx = app()
    signer = notes.require_signer(key_file)
    result = seal(ctx.ledger(), signer, origin=origin, batch_size=batch_size)
    cp = result.checkpoint
    emit_mapping(
        {
            "sealed": result.sealed,
            "size": result.size,
            "root": result.root.hex(),
            "checkpoint": "new" if result.new_checkpoint else "unchanged",
            "origin": cp.origin if cp else None,
            "key_id": cp.key_id if cp else None,
            "path": result.path,
            **({"path_reason": result.path_reason} if result.path_reason else {}),
        },
        as_json=ctx.json,
    )
    if result.path_reason:
        info(f"rows hashed on the Python path (slower): {result.path_reason}")


@main.group()
def keys() -> None:
    """Ed25519 signing keys for checkpoints (Go note key format)."""


@keys.command("generate")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Private key file."
)
@click.option("--name", default=notes.DEFAULT_KEY_NAME, show_default=True, help="Key name (the log origin).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def keys_generate(out: Path, name: str, force: bool) -> None:
    """Write a new private key to --out (mode 0600) and FILE.pub; print the public key."""
    signer = notes.Signer.generate(name)
    notes.write_private_key(out, signer, force=force)
    verifier = str(signer.verifier)
    pub = out.with_name(out.name + ".pub")
    pub.write_text(verifier + "\n", encoding="utf-8")
    info(f"private key written to {out} (mode 0600); public key to {pub}")
    if app().json:
        emit_json({"verifier": verifier, "key_id": signer.verifier.key_id_hex, "name": name})
    else:
        click.echo(verifier)


@keys.command("public")
@_KEY_FILE
def keys_public(key_file: Path | None) -> None:
    """Print the public (verifier) key of the signing key."""
    signer = notes.require_signer(key_file)
    if app().json:
        verifier = signer.verifier
        emit_json({"verifier": str(verifier), "key_id": verifier.key_id_hex, "name": signer.name})
    else:
        click.echo(str(signer.verifier))


@main.command("verify")
@click.option(
    "--against",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A checkpoint saved earlier (`seedledger checkpoint --out`): the log must extend it.",
)
@_VERIFIER_KEYS
@_KEY_FILE
def verify_command(against: Path | None, keys: tuple[str, ...], key_file: Path | None) -> None:
    """Recompute every leaf and root from the stored rows and check every checkpoint."""
    ctx = app()
    verifiers = _verifiers(keys, key_file)
    saved = _read_text(against) if against else None
    # Off a terminal each update is a line of its own, as logs of long verifies want.
    with ProgressLine("verified", lines=True) as line:
        report = verify(ctx.ledger(), verifiers, against=saved, progress=lambda n: line.show(f"{n} leaves"))
    d = report.divergence
    if d is not None and ctx.json:
        # the same first divergence for tools, on stdout, before the one-line error and exit 7
        emit_json(
            {
                "ok": False,
                "divergence": {
                    "kind": d.kind,
                    "leaf_index": d.leaf_index,
                    "entry_type": d.entry_type,
                    "entry_id": d.entry_id,
                    "columns": list(d.columns),
                    "message": d.message(),
                },
                "path": report.path,
            }
        )
    report.raise_for_divergence()
    emit_mapping(
        {
            "ok": True,
            "size": report.size,
            "root": report.root.hex(),
            "checkpoints": report.checkpoints,
            "latest_checkpoint": report.latest_checkpoint,
            "unsigned_leaves": report.unsigned,
            "entries": report.entries,
            "path": report.path,
            **({"path_reason": report.path_reason} if report.path_reason else {}),
            **({"against": report.against} if report.against else {}),
        },
        as_json=ctx.json,
    )
    if report.path_reason:
        info(f"leaves verified on the Python path (slower): {report.path_reason}")
    if report.unsigned:
        info(f"{report.unsigned} leaves are sealed but not yet in a checkpoint; run `seedledger seal`")


@main.command("checkpoint")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write it to this file.")
def checkpoint_command(out: Path | None) -> None:
    """Print the latest signed checkpoint (keep a copy outside the database)."""
    ctx = app()
    ledger = ctx.ledger()
    with ledger.reading() as conn:
        cp = latest_checkpoint(conn)
    if cp is None:
        raise UsageError("the log has no checkpoint yet; run `seedledger seal`")
    if out is not None:
        out.write_text(cp.note, encoding="utf-8")
    if ctx.json:
        emit_json(
            {
                "size": cp.size,
                "root": cp.root.hex(),
                "origin": cp.origin,
                "key_id": cp.key_id,
                "verifier": cp.verifier,
                "note": cp.note,
            }
        )
    else:
        click.echo(cp.note, nl=False)


@main.command("prove")
@click.argument("record_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the proof here.")
@click.option("--entry-type", default="record", show_default=True, help="Log entry type.")
def prove_command(record_id: int, out: Path | None, entry_type: str) -> None:
    """Export an inclusion proof (JSON) of one record against the latest checkpoint."""
    ctx = app()
    proof = prove(ctx.ledger(), record_id, entry_type=entry_type)
    text = json.dumps(proof, indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        out.write_text(text, encoding="utf-8")
        info(
            f"proof of {entry_type} {record_id} (leaf {proof['leaf_index']}, "
            f"size {proof['tree_size']}) written to {out}"
        )
    else:
        click.echo(text, nl=False)


@main.command("verify-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_VERIFIER_KEYS
def verify_proof_command(proof_file: Path, keys: tuple[str, ...]) -> None:
    """Check an inclusion proof offline (no database) against a key you trust (--key)."""
    ctx = app()
    data: Any = load_json(_read_text(proof_file), str(proof_file))
    report = verify_proof(data, notes.load_verifiers(keys))
    row = report.row
    emit_mapping(
        {
            "ok": True,
            "entry": f"{report.entry_type} {report.entry_id}",
            "leaf_index": report.leaf_index,
            "tree_size": report.tree_size,
            "origin": report.origin,
            "root": report.root.hex(),
            "key": report.key,
            **{k: row[k] for k in ("model", "seed", "created_at") if k in row},
        },
        as_json=ctx.json,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InvalidInputError(f"cannot read {path} as UTF-8 text") from None


# `keys c2pa-test-cert` lives with the other credential commands.
from ledger.cli import credentials as _credentials  # noqa: E402, F401
