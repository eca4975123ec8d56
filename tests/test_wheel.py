"""The built wheel carries its migrations and the native verify walker: an installed
package creates and upgrades a database in a directory outside the repository."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ledger.integrity import _native
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_migrates_outside_the_repo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("seedledger-*.whl")
    with zipfile.ZipFile(wheel) as archive:  # PEP 561: type checkers trust an installed ledger
        assert "ledger/py.typed" in archive.namelist()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = env_dir / "bin" / "seedledger"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], cwd=work, capture_output=True, text=True, timeout=120, check=False
        )

    assert run("--db", "fresh.db", "db", "upgrade").returncode == 0
    current = run("--db", "fresh.db", "--json", "db", "current")
    assert current.returncode == 0, current.stderr
    state = json.loads(current.stdout)
    assert state["up_to_date"] is True
    # The installed package, not the repository checkout, did the work.
    where = subprocess.run(
        [str(python), "-c", "import ledger; print(ledger.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(ROOT) not in where.stdout
    assert (work / "fresh.db").exists()
    # The wheel carries the native verify walker when the build machine has its headers
    # (this one must: scripts/install-build-deps.sh), and it runs against that database.
    native = subprocess.run(
        [
            str(python),
            "-c",
            "from ledger.integrity import _native; from ledger.store import Ledger; "
            "led = Ledger.open('fresh.db'); conn = led.engine.connect(); "
            "print(_native.available(), _native.open_walker(conn, []) is not None)",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    if IN_CI or _native.available():
        assert native.stdout.split() == ["True", "True"], native.stdout + native.stderr
