"""setup.py says so when the optional native walker cannot be built (issue 22).

Real builds with setuptools and gcc into a temporary directory: one with no compiler,
one where the compiler cannot see sqlite3.h (a system root that lacks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("CC", "SEEDLEDGER_REQUIRE_NATIVE")}
    full_env.update(env)
    out = tmp_path / "out"
    return subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(out / "lib"),
            "--build-temp",
            str(out / "tmp"),
        ],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _built(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "out").rglob("_leafwalk*.so"))


def test_no_compiler_is_named_and_the_install_goes_on(tmp_path: Path) -> None:
    done = _build(tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert done.returncode == 0, done.stderr
    assert "native leaf walker (ledger.integrity._leafwalk) was not built: no C compiler" in done.stderr
    assert "15x slower" in done.stderr
    assert _built(tmp_path) == []


def test_required_native_build_fails_without_a_compiler(tmp_path: Path) -> None:
    done = _build(tmp_path, CC=str(tmp_path / "no-such-cc"), SEEDLEDGER_REQUIRE_NATIVE="1")
    assert done.returncode != 0
    assert "SEEDLEDGER_REQUIRE_NATIVE=1" in done.stderr


def test_missing_sqlite_header_is_named(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/sqlite3.h").exists():
        pytest.fail("needs gcc and libsqlite3-dev (scripts/install-build-deps.sh installs them)")
    root = tmp_path / "sysroot"
    (root / "usr").mkdir(parents=True)
    # the system headers as symlinks, all but sqlite3.h
    subprocess.run(["cp", "-rs", "/usr/include", str(root / "usr" / "include")], check=True)
    (root / "usr" / "include" / "sqlite3.h").unlink()
    done = _build(tmp_path, CC=f"{gcc} --sysroot={root}")
    assert done.returncode == 0, done.stderr
    assert "was not built: sqlite3.h is missing (Debian: libsqlite3-dev)" in done.stderr
    assert _built(tmp_path) == []
