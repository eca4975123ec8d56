"""Fail when the running venv holds a distribution constraints.txt does not pin at its version,
or when the hashed locks (requirements*.lock, scripts/lock.py) pin another version.

constraints.txt is the lock of what runs: `make test` calls this right after installing,
so a new dependency (direct or transitive) cannot land unpinned, and a constraints.txt
changed without `python scripts/lock.py` cannot pass for installed.

    python scripts/check_lock.py [constraints.txt]
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SELF = "seedledger"


def pins(path: Path, *, hashed: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if hashed:  # "name==version \" lines, then "--hash=…" lines
            line = "" if line.startswith("--") else line.rstrip("\\").strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def main() -> int:
    lock = pins(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "constraints.txt")
    problems = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        version = dist.version.split("+", 1)[0]  # torch 2.13.0+cpu is pinned as 2.13.0
        if name == SELF:
            continue
        if name not in lock:
            problems.append(f"{name} {dist.version} is installed but not pinned")
        elif lock[name] != version:
            problems.append(f"{name} {dist.version} is installed, constraints.txt pins {lock[name]}")
    for lock_file in sorted(ROOT.glob("requirements*.lock")):
        hashed = pins(lock_file, hashed=True)
        for name, version in hashed.items():
            if lock.get(name) != version.split("+", 1)[0]:
                problems.append(f"{lock_file.name} pins {name} {version}, constraints.txt {lock.get(name)}")
        if lock_file.name == "requirements.lock":  # the test lock holds everything
            problems += [f"{name} is not in requirements.lock" for name in lock if name not in hashed]
    for problem in sorted(set(problems)):
        print(f"check_lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
