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
# Pinned like constraints.txt (each SDK and everything it pulls in), so a fresh CI
# clone builds the environments the suite passed with.
SDKS: dict[str, tuple[str, ...]] = {
    # legacy, WebSocket only
    "runware": (
        "runware==0.5.24",
        "websockets==17.4",
        "aiofiles==25.1.0",
        "anyio==4.16.0",
        "certifi==2026.10.19.post1",
        "h11==0.16.0",
        "httpcore==1.0.9",
        "httpx==0.29.0",
        "idna==3.20",
        "python-dotenv==1.2.4",
        "typing_extensions==4.16.0",
    ),
    # new, transport="websocket" by default
    "runware-sdk": (
        "runware-sdk==1.8.0",
        "websockets==17.4",
        "aiohappyeyeballs==2.7.1",
        "aiohttp==3.14.5",
        "aiosignal==1.4.0",
        "attrs==26.1.0",
        "fastjsonschema==2.22.3",
        "frozenlist==1.8.0",
        "idna==3.20",
        "multidict==7.2.1",
        "propcache==0.5.4",
        "typing_extensions==4.16.0",
        "yarl==1.25.1",
    ),
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
