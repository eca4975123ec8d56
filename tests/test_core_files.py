"""ledger.core.files: the one atomic write (old file intact on failure, no temp left, fsynced)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ledger.core import files
from ledger.core.files import atomic_open, atomic_write

LEDGER = Path(__file__).resolve().parent.parent / "ledger"


def test_atomic_write_replaces_and_fsyncs_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write(target, "new ✓")
    assert target.read_text("utf-8") == "new ✓"
    assert synced == ["file", "dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_open(target, "w") as fh:
        fh.write("half of a new rep")
        raise RuntimeError("disk on fire")
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failing_fsync_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken)
    target = tmp_path / "archive-object"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="Input/output"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive-object"]


def test_like_copies_permission_bits_else_0600(tmp_path: Path) -> None:
    image = tmp_path / "image.png"
    image.write_bytes(b"x")
    image.chmod(0o644)
    atomic_write(tmp_path / "stamped.png", b"y", like=image)
    atomic_write(tmp_path / "key.pem", b"secret")
    assert (tmp_path / "stamped.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


def test_no_hand_written_atomic_write_outside_core_files() -> None:
    """Every replace-by-rename goes through ledger/core/files.py."""
    offenders = [
        str(path.relative_to(LEDGER))
        for path in LEDGER.rglob("*.py")
        if path.name != "files.py" or path.parent.name != "core"
        if re.search(r"\bos\.(replace|rename)\(|\.replace\(tmp|tempfile\.mkstemp", path.read_text("utf-8"))
    ]
    assert offenders == []
