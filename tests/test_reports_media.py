"""The HTML report shows video, audio and 3D records beside their verdicts: the original
and replay thumbnails (middle sampled frame, waveform, projected silhouette) and, for
video, the original's frame strip, all inline PNG data URIs under the same CSP."""

from __future__ import annotations

import base64
import html.parser
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ledger.backends.reference.server import ReferenceServer
from ledger.reports import ReportOptions, write_report
from ledger.reports._media import STRIP_TILES, strip_png
from ledger.store import Ledger
from tests.browser import browser, images_loaded, watch
from tests.test_audit import REVISED_MODEL, audit, make_originals
from tests.test_audit_media import media_request

__all__ = ["browser"]  # the fixture, imported for pytest


class _Evidence(html.parser.HTMLParser):
    """Images inside each evidence article, by the article's data-modality."""

    def __init__(self) -> None:
        super().__init__()
        self.modality: str | None = None
        self.images: dict[str, list[dict[str, str]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "article" and "evidence" in a.get("class", ""):
            self.modality = a.get("data-modality")
            self.images.setdefault(self.modality or "", [])
        elif tag == "img" and self.modality is not None:
            self.images[self.modality].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.modality = None


def _png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
        return np.asarray(im.convert("RGB"))


def _not_blank(pixels: np.ndarray) -> bool:
    return bool((pixels != pixels.reshape(-1, 3)[0]).any())


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ledger with a drifting and a failing record per media modality, audited, and
    its HTML report."""
    root = tmp_path_factory.mktemp("media-report")
    ledger = Ledger.open(f"sqlite:///{root / 'l.db'}")
    requests = [
        media_request(kind, scheduler, model)
        for kind in ("video", "audio", "3d")
        for scheduler, model in (("Euler a", "runware:101@1"), ("Euler", REVISED_MODEL))
    ]
    with ReferenceServer.running() as original:
        make_originals(ledger, original.url, requests)
    with ReferenceServer.running(model_revision={REVISED_MODEL: 2}) as updated:
        audit(ledger, updated.url)
    out = root / "report.html"
    write_report(ledger, None, "html", out, ReportOptions(evidence_limit=100))
    ledger.close()
    return out


def test_ui_record_and_audit_pages_show_media(audited: Path) -> None:
    import httpx

    from tests.ui_server import ui_server

    db = f"sqlite:///{audited.parent / 'l.db'}"
    with Ledger.open(db) as ledger:
        kinds = {str(r.modality): r.id for r in ledger.iter_records() if str(r.modality) != "image"}
        with ledger.engine.connect() as conn:
            run_id = conn.exec_driver_sql("select id from audit_runs").scalar()
    with ui_server(db) as base:
        video = httpx.get(f"{base}/records/{kinds['video']}").text
        assert "Stored 48-pixel middle sampled frame of this video output" in video
        assert f'src="/media/strip/{kinds["video"]}.png"' in video
        strip = httpx.get(f"{base}/media/strip/{kinds['video']}.png")
        assert strip.headers["content-type"] == "image/png"
        assert _png("data:image/png;base64," + base64.b64encode(strip.content).decode()).shape == (
            48,
            48 * STRIP_TILES,
            3,
        )
        assert httpx.get(f"{base}/media/strip/{kinds['audio']}.png").status_code == 404
        assert "waveform of this audio output" in httpx.get(f"{base}/records/{kinds['audio']}").text
        assert "projected silhouette of this 3d output" in httpx.get(f"{base}/records/{kinds['3d']}").text
        page = httpx.get(f"{base}/audits/{run_id}").text
        for shows in ("middle sampled frame", "waveform", "projected silhouette"):
            assert f'alt="replay {shows}"' in page, shows  # each has a failing record
        assert "original sampled frames" in page
        result_id = int(page.split('src="/media/replay-strip/', 1)[1].split(".png", 1)[0])
        replayed = httpx.get(f"{base}/media/replay-strip/{result_id}.png")
        assert replayed.headers["content-type"] == "image/png"
        assert _png("data:image/png;base64," + base64.b64encode(replayed.content).decode()).shape[1] == (
            48 * STRIP_TILES
        )


def test_report_shows_media_beside_their_verdicts(audited: Path) -> None:
    parser = _Evidence()
    body = audited.read_text(encoding="utf-8")
    parser.feed(body)
    assert {"video", "audio", "3d"} <= set(parser.images), parser.images.keys()
    for modality, shows in (("video", "middle sampled frame"), ("audio", "waveform"), ("3d", "projected")):
        alts = [img["alt"] for img in parser.images[modality]]
        assert any(alt.startswith("original ") and shows in alt for alt in alts), alts
        assert any(alt.startswith("replay ") and shows in alt for alt in alts), alts
        for img in parser.images[modality]:
            pixels = _png(img["src"])
            if img["alt"].endswith("video frame strip"):
                assert pixels.shape == (48, 48 * STRIP_TILES, 3)  # 2 s at 12 fps: 24 samples, 8 shown
            elif img["alt"] != "difference heat map":
                assert pixels.shape == (48, 48, 3), img["alt"]
                assert _not_blank(pixels), img["alt"]
    strips = [img for img in parser.images["video"] if img["alt"] == "original video frame strip"]
    replays = [img for img in parser.images["video"] if img["alt"] == "replay video frame strip"]
    assert len(strips) == len(replays) == 2  # the drifting and the failing video record
    assert all(_not_blank(_png(img["src"])) for img in strips + replays)
    # a replay that drifted or failed is not the original's frames
    pairs = zip(strips, replays, strict=True)
    assert all(_png(a["src"]).tobytes() != _png(b["src"]).tobytes() for a, b in pairs)
    # The tiles are different frames of a moving clip, not one frame repeated.
    tiles = _png(strips[0]["src"]).reshape(48, STRIP_TILES, 48, 3).transpose(1, 0, 2, 3)
    assert len({t.tobytes() for t in tiles}) > 1
    assert "<script" not in body.lower()


def test_strip_png_refuses_what_is_not_a_strip() -> None:
    assert strip_png(None) is None
    assert strip_png({"strip": "not base64!"}) is None
    square = io.BytesIO()
    Image.new("RGB", (50, 48)).save(square, format="PNG")
    assert strip_png({"strip": base64.b64encode(square.getvalue()).decode()}) is None
    three = io.BytesIO()
    Image.fromarray(np.arange(48 * 144 * 3, dtype=np.uint8).reshape(48, 144, 3)).save(three, format="PNG")
    png, tiles = strip_png({"strip": base64.b64encode(three.getvalue()).decode()}) or (b"", 0)
    assert tiles == 3
    assert _png("data:image/png;base64," + base64.b64encode(png).decode()).shape == (48, 144, 3)


@pytest.mark.browser
def test_media_report_renders_in_chromium_without_errors(browser: Any, audited: Path) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 1600})
    try:
        watched = watch(context, audited.as_uri())
        page = watched.page
        page.goto(audited.as_uri())
        widths = images_loaded(page)
        assert widths and all(w > 0 for w in widths)
        assert page.locator("img.strip").count() >= 1
        assert page.locator("img.strip").first.evaluate("i => i.naturalWidth") == 48 * STRIP_TILES
        watched.assert_clean()  # no console error, no CSP violation, nothing fetched
    finally:
        context.close()
