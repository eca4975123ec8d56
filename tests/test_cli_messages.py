"""What the CLI says and how it exits: citations, exit codes, help texts, wording."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

from tests.cli import COMMAND, seedledger
from tests.factories import exchange

ROOT = Path(__file__).resolve().parents[1]
# Documents of the development set-up, not shipped with seedledger.
_UNSHIPPED = re.compile(r"\breference/[\w-]+\.md\b")


def _printed_strings(path: Path) -> list[str]:
    """String constants of a module that are not docstrings (what can reach a user)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_nothing_the_product_prints_cites_an_unshipped_document() -> None:
    cited = [
        f"{path.relative_to(ROOT)}: {text[:80]!r}"
        for path in sorted((ROOT / "ledger").rglob("*.py"))
        for text in _printed_strings(path)
        if _UNSHIPPED.search(text)
    ]
    assert not cited, cited


def test_seedless_warning_cites_a_public_source(sqlite_url: str) -> None:
    seedless = exchange(5, model="openai:gpt-image@1")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(seedless)).code == 0
    done = seedledger("--db", sqlite_url, "--json", "check")
    assert done.code == 0, done.err
    [row, _counts] = done.json_lines()
    [warning] = [w for w in row["warnings"] if w["code"] == "seedless-model"]
    text = json.dumps(warning)
    assert "https://schemas.runware.ai" in text
    assert not _UNSHIPPED.search(done.out + done.err)


def test_closed_pipe_ends_quietly(sqlite_url: str) -> None:
    lines = "\n".join(json.dumps(exchange(seed, positivePrompt="x" * 2000)) for seed in range(1, 201))
    assert seedledger("--db", sqlite_url, "record", "-", input=lines).code == 0
    done = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -c 10 >/dev/null', "pipe", *COMMAND,
         "--db", sqlite_url, "--json", "list", "--limit", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as `yes | head` ends
