"""The web UI in real headless Chromium (Playwright) over the demo ledger.

One `seedledger ui` subprocess serves the demo ledger (with an output archive holding
the demo's approved asset, and the demo's public key pinned); every page visited must
load without console errors and without a request leaving the server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.fingerprint import fingerprint_file
from ledger.store import Ledger, RecordFilter
from ledger.store.archive import Archive
from tests.browser import assert_not_blank, browser, images_loaded, screenshot_pixels, watch
from tests.ui_server import ui_server

__all__ = ["browser"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(demo_run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Facts about the demo ledger the tests navigate by, and an archive of the asset."""
    url = f"sqlite:///{demo_run['database']}"
    archive = Archive(tmp_path_factory.mktemp("archive"))
    asset = Path(demo_run["approved_asset"])
    archive.put(asset.read_bytes())
    with Ledger.open(url) as ledger:
        match = ledger.find_image(fingerprint_file(asset), radius=0)[0]
        experiments = {}
        for r in ledger.query(RecordFilter(source="sweep")):
            experiments.setdefault(r.experiment_id, []).append(r)
    seed_sweep = next(rs for rs in experiments.values() if len({r.seed for r in rs}) > 1)
    return {
        "url": url,
        "archive": str(archive.root),
        "key": demo_run["signing_key"] + ".pub",
        "asset": str(asset),
        "asset_record": match.record_id,
        "seed_sweep": seed_sweep[0].experiment_id,
        "seed_sweep_size": len(seed_sweep),
        "seed_sweep_ids": [r.id for r in seed_sweep],
        "run": demo_run["audit_run"],
        "records": demo_run["records"],
    }


@pytest.fixture(scope="module")
def base(demo: dict[str, Any]) -> Iterator[str]:
    with ui_server(demo["url"], "--archive", demo["archive"], "--key", demo["key"]) as url:
        yield url


@pytest.fixture
def page(browser: Any, base: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    watched = watch(context, base + "/")
    yield watched
    watched.assert_clean()
    context.close()


def test_records_list_filters_by_url_and_paginates(page: Any, base: str, demo: dict[str, Any]) -> None:
    p = page.page
    p.goto(base + "/")
    total_rows = p.locator("table.records tbody tr").count()
    assert total_rows == min(demo["records"], 50)
    model = "civitai:4384@128713"
    p.goto(f"{base}/?model={model}&status=ok")
    models = p.locator("table.records tbody tr td:nth-child(8)").all_inner_texts()
    assert models and set(models) == {model} and len(models) < total_rows
    # The filter form reflects the URL, and the gallery view keeps the filter.
    assert p.input_value("input[name=model]") == model
    p.click("text=gallery")
    assert "model=civitai" in p.url and "view=gallery" in p.url
    widths = images_loaded(p, ".gallery img")
    assert len(widths) == len(models) and all(w == 48 for w in widths)
    assert_not_blank(screenshot_pixels(p))
    # A seed range filter, as the CLI's --seed-min/--seed-max.
    p.goto(f"{base}/?seed_min=100&seed_max=103&experiment={demo['seed_sweep']}")
    seeds = p.locator("table.records tbody td:nth-child(3)").all_inner_texts()
    assert sorted(int(s) for s in seeds) == [100, 101, 102, 103]


def test_record_page_shows_the_archived_original_or_a_labelled_thumbnail(
    page: Any, base: str, demo: dict[str, Any]
) -> None:
    p = page.page
    p.goto(f"{base}/records/{demo['asset_record']}")
    assert images_loaded(p, "img.original") == [384]
    assert "Original output from the archive" in p.inner_text(".hero figcaption")
    assert p.locator("a[href$='/proof.json']").count() == 1
    assert_not_blank(screenshot_pixels(p))
    other = next(i for i in demo["seed_sweep_ids"] if i != demo["asset_record"])
    p.goto(f"{base}/records/{other}")
    assert images_loaded(p, "img.stored-thumb") == [48]
    assert "Stored 48-pixel thumbnail, not the original" in p.inner_text(".hero figcaption")
    assert "Audit history" in p.inner_text("main") and p.locator("table.audits tbody tr").count() >= 1
    # The inclusion proof downloads.
    with p.expect_download() as dl:
        p.click("a[href$='/proof.json']")
    assert dl.value.suggested_filename == f"record-{other}.proof.json"


def test_sweep_grid_click_through_and_pick(page: Any, base: str, demo: dict[str, Any]) -> None:
    p = page.page
    p.goto(f"{base}/")
    p.click("nav >> text=Experiments")
    assert p.locator("tbody tr").count() == 2  # the demo's two sweeps
    p.click(f"a[href='/experiments/{demo['seed_sweep']}']")
    cells = p.locator("table.grid figure.cell")
    assert cells.count() == demo["seed_sweep_size"]
    assert all(w == 48 for w in images_loaded(p, "table.grid img"))
    assert "varied: seed" in p.inner_text("main")
    assert_not_blank(screenshot_pixels(p))
    first = cells.first
    caption = first.locator("figcaption").inner_text()
    assert caption.split()[1] == "seed"
    first.locator("a").first.click()
    assert "/records/" in p.url
    p.go_back()
    first.locator("text=pick").click()
    assert "pick=" in p.url
    assert "Locked base of a pick" in p.inner_text("main")
    assert '"seed":' in p.inner_text("pre")


def test_diff_side_by_side_with_the_parameter_table(page: Any, base: str, demo: dict[str, Any]) -> None:
    a, b = demo["seed_sweep_ids"][:2]
    p = page.page
    p.goto(f"{base}/records/{a}")
    p.fill("input[name=b]", str(b))
    p.click("form.inline button")
    p.wait_for_url("**/diff?*")
    assert p.url.endswith(f"/diff?a={a}&b={b}")
    assert images_loaded(p, ".side-by-side img") == [48, 48]
    rows = p.locator("table.diff tbody tr th").all_inner_texts()
    assert rows == ["seed"]
    assert "Outputs compared" in p.inner_text("main")


def test_audit_run_filters_by_outcome_and_shows_evidence(page: Any, base: str, demo: dict[str, Any]) -> None:
    p = page.page
    p.goto(f"{base}/audits")
    p.click(f"a[href='/audits/{demo['run']}']")
    fails = int(p.inner_text(".counts li.outcome-fail strong"))
    assert fails >= 1
    p.click(".counts li.outcome-fail a")
    outcomes = p.locator("table.results tbody tr:not(.sub) td:nth-child(4)").all_inner_texts()
    assert outcomes == ["fail"] * fails
    evidence = p.locator("td.evidence figure")
    assert evidence.count() == 3 * fails
    assert all(w == 48 for w in images_loaded(p, "td.evidence img"))
    assert_not_blank(screenshot_pixels(p))


def test_find_an_uploaded_file(page: Any, base: str, demo: dict[str, Any]) -> None:
    p = page.page
    p.goto(f"{base}/find")
    p.set_input_files("input[name=image]", demo["asset"])
    p.click("button:text('Find')")
    first = p.locator("table.matches tbody tr").first
    assert first.locator("td").nth(2).inner_text() == "identical"
    assert first.locator("td").first.inner_text() == f"#{demo['asset_record']}"
    assert images_loaded(p, ".query img") == [48]


def _verify(p: Any, base: str) -> str:
    p.goto(f"{base}/integrity")
    p.click("button:text('Verify the whole log')")
    p.wait_for_selector(".pass, .fail, main > .error", timeout=60_000)
    return p.inner_text("main")


def test_verify_passes_on_the_untouched_ledger(page: Any, base: str) -> None:
    p = page.page
    p.goto(f"{base}/integrity")
    assert "No key was pinned" not in p.inner_text("main")
    text = _verify(p, base)
    assert "Verified" in text and "Does not verify" not in text


def test_verify_names_the_edited_record(browser: Any, demo: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "tampered.db"
    with sqlite3.connect(Path(demo["url"].removeprefix("sqlite:///"))) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    victim = demo["seed_sweep_ids"][2]
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE records SET prompt = 'edited later' WHERE id = ?", (victim,))
    with ui_server(f"sqlite:///{copy}", "--key", demo["key"]) as base:
        context = browser.new_context()
        watched = watch(context, base + "/")
        text = _verify(watched.page, base)
        assert "Does not verify" in text
        assert f"record {victim}" in text and "changed-row" in text
        watched.page.click(f"a[href='/records/{victim}']")
        assert "edited later" in watched.page.inner_text(".hero")
        watched.assert_clean()
        # its inclusion proof is refused rather than issued for the changed row
        refused = httpx.get(f"{base}/records/{victim}/proof.json")
        assert refused.status_code == 409 and "no longer matches its sealed leaf" in refused.text
        context.close()
