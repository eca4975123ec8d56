"""The in-process hook at interpreter exit (issue 15): a script that records and ends
at once keeps its record and its fingerprint, with no drain."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests.cli import seedledger


def png(color: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    buf = io.BytesIO()
    image = Image.new("RGB", (64, 64), color)
    image.paste((10, 200, 40), (8, 8, 40, 30))
    image.save(buf, "PNG")
    return buf.getvalue()


def test_a_script_that_exits_right_after_recording_keeps_record_and_fingerprint(
    sqlite_url: str, tmp_path: Path
) -> None:
    image = tmp_path / "out.png"
    image.write_bytes(png())
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from ledger.capture import record_generation
        record_generation(model="sdxl-base-1.0", seed=42, scheduler="Euler",
                          parameters={{"prompt": "a fox"}}, output=Path({str(image)!r}).read_bytes())
        """
    )
    env = {"SEEDLEDGER_DATABASE_URL": sqlite_url, "SEEDLEDGER_SPOOL": str(tmp_path / "spool")}
    done = subprocess.run(
        [sys.executable, "-c", script], env={**_base_env(), **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    found = seedledger("--json", "--db", sqlite_url, "find", str(image))  # no drain
    assert found.code == 0, found.err
    (match,) = found.json_lines()
    assert match["verdict"] == "identical"


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SEEDLEDGER_")}


def test_an_output_that_is_not_an_image_is_kept_with_a_warning(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ledger.capture import Recorder, record_generation
    from ledger.core.warnings import warnings_for
    from ledger.store import Ledger

    recorder = Recorder(tmp_path / "spool", sqlite_url, signer=None)
    (bad,) = record_generation(model="sdxl-base-1.0", seed=1, output=b"not an image", recorder=recorder)
    assert f"record {bad}: output 0 is not a readable image" in caplog.text  # said at record time
    (good,) = record_generation(model="sdxl-base-1.0", seed=2, output=png(), recorder=recorder)
    assert recorder.close(drain_timeout=30)
    with Ledger.open(sqlite_url) as ledger:
        by_key = {r.idempotency_key: r for r in ledger.query()}
    assert by_key[bad].status == "ok"  # the record is kept
    codes = {key: [w.code for w in warnings_for(r)] for key, r in by_key.items()}
    assert "output-unreadable" in codes[bad] and "output-unreadable" not in codes[good]
    checked = seedledger("--json", "--db", sqlite_url, "check")
    assert "output-unreadable" in checked.out
