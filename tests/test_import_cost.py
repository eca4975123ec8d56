"""Library imports and CLI start-up do not pull in the heavy stacks they do not use."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("starlette", "uvicorn", "numpy", "PIL", "scipy")


@pytest.mark.parametrize("module", ["ledger.backends", "ledger.cli"])
def test_import_is_light(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_lazy_names_still_resolve() -> None:
    from ledger.backends import ReferenceGenerator, ReferenceServer

    assert ReferenceServer.__module__ == "ledger.backends.reference.server"
    assert ReferenceGenerator.__module__ == "ledger.backends.reference.generator"


def test_opening_a_ledger_does_not_import_alembic(sqlite_url: str) -> None:
    """Alembic (and Mako) load only to migrate: opening a ledger at head reads the version
    table with plain SQL (about 0.1 s of every CLI start-up)."""
    code = (
        "import sys\nfrom ledger.store import Ledger\n"
        f"Ledger.open({sqlite_url!r}).close()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
