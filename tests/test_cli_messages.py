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


def _png(path: Path, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 64), colour).save(path, format="PNG")
    return path


def test_a_missing_image_file_is_a_usage_error(sqlite_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.png"
    for args in (("find", str(missing)), ("fingerprint", "1", str(missing))):
        done = seedledger("--db", sqlite_url, *args)
        assert done.code == 2, (args, done.err)
        assert str(missing) in done.err and "does not exist" in done.err


def test_audit_without_a_key_names_the_variable_and_the_option(sqlite_url: str, tmp_path: Path) -> None:
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(exchange(11))).code == 0
    assert seedledger("--db", sqlite_url, "fingerprint", "1", str(_png(tmp_path / "a.png"))).code == 0
    done = seedledger("--db", sqlite_url, "audit")
    assert done.code == 2
    assert "RUNWARE_API_KEY" in done.err and "--replay-backend" in done.err
    assert "api_key" not in done.err
    runs = seedledger("--db", sqlite_url, "--json", "audit", "list")
    assert runs.json_lines() == []  # refused before a run was created
    dry = seedledger("--db", sqlite_url, "audit", "--dry-run")
    assert dry.code == 0, dry.err
    assert "warning: the real run would fail" in dry.err and "RUNWARE_API_KEY" in dry.err
    with_key = seedledger("--db", sqlite_url, "audit", "--dry-run", env={"RUNWARE_API_KEY": "k"})
    assert "would fail" not in with_key.err


def test_help_texts_say_what_the_options_do() -> None:
    audit_help = seedledger("audit", "--help").out
    sweep_help = seedledger("sweep", "--help").out
    assert "required for reference" not in audit_help + sweep_help
    assert "in-processreferenceserver" in "".join(audit_help.split())
    server_help = seedledger("reference-server", "--help").out
    assert "--url" not in server_help.replace("--backend-url", "")
    assert "default: 8931" in server_help  # the README's proxy listens on 8787


def test_small_wordings_are_consistent(sqlite_url: str, tmp_path: Path) -> None:
    seedless = exchange(5, model="openai:gpt-image@1")
    assert seedledger("--db", sqlite_url, "record", "-", input=json.dumps(seedless)).code == 0
    report = seedledger("--db", sqlite_url, "report", "--format", "html", "--out", str(tmp_path / "r.html"))
    assert "wrote an HTML report" in report.err, report.err
    # check: a severity column, the worst warning of each record.
    checked = seedledger("--db", sqlite_url, "check")
    header, row = checked.out.splitlines()[:2]
    assert header.split()[:2] == ["RECORD_ID", "SEVERITY"]
    rows = seedledger("--db", sqlite_url, "--json", "check").json_lines()[0]["warnings"]
    worst = max(rows, key=lambda w: ["info", "warning", "error"].index(w["severity"]))["severity"]
    assert row.split()[:2] == ["1", worst]
    # compare: equal thumbnails print as `inf`, as in `find` and `audit show`.
    image = _png(tmp_path / "same.png")
    same = seedledger("compare", str(image), str(image))
    assert re.search(r"^thumb_psnr_db\s+inf$", same.out, re.M), same.out
    # keys public --json prints JSON.
    key = tmp_path / "k.key"
    assert seedledger("keys", "generate", "--out", str(key), "--name", "example.org/log").code == 0
    public = seedledger("--json", "keys", "public", "--key-file", str(key))
    assert public.code == 0, public.err
    data = public.json()
    assert data["name"] == "example.org/log"
    assert data["verifier"] == (tmp_path / "k.key.pub").read_text().strip()
