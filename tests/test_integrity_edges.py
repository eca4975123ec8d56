"""Integrity at the edges (issue 15): `verify` names the changed column where the ledger
can establish it, and says so where it cannot; `verify --against` on a file that is not
a checkpoint note is bad input (exit 2); `verify-proof` needs a key the caller trusts;
hostile nesting in proofs is a one-line error."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import UsageError
from ledger.integrity import _native
from ledger.integrity.divergence import VerifyReport
from ledger.integrity.note import Signer
from ledger.integrity.proofs import prove, verify_proof
from ledger.integrity.seal import seal
from ledger.integrity.verify import verify
from ledger.store import Ledger
from tests.cli import invoke, seedledger
from tests.factories import new_record, runware_task

ORIGIN = "edges.example/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def _add(ledger: Ledger, n: int) -> list[int]:
    """Records as capture stores them: the request verbatim beside the columns drawn from it."""
    out = []
    for i in range(n):
        task = runware_task(seed=5000 + i, positivePrompt=f"a lighthouse, take {i}", steps=20 + i)
        record = new_record(
            seed=5000 + i, prompt=task["positivePrompt"], steps=task["steps"], cfg_scale=7.5, params=task
        )
        out += ledger.add([record])
    return out


def _sql(ledger: Ledger, statement: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text(statement), params)


def _verify(ledger: Ledger, signer: Signer) -> VerifyReport:
    """Native walker (where built) and the Python path alone give the same report."""
    report = verify(ledger, [signer.verifier])
    assert verify(ledger, [signer.verifier], native=False) == report
    return report


@pytest.mark.parametrize(
    ("column", "assignment"),
    [
        ("prompt", "prompt = 'a lighthouse, take 2, edited'"),
        ("model", "model = 'someone:else@9'"),
        ("seed", "seed = seed + 1"),
        ("steps", "steps = 99"),
        ("cfg_scale", "cfg_scale = 3.25"),
        ("scheduler", "scheduler = NULL"),
    ],
)
def test_verify_names_the_changed_column(
    ledger: Ledger, signer: Signer, column: str, assignment: str
) -> None:
    ids = _add(ledger, 4)
    seal(ledger, signer)
    _sql(ledger, f"UPDATE records SET {assignment} WHERE id = :id", id=ids[2])
    div = _verify(ledger, signer).divergence
    assert div is not None and (div.kind, div.entry_id, div.leaf_index) == ("changed-row", ids[2], 2)
    assert div.columns == (column,)
    assert f"column {column} (sealed value" in div.message()


def test_verify_json_names_the_divergence_for_tools(sqlite_url: str, signer: Signer) -> None:
    with Ledger.open(sqlite_url) as ledger:
        ids = _add(ledger, 3)
        seal(ledger, signer)
        _sql(ledger, "UPDATE records SET prompt = 'edited' WHERE id = :id", id=ids[1])
    run = invoke("--db", sqlite_url, "--json", "verify", "--key", str(signer.verifier))
    assert run.code == 7 and run.err.startswith("seedledger: error: log does not verify: leaf 1")
    out = run.json()
    assert out["ok"] is False and out["divergence"]["columns"] == ["prompt"]
    assert (out["divergence"]["kind"], out["divergence"]["entry_id"]) == ("changed-row", ids[1])


def test_a_change_without_a_witness_is_not_attributed(ledger: Ledger, signer: Signer) -> None:
    ids = _add(ledger, 3)
    seal(ledger, signer)
    value = '{"positivePrompt": "rewritten"}'
    cast = "CAST(:v AS jsonb)" if ledger.dialect == "postgresql" else ":v"
    _sql(ledger, f"UPDATE records SET params = {cast} WHERE id = :id", id=ids[1], v=value)
    div = _verify(ledger, signer).divergence
    assert div is not None and div.kind == "changed-row" and div.columns == ()
    assert "which column changed cannot be established" in div.detail


def test_a_value_not_of_its_type_names_its_column(sqlite_url: str, signer: Signer) -> None:
    with Ledger.open(sqlite_url) as ledger:
        ids = _add(ledger, 3)
        seal(ledger, signer)
        _sql(ledger, "UPDATE records SET negative_prompt = CAST(x'ff41' AS TEXT) WHERE id = :id", id=ids[0])
        div = _verify(ledger, signer).divergence
        assert div is not None and div.columns == ("negative_prompt",) and "is not text" in div.detail
        _sql(ledger, "UPDATE records SET negative_prompt = NULL WHERE id = :id", id=ids[0])
        _sql(ledger, "UPDATE records SET response = 'not json {' WHERE id = :id", id=ids[1])
        div = _verify(ledger, signer).divergence
        assert div is not None and div.entry_id == ids[1] and div.columns == ("response",)
        assert "no longer holds a value of its type" in div.detail


# -- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def sealed(sqlite_url: str, signer: Signer, tmp_path: Path) -> dict[str, Any]:
    with Ledger.open(sqlite_url) as ledger:
        ids = _add(ledger, 3)
        seal(ledger, signer)
        proof = prove(ledger, ids[1])
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof), encoding="utf-8")
    return {"url": sqlite_url, "proof": proof_file, "key": str(signer.verifier), "ids": ids}


def test_verify_against_a_file_that_is_not_a_checkpoint_is_bad_input(
    sealed: dict[str, Any], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.txt"
    for content in ("hello\n", "", "origin\n3\nAAAA\n\n— k x\n", sealed["proof"].read_text()):
        junk.write_text(content, encoding="utf-8")
        call = seedledger if content == "hello\n" else invoke  # one real process, the rest in-process
        run = call("--db", sealed["url"], "verify", "--key", sealed["key"], "--against", str(junk))
        assert run.code == 2, (content, run.err)
        assert run.err.startswith("seedledger: error: the saved checkpoint is not a signed checkpoint note")
        assert len(run.err.strip().splitlines()) == 1


def test_verify_proof_needs_a_trusted_key(sealed: dict[str, Any], tmp_path: Path) -> None:
    proof = str(sealed["proof"])
    run = seedledger("verify-proof", proof)
    assert run.code == 2 and "--key" in run.err and "ok" not in run.out
    assert len(run.err.strip().splitlines()) == 1
    with pytest.raises(UsageError, match="--key"):
        verify_proof(json.loads(sealed["proof"].read_text()))
    # With a trusted key (option or environment) it verifies as before.
    run = invoke("--json", "verify-proof", proof, "--key", sealed["key"])
    assert run.code == 0, run.err
    assert run.json()["ok"] is True and run.json()["key"] == sealed["key"]
    run = invoke("--json", "verify-proof", proof, env={"SEEDLEDGER_VERIFIER_KEY": sealed["key"]})
    assert run.code == 0 and run.json()["leaf_index"] == 1
    other = str(Signer.generate(ORIGIN).verifier)
    assert invoke("verify-proof", proof, "--key", other).code == 7


def test_deeply_nested_json_in_a_proof_is_one_line_bad_input(sealed: dict[str, Any], tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    run = seedledger("verify-proof", str(deep), "--key", sealed["key"])
    assert run.code == 2 and "nests deeper than" in run.err and "Traceback" not in run.err
    assert len(run.err.strip().splitlines()) == 1
    # A leaf inside a well-formed proof that nests too deep: refused, no RecursionError.
    proof = json.loads(sealed["proof"].read_text())
    proof["leaf"] = base64.b64encode(b'{"a":' * 100_000 + b"1" + b"}" * 100_000).decode()
    proof.pop("leaf_hash")
    deep.write_text(json.dumps(proof), encoding="utf-8")
    run = invoke("verify-proof", str(deep), "--key", sealed["key"])
    assert run.code == 7 and "nests deeper than" in run.err and "Traceback" not in run.err


# -- which path ran (issue 22) ---------------------------------------------------------------


def test_verify_and_seal_say_which_path_ran(sqlite_url: str, signer: Signer, tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text(signer.private_key_string(), encoding="utf-8")
    with Ledger.open(sqlite_url) as ledger:
        _add(ledger, 3)
    env = {"SEEDLEDGER_NATIVE": "0", "SEEDLEDGER_SIGNING_KEY": str(key)}
    run = seedledger("--db", sqlite_url, "--json", "seal", env=env)
    assert run.code == 0, run.err
    assert run.json()["path"] == "python" and "SEEDLEDGER_NATIVE=0" in run.json()["path_reason"]
    assert "Python path" in run.err
    run = invoke("--db", sqlite_url, "--json", "verify", "--key", str(signer.verifier), env=env)
    assert run.code == 0, run.err
    assert run.json()["path"] == "python" and "SEEDLEDGER_NATIVE=0" in run.json()["path_reason"]
    assert "leaves verified on the Python path" in run.err
    if not _native.available():  # pragma: no cover - depends on the build
        return
    run = invoke("--db", sqlite_url, "--json", "verify", "--key", str(signer.verifier))
    assert run.code == 0 and run.json()["path"] == "native" and "path_reason" not in run.json()
    assert "Python path" not in run.err
