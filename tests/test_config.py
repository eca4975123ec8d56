"""ledger/config.py declares every SEEDLEDGER_* variable; nothing else reads one."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from ledger import config
from ledger.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"SEEDLEDGER_[A-Z0-9_]+")


def _environ_keys(tree: ast.AST) -> list[ast.expr]:
    """The key expressions of every os.environ[...] / .get(...) / getenv(...) read."""
    keys: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "environ":
                keys.append(node.slice)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = node.func.value
            if node.func.attr == "getenv" or (
                node.func.attr in ("get", "pop", "setdefault")
                and isinstance(owner, ast.Attribute)
                and owner.attr == "environ"
            ):
                keys.append(node.args[0])
    return keys


def test_no_seedledger_variable_is_read_outside_config() -> None:
    offenders: list[str] = []
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel == Path("ledger/config.py"):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        # a name spelled out anywhere but config.py (ENV_X = "SEEDLEDGER_X", envvar="…")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                offenders.append(f"{rel}:{node.lineno} spells {node.value}")
        # an environment read whose key (a module constant) is a SEEDLEDGER_ name
        for key in _environ_keys(tree):
            value = key.value if isinstance(key, ast.Constant) else None
            if isinstance(key, ast.Name):
                value = getattr(importlib.import_module(module), key.id, None)
            if isinstance(value, str) and value.startswith("SEEDLEDGER_"):
                offenders.append(f"{rel}:{key.lineno} reads {value} itself")
    assert offenders == []


def test_every_variable_is_declared_once_and_documented() -> None:
    names = [v.name for v in config.VARIABLES]
    assert len(names) == len(set(names))
    declared = {v.name for v in vars(config).values() if isinstance(v, config.Variable)}
    assert declared == set(names)  # nothing declared outside VARIABLES
    docs = (ROOT / "README.md").read_text("utf-8") + "".join(
        p.read_text("utf-8") for p in sorted((ROOT / "docs").glob("*.md"))
    )
    assert [n for n in names if not re.search(rf"\b{n}\b", docs)] == []
    table = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    missing = [
        v for v in config.VARIABLES if f"| `{v.name}` | {v.kind} | {v.default} | {v.doc} |" not in table
    ]
    assert missing == []


def test_every_name_used_in_the_tree_is_declared() -> None:
    used: set[str] = set()
    for path in (ROOT / "ledger").rglob("*.py"):
        used |= set(NAME.findall(path.read_text("utf-8")))
    assert (
        used
        - {v.name for v in config.VARIABLES}
        - {"SEEDLEDGER_NS", "SEEDLEDGER_REQUIRE_NATIVE", "SEEDLEDGER_TEST_PG_URL"}
        == set()
    )


def test_typed_accessors() -> None:
    env = {config.NATIVE.name: " 0 ", config.NATIVE_THREADS.name: "x", config.SPOOL.name: "~/spool"}
    assert config.NATIVE.flag(env) is False and config.NATIVE.flag({}) is True
    assert config.NATIVE_THREADS.count(env, strict=False) is None
    with pytest.raises(UsageError, match="SEEDLEDGER_NATIVE_THREADS must be a positive whole number"):
        config.NATIVE_THREADS.count(env)
    assert config.DIFFUSERS_THREADS.count({config.DIFFUSERS_THREADS.name: "3"}) == 3
    assert config.SPOOL.path(env) == Path("~/spool").expanduser()
    assert config.DATABASE_URL.raw({config.DATABASE_URL.name: "  "}) is None


def test_config_imports_nothing_above_core() -> None:
    tree = ast.parse((ROOT / "ledger" / "config.py").read_text("utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in imported if m and m.startswith("ledger")} <= {"ledger.errors"}
