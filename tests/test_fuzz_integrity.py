"""Fuzzing the files an outside auditor hands back: inclusion proofs and checkpoints.

A real proof and a real signed checkpoint are mutated (fields replaced, removed or
retyped; characters of the base64 leaf, hex path and note changed; lines added or
dropped; raw bytes damaged). `verify_proof` and `open_checkpoint` must refuse with an
IntegrityError/UsageError — or accept only what is semantically the original (the same
entry, row, size and root). `seedledger verify-proof` and `seedledger verify --against`
must exit 0, 2 or 7 with a one-line message, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.cli import main
from ledger.errors import LedgerError
from ledger.integrity.note import Signer, open_checkpoint
from ledger.integrity.proofs import prove, verify_proof
from ledger.integrity.seal import seal
from ledger.store import Ledger
from tests.factories import new_record

_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_ALPHABET = "0123456789abcdefABCDEF+/=\n —.:-x\x00é"


class Log:
    def __init__(self, root: Path) -> None:
        self.url = f"sqlite:///{root / 'log.db'}"
        self.signer = Signer.generate("fuzz.example/log")
        self.verifier = str(self.signer.verifier)
        with Ledger.open(self.url) as ledger:
            ids = ledger.add([new_record(seed=i, prompt=f"p{i}") for i in range(7)])
            seal(ledger, self.signer)
            self.proof: dict[str, Any] = json.loads(json.dumps(prove(ledger, ids[3])))
        self.original = verify_proof(self.proof, [self.signer.verifier])
        self.note: str = self.proof["checkpoint"]
        self.root = root


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    yield Log(tmp_path_factory.mktemp("fuzz-integrity"))


@st.composite
def edited_text(draw: st.DrawFn, text: str) -> str:
    """A few character edits: replace, insert or delete."""
    out = list(text)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "delete" and out:
            del out[i]
        elif op == "insert":
            out.insert(i, draw(st.sampled_from(_ALPHABET)))
        elif out:
            out[i] = draw(st.sampled_from(_ALPHABET))
    return "".join(out)


@st.composite
def mutated_proofs(draw: st.DrawFn, proof: dict[str, Any]) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(_JSON)
    mutated = json.loads(json.dumps(proof))
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from([*sorted(proof), "extra"]))
        how = draw(st.sampled_from(["value", "delete", "edit"]))
        current = mutated.get(field)
        if how == "delete":
            mutated.pop(field, None)
        elif how == "edit" and isinstance(current, str):
            mutated[field] = draw(edited_text(current))
        elif how == "edit" and isinstance(current, list):
            path = list(current)
            choice = draw(st.sampled_from(["drop", "add", "swap", "edit"]))
            if choice == "drop" and path:
                path.pop(draw(st.integers(0, len(path) - 1)))
            elif choice == "add":
                path.append(draw(st.sampled_from(["00" * 32, path[0] if path else "", "zz", 7])))
            elif choice == "swap" and len(path) > 1:
                path[0], path[1] = path[1], path[0]
            elif path:
                path[0] = draw(edited_text(path[0]))
            mutated[field] = path
        elif how == "edit" and isinstance(current, int):
            mutated[field] = current + draw(st.sampled_from([-1, 1, 2**63, -(2**64)]))
        else:
            mutated[field] = draw(_JSON)
    return mutated


def _one_line(exc: LedgerError) -> None:
    assert exc.message.strip() and "\n" not in exc.message.strip(), exc.message


def test_verify_proof_refuses_or_accepts_only_the_original(log: Log) -> None:
    @settings(max_examples=300)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        candidate = data.draw(mutated_proofs(log.proof))
        try:
            report = verify_proof(candidate, [log.signer.verifier])
        except LedgerError as exc:
            assert exc.exit_code in (2, 7), exc
            _one_line(exc)
            return
        assert (report.entry_id, report.leaf_index, report.tree_size) == (
            log.original.entry_id,
            log.original.leaf_index,
            log.original.tree_size,
        )
        assert report.row == log.original.row

    run()


def test_open_checkpoint_refuses_or_reads_the_same_state(log: Log) -> None:
    original, _ = open_checkpoint(log.note, [log.signer.verifier])

    @settings(max_examples=300)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        note = data.draw(edited_text(log.note) | st.text(max_size=200))
        try:
            checkpoint, _ = open_checkpoint(note, [log.signer.verifier])
        except LedgerError as exc:
            _one_line(exc)
            return
        assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (
            original.origin,
            original.size,
            original.root,
        )

    run()


def _cli(*args: str) -> Any:
    env = {"SEEDLEDGER_DATABASE_URL": None, "SEEDLEDGER_SIGNING_KEY": None, "SEEDLEDGER_VERIFIER_KEY": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)


def _clean_exit(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2, 7), (result.exit_code, result.output)
    if result.exit_code:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr


def test_cli_verify_proof_on_hostile_files(log: Log) -> None:
    target = log.root / "proof.json"

    @settings(max_examples=120)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        if data.draw(st.integers(0, 5)) == 0:
            blob = bytearray(json.dumps(log.proof).encode())
            for _ in range(data.draw(st.integers(1, 6))):
                blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
            target.write_bytes(bytes(blob))
        else:
            target.write_text(json.dumps(data.draw(mutated_proofs(log.proof))))
        _clean_exit(_cli("verify-proof", str(target), "--key", log.verifier))
        unkeyed = _cli("--json", "verify-proof", str(target))  # never the key inside the file
        _clean_exit(unkeyed)
        assert unkeyed.exit_code == 2, unkeyed.output

    run()


def test_cli_verify_against_hostile_checkpoints(log: Log) -> None:
    target = log.root / "saved.txt"

    @settings(max_examples=40)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        target.write_text(data.draw(edited_text(log.note) | st.text(max_size=200)))
        _clean_exit(_cli("--db", log.url, "verify", "--key", log.verifier, "--against", str(target)))

    run()
