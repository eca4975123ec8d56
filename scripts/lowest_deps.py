"""Run a fast subset of the suite with every direct dependency at its floor.

The lower bounds in pyproject.toml are promises nobody tests otherwise. This builds a
throw-away venv where each direct dependency (the project's and the ``test`` extra's)
is pinned at its ``>=`` bound, lets pip resolve the rest, and runs a few core test
files against this tree (imported through PYTHONPATH, so the native walker already
built in ledger/integrity is the one under test).

    python scripts/lowest_deps.py [--keep DIR] [pytest args...]

It downloads from PyPI (about a minute on a warm cache); exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_store.py",
    "tests/test_seeds.py",
    "tests/test_fingerprint.py",
    "tests/test_merkle.py",
    "tests/test_cli_records.py",
]
# The diffusers stack's floors are its tested (locked) versions: its older releases do not
# install beside the core floors (see pyproject.toml), so it is left out of this run.
AT_LOCK = {"torch", "diffusers", "transformers", "safetensors"}


def floor_pins(pyproject: Path) -> list[str]:
    """'name[extras]==floor' for each direct dependency; an error for one without a floor."""
    meta = tomllib.loads(pyproject.read_text())["project"]
    pins: dict[str, str] = {}
    for line in [*meta["dependencies"], *meta["optional-dependencies"]["test"]]:
        req = Requirement(line)
        floors = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if not floors:
            raise SystemExit(f"lowest_deps: {req.name} has no lower bound in pyproject.toml")
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        if req.name.lower() in AT_LOCK:
            continue
        pins[req.name.lower()] = f"{req.name}{extras}=={floors[0]}"
    return sorted(pins.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it")
    args, pytest_args = parser.parse_known_args()
    pins = floor_pins(ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="seedledger-lowest-") as tmp:
        env_dir = args.keep or Path(tmp) / "venv"
        if not (env_dir / "bin" / "python").exists():
            venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")
        print("lowest_deps: installing", " ".join(pins), flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *pins], check=True)
        subprocess.run([python, "-m", "pip", "check"], check=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *pytest_args]
        return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
