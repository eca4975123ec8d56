"""`seedledger ui` over HTTP (a real subprocess, httpx on loopback): access control,
headers, escaping, secrets, upload caps, keyset pagination, JSON twins, read-only."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ledger.integrity import Signer, seal
from ledger.store import Ledger
from tests.cli import seedledger
from tests.conftest import SENTINEL_KEY
from tests.reports_data import HOSTILE_PROMPT, populate
from tests.ui_server import ui_server

TOKEN = "t0ken-for-tests-0123456789abcdef"
PAGES = (
    "/",
    "/?view=gallery",
    "/records/2",
    "/experiments",
    "/audits",
    "/find",
    "/integrity",
    "/diff?a=1&b=2",
)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ui") / "ledger.db"
    with Ledger.open(f"sqlite:///{path}") as ledger:
        populate(ledger, 120)
        seal(ledger, Signer.generate("example.org/ui"))
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def base(populated: str) -> Iterator[str]:
    with ui_server(populated) as url:
        yield url


def _png(seed: int = 1) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_every_page_has_a_strict_csp_and_no_script(base: str) -> None:
    for path in PAGES:
        response = httpx.get(base + path)
        assert response.status_code == 200, (path, response.text[:200])
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text.lower()
        # Every asset the page names is served by the app itself.
        for ref in ("http://", "https://", "//"):
            assert f'src="{ref}' not in response.text and f'href="{ref}' not in response.text


def test_outside_strings_are_escaped_and_secrets_never_shown(base: str) -> None:
    page = httpx.get(base + "/records/2")
    assert page.status_code == 200
    assert HOSTILE_PROMPT not in page.text
    assert "&lt;script&gt;document.title" in page.text
    listing = httpx.get(base + "/?prompt=script")
    assert "&lt;script&gt;" in listing.text and "<script>" not in listing.text
    twin = httpx.get(base + "/records/2.json").json()
    assert twin["record"]["prompt"] == HOSTILE_PROMPT  # data, as stored, in JSON
    for path in (*PAGES, "/records/2.json", "/records.json", "/records/1.json"):
        assert SENTINEL_KEY not in httpx.get(base + path).text, path


def test_keyset_pages_walk_every_record_once_newest_first(base: str) -> None:
    seen: list[int] = []
    url: str | None = base + "/records.json"
    while url:
        data = httpx.get(url).json()
        seen.extend(r["id"] for r in data["records"])
        url = f"{base}/records.json?before={data['next_before']}" if data["next_before"] else None
    assert seen == list(range(120, 0, -1))
    html = httpx.get(base + "/").text
    assert 'href="/?view=table&amp;before=71"' in html  # the next page is a link


def test_filters_in_the_url_match_the_cli(base: str, populated: str) -> None:
    data = httpx.get(base + "/records.json?status=failed").json()
    cli = seedledger("--db", populated, "--json", "list", "--status", "failed", "--limit", "50")
    assert [r["id"] for r in data["records"]] == sorted((r["id"] for r in cli.json_lines()), reverse=True)
    bad = httpx.get(base + "/?seed=-1")
    assert bad.status_code == 400 and "seed" in bad.text
    assert httpx.get(base + "/?status=maybe").status_code == 400
    assert httpx.get(base + "/records/99999").status_code == 404


def test_loopback_ui_refuses_other_host_names(base: str) -> None:
    assert httpx.get(base + "/", headers={"host": "attacker.example"}).status_code == 421


def test_cross_site_posts_are_refused(base: str) -> None:
    refused = httpx.post(base + "/integrity/verify", headers={"sec-fetch-site": "cross-site"})
    assert refused.status_code == 403
    other = httpx.post(base + "/integrity/verify", headers={"origin": "http://attacker.example"})
    assert other.status_code == 403


def test_find_caps_uploads_and_refuses_non_images(base: str) -> None:
    big = httpx.post(base + "/find", files={"image": ("big.png", b"\x89PNG" + b"\0" * (21 * 1024 * 1024))})
    assert big.status_code == 413 and "over the cap" in big.text
    junk = httpx.post(base + "/find.json", files={"image": ("x.png", b"not an image")})
    assert junk.status_code == 400 and junk.json()["error"]
    ok = httpx.post(base + "/find.json", files={"image": ("q.png", _png())})
    assert ok.status_code == 200 and ok.json()["query"]["width"] == 64


def test_browsing_changes_nothing(populated: str, base: str) -> None:
    path = Path(populated.removeprefix("sqlite:///"))

    def dump() -> list[str]:
        with sqlite3.connect(path) as conn:
            return list(conn.iterdump())

    before = dump()
    for p in (*PAGES, "/records/5.json", "/media/thumb/5.png", "/audits.json"):
        httpx.get(base + p)
    job = httpx.post(base + "/integrity/verify", follow_redirects=True)
    assert job.status_code == 200
    assert dump() == before


def test_non_loopback_bind_needs_a_token(populated: str) -> None:
    done = seedledger("--db", populated, "ui", "--listen", "0.0.0.0:0", timeout=60)
    assert done.code == 2
    assert done.err.strip().splitlines()[-1].startswith("seedledger: error: binding 0.0.0.0")
    assert "--token" in done.err


def test_token_is_required_on_every_request(populated: str) -> None:
    with ui_server(populated, "--listen", "0.0.0.0:0", env={"SEEDLEDGER_UI_TOKEN": TOKEN}) as url:
        for path in ("/", "/records/1.json", "/media/thumb/1.png", "/static/style.css", "/favicon.ico"):
            assert httpx.get(url + path).status_code == 401, path
        assert httpx.post(url + "/integrity/verify").status_code == 401
        assert (
            httpx.get(url + "/", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code
            == 401
        )
        assert httpx.get(url + "/?token=" + TOKEN[:-1]).status_code == 401
        assert httpx.get(url + "/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(url + "/", headers={"x-seedledger-token": TOKEN}).status_code == 200
        with httpx.Client(base_url=url) as client:
            first = client.get("/?token=" + TOKEN)
            assert first.status_code == 200
            assert (
                "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
            )
            # the cookie carries on to the links of the page
            assert client.get("/records/1").status_code == 200
        # The token is never written into a page.
        assert TOKEN not in httpx.get(url + "/?token=" + TOKEN).text


@pytest.mark.slow
def test_the_demo_ends_by_naming_the_ui(tmp_path: Path) -> None:
    done = seedledger("demo", "--dir", str(tmp_path / "demo"), timeout=300)
    assert done.code == 0, done.err
    last = done.out.strip().splitlines()[-2:]
    assert "web browser" in last[0]
    assert last[1].split()[:4] == ["seedledger", "--db", str(tmp_path / "demo" / "seedledger.db"), "ui"]


def test_every_page_on_both_engines(db_url: str) -> None:
    with Ledger.open(db_url) as ledger:
        populate(ledger, 60)
        seal(ledger, Signer.generate("example.org/ui"))
        with ledger.reading() as conn:
            runs = [r for (r,) in conn.exec_driver_sql("SELECT id FROM audit_runs ORDER BY created_at")]
    with ui_server(db_url) as url:
        for path in (
            *PAGES,
            f"/audits/{runs[0]}",
            f"/audits/{runs[0]}?outcome=fail",
            "/records/7/proof.json",
        ):
            assert httpx.get(url + path).status_code == 200, path
        since = httpx.get(url + "/records.json?since=2026-01-01T00:30Z&until=2026-01-01T00:40").json()
        assert [r["id"] for r in since["records"]] == list(range(40, 30, -1))
        fails = httpx.get(f"{url}/audits/{runs[0]}.json?outcome=fail").json()
        assert fails["results"] and {r["outcome"] for r in fails["results"]} == {"fail"}
        assert len(fails["results"]) == fails["counts"]["outcomes"]["fail"]


def test_record_page_shows_the_stored_environment(sqlite_url: str) -> None:
    from tests.factories import new_record

    environment = {
        "torch": "2.13.0",
        "device": "cpu",
        "flags": {"deterministic": True},
        "api_key": SENTINEL_KEY,
    }
    with Ledger.open(sqlite_url) as ledger:
        (rid,) = ledger.add([new_record(seed=3)], environments=[environment])
    with ui_server(sqlite_url) as url:
        page = httpx.get(f"{url}/records/{rid}")
        twin = httpx.get(f"{url}/records/{rid}.json").json()
    assert "<dt>torch</dt><dd>2.13.0</dd>" in page.text and "&#34;deterministic&#34;: true" in page.text
    assert twin["environment"]["device"] == "cpu" and twin["environment"]["backend"] == "runware"
    assert SENTINEL_KEY not in page.text and SENTINEL_KEY not in str(twin)
