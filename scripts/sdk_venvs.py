"""Build (once) the virtual environments of the two official Runware Python SDKs.

Both SDKs install the module ``runware``, so each gets its own venv under
``.cache/sdk-venvs/<name>`` (gitignored), reused while its pinned versions match.
The WebSocket tests drive them unchanged through ``seedledger proxy``:

    python scripts/sdk_venvs.py            # build both, print their interpreters
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "sdk-venvs"
# Pinned like constraints.txt: the SDKs and the websockets library they run on.
SDKS: dict[str, tuple[str, ...]] = {
    "runware": ("runware==0.5.24", "websockets==17.4"),  # legacy, WebSocket only
    "runware-sdk": ("runware-sdk==1.8.0", "websockets==17.4"),  # new, transport="websocket" default
}


def python_of(name: str) -> Path:
    return CACHE / name / "bin" / "python"


def build(name: str) -> Path:
    """The venv's interpreter, creating the venv first when missing or outdated."""
    pins = SDKS[name]
    home = CACHE / name
    marker = home / ".seedledger-pins"
    wanted = "\n".join(pins)
    if marker.exists() and marker.read_text() == wanted and python_of(name).exists():
        return python_of(name)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
    subprocess.run(
        [str(python_of(name)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        check=True,
        timeout=600,
    )
    marker.write_text(wanted)
    return python_of(name)


def main() -> None:
    for name in SDKS:
        print(f"{name}: {build(name)}")


if __name__ == "__main__":
    main()
