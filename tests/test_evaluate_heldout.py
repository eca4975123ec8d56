"""scripts/evaluate_heldout.py on a few generated files (no Debian package needed): its
loaders feed calibrate_media's changes, every file meets every other of its modality,
shipped re-encodes are scored as such, and licenses are read from a DEP-5 copyright."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import evaluate_heldout as eh
import heldout_sources as hs

from ledger.backends.reference.audio import encode_audio
from ledger.backends.reference.video import encode_video
from scripts import calibrate_media as cm
from tests import media


def _write_set(folder: Path) -> None:
    import trimesh

    (folder / "box.stl").write_bytes(cm.mesh_export(trimesh.creation.box(extents=(1.0, 1.5, 0.7)), "stl"))
    (folder / "sphere.ply").write_bytes(cm.mesh_export(trimesh.creation.icosphere(subdivisions=2), "ply"))
    (folder / "tone.wav").write_bytes(encode_audio(cm._tone((440.0,)), cm.RATE))
    (folder / "chord.flac").write_bytes(
        encode_audio(cm._tone((262.0, 330.0, 392.0)), cm.RATE, container="flac")
    )
    Image.fromarray(media.field(3)).save(folder / "field.png")
    frames = cm._pan(cm._picture(folder / "field.png"))
    (folder / "field-pan.mp4").write_bytes(encode_video(frames, fps=cm.FPS))
    gif = [Image.fromarray(f) for f in frames[::-1]]
    gif[0].save(folder / "field-back.gif", save_all=True, append_images=gif[1:], duration=83, loop=0)
    (folder / "field.png").unlink()  # a still image is no source here


def test_generated_set_runs_through_the_calibration_changes(tmp_path: Path) -> None:
    _write_set(tmp_path)
    sources = hs.folder_sources(tmp_path)
    assert sorted(s.modality for s in sources) == ["3d", "3d", "audio", "audio", "video", "video"]
    text, table, errors = eh.evaluate(sources)
    assert "Sources: 6 files, 6 used." in text
    pairs = {m: sum(sum(c.values()) for k, c in table.items() if k[0] == m) for m in ("video", "audio", "3d")}
    # Per file: the calibration's own changes; then each file against the other (2 pairs).
    assert pairs == {"video": 2 * 8 + 2, "audio": 2 * 6 + 2, "3d": 2 * 6 + 2}
    assert table[("audio", "flac", "identical")]["identical"] == 2
    assert sum(table[("3d", "other-content", "different")].values()) == 2
    assert not errors, text[text.index("Misses") :]
    # Backwards (2) and the other clip (2) are the video's other content.
    assert "| video | other content | 0 | 0 | 0 | 4 | 4 | 0 |" in text
    assert "False `identical`: video 0, audio 0, 3d 0" in text


def test_same_group_is_scored_as_a_shipped_reencode(tmp_path: Path) -> None:
    x = cm._tone((440.0, 554.0, 659.0))
    (tmp_path / "a.wav").write_bytes(encode_audio(x, cm.RATE))
    (tmp_path / "a.mp3").write_bytes(encode_audio(x, cm.RATE, container="mp3"))
    a, b = (
        hs.Source("t", "1", p.name, "x", "audio", p, same="song")
        for p in (tmp_path / "a.wav", tmp_path / "a.mp3")
    )
    cases, labels, _ = eh.build_cases([a, b])
    shipped = [c for c in cases if c[1] == "shipped-other-encoding"]
    assert len(shipped) == 2 and all(c[2] == "identical/near-identical" for c in shipped)
    assert ("audio", "shipped-other-encoding", "t:a.wav vs t:a.mp3") in labels


def test_license_is_the_last_matching_copyright_stanza() -> None:
    stanzas = hs.parse_copyright(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n This program is free software: see\n .\n more\n\n"
        "Files: stereo/bell.oga\n stereo/complete.oga\nCopyright: other\nLicense: CC-BY-3.0\n\n"
        "Files: test/models/glTF2/gen/*\nLicense: Expat\n"
    )
    assert hs.license_for("usr/share/sounds/freedesktop/stereo/complete.oga", stanzas) == "CC-BY-3.0"
    assert hs.license_for("usr/share/sounds/freedesktop/stereo/other.oga", stanzas) == "GPL-2+"
    assert hs.license_for("usr/share/assimp/models/glTF2/gen/x.gltf", stanzas) == "Expat"
    assert hs.license_for("a/b.wav", []) == "not stated in debian/copyright"
