"""The media verdict ladders on a small generated calibration set: the acceptance of
docs/calibration.md (0 false identical; re-encodes, ±1 noise and float jitter identical
or near-identical; heavy noise similar; other content, backwards and other motion
different) must keep holding, through scripts/calibrate_media.py's own cases."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from scripts import calibrate_media
from tests import media


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A smooth field, and a fine texture like gravel (the hard case for codecs and phash)."""
    folder = tmp_path_factory.mktemp("calibration")
    raw = Image.fromarray(np.random.default_rng(5).integers(0, 255, (160, 160, 3), dtype=np.uint8))
    texture = np.asarray(raw.filter(ImageFilter.GaussianBlur(1)))
    paths = []
    for name, pixels in (("field", media.field(3)), ("texture", texture)):
        path = folder / f"{name}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _check(cases: calibrate_media.Iterator[calibrate_media.Case]) -> dict[calibrate_media.Key, Counter[str]]:
    distances: dict[calibrate_media.Key, dict[str, list[float]]] = {}
    table, errors = calibrate_media.run(cases, distances)
    assert not errors, (dict(errors), {k: dict(v) for k, v in table.items()})
    assert calibrate_media.render(table, errors, 2, distances).count("|") > 50  # figures rendered
    return table


def test_video_ladder_on_generated_clips(pictures: list[Path]) -> None:
    table = _check(calibrate_media.video_cases(pictures))
    changes = {change for _, change, _ in table}
    assert {"vp9-webm", "crf-35", "heavy-noise-s20", "backwards", "other-motion"} <= changes
    assert sum(sum(c.values()) for c in table.values()) == 56


def test_audio_and_mesh_ladders_on_generated_sources() -> None:
    table = _check(iter([*calibrate_media.audio_cases(), *calibrate_media.mesh_cases()]))
    # Every other source and primitive is a different pair: 5 × 4 of each.
    assert sum(table[("audio", "other-content", "different")].values()) == 20
    assert sum(table[("3d", "other-primitive", "different")].values()) == 20
    assert table[("3d", "heavy-noise-0.5pct", "similar")]["similar"] == 5
