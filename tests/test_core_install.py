"""The core install (no ``media`` extra: `make demo`) fingerprints images: nothing on the
image path may need PyAV or trimesh, and a media file says which extra it needs."""

from __future__ import annotations

import subprocess
import sys

# Blocking the modules in sys.modules makes `import av` / `import trimesh` raise ImportError,
# as on an install without the media extra.
_BLOCK = "import sys; sys.modules['av'] = None; sys.modules['trimesh'] = None\n"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _BLOCK + code], capture_output=True, text=True)


def test_images_fingerprint_without_the_media_extra() -> None:
    done = _run(
        "import io\n"
        "from PIL import Image\n"
        "from ledger.fingerprint import fingerprint\n"
        "for fmt in ('PNG', 'GIF', 'WEBP', 'JPEG'):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (32, 24), (200, 40, 10)).save(buf, fmt)\n"
        "    fp = fingerprint(buf.getvalue())\n"
        "    print(fmt, fp.modality, fp.width, fp.height)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [f"{f} image 32 24" for f in ("PNG", "GIF", "WEBP", "JPEG")]


def test_a_video_without_the_media_extra_names_the_extra() -> None:
    done = _run(
        "from ledger.errors import FingerprintError\n"
        "from ledger.fingerprint import fingerprint\n"
        "try:\n"
        "    fingerprint(b'\\x00\\x00\\x00\\x18ftypisom' + bytes(64), 'video')\n"
        "except FingerprintError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'seedledger[media]'" in done.stdout
