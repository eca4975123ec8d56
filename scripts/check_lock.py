"""Fail when the running venv holds a distribution constraints.txt does not pin at its version.

constraints.txt is the lock of what runs: `make test` calls this right after installing,
so a new dependency (direct or transitive) cannot land unpinned.

    python scripts/check_lock.py [constraints.txt]
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SELF = "seedledger"


def pins(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
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
    for problem in sorted(set(problems)):
        print(f"check_lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
