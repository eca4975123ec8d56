"""Full-resolution audits: with the output archive holding a record's original, the
replay is compared pixel by pixel, so σ 8 noise the thumbnail cannot see is `similar`
(a failure on a deterministic scheduler) while a JPEG q90 original stays
`near-identical`; PSNR/SSIM show in the results, the Markdown report and the UI."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from ledger.audit import AuditOptions, Policy, Selection, results_of, run_audit
from ledger.audit.fullres import COMPARED, NOT_ARCHIVED
from ledger.audit.originals import generate_originals, store_originals
from ledger.backends import open_backend
from ledger.backends.reference.server import ReferenceServer
from ledger.reports import write_report
from ledger.store import Ledger
from ledger.store.archive import Archive
from tests.test_audit import cli, image_request
from tests.ui_server import ui_server


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, "RGB").save(out, format="PNG")
    return out.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _noised(data: bytes, sigma: float = 8.0) -> bytes:
    rng = np.random.default_rng(8)
    arr = _pixels(data)
    return _png(np.clip(np.rint(arr + rng.normal(0, sigma, arr.shape)), 0, 255).astype(np.uint8))


def _jpeg_q90(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.fromarray(_pixels(data), "RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def _originals(ledger: Ledger, url: str, archive: Archive) -> dict[str, int]:
    """Four records whose stored originals are: σ 8 noise over the real output
    (archived), its JPEG q90 (archived), the output itself (archived), σ 8 noise again
    (not archived). The replay of each is the clean output."""

    async def generate() -> list[Any]:
        backend = open_backend("reference", url)
        try:
            return await generate_originals(
                backend, [image_request(seed=s, width=512, height=512) for s in (1, 2, 3, 4)]
            )
        finally:
            await backend.aclose()

    generated = asyncio.run(generate())
    kinds = ("noise", "jpeg", "clean", "noise-unarchived")
    edits = {"noise": _noised, "jpeg": _jpeg_q90, "clean": bytes, "noise-unarchived": _noised}
    stored = [dataclasses.replace(g, data=edits[k](g.data)) for g, k in zip(generated, kinds, strict=True)]
    ids = store_originals(ledger, stored)
    for g, kind in zip(stored, kinds, strict=True):
        if kind != "noise-unarchived":
            archive.put(g.data)
    return dict(zip(kinds, ids, strict=True))


def _audit(ledger: Ledger, url: str, archive: Path | None) -> tuple[str, dict[int, Any]]:
    options = AuditOptions(backend_url=url, archive=str(archive) if archive else None)
    outcome = asyncio.run(run_audit(ledger, Selection(), options, Policy()))
    return outcome.run.id, {r.record_id: r for r in results_of(ledger, outcome.run.id)}


def test_archived_originals_are_compared_at_full_resolution(sqlite_url: str, tmp_path: Path) -> None:
    store = tmp_path / "archive"
    with Ledger.open(sqlite_url) as ledger, ReferenceServer.running() as server:
        ids = _originals(ledger, server.url, Archive(store))
        _, thumb = _audit(ledger, server.url, None)
        run_id, full = _audit(ledger, server.url, store)

        # Without the archive the thumbnail cannot see the noise.
        assert thumb[ids["noise"]].verdict == "near-identical" and thumb[ids["noise"]].outcome == "pass"
        assert "full_resolution" not in (thumb[ids["noise"]].distances or {})

        noise = full[ids["noise"]]
        assert (noise.verdict, noise.outcome) == ("similar", "fail")
        assert noise.distances["full_resolution"] is True
        assert 28 < noise.distances["pixel_psnr_db"] < 34 and 0 < noise.distances["pixel_ssim"] < 1
        assert noise.distances["phash_distance"] == thumb[ids["noise"]].distances["phash_distance"]
        assert noise.replay["original"] == COMPARED

        jpeg = full[ids["jpeg"]]
        assert (jpeg.verdict, jpeg.outcome) == ("near-identical", "pass")
        assert jpeg.distances["pixel_psnr_db"] >= 34 and jpeg.distances["pixel_ssim"] >= 0.9

        assert full[ids["clean"]].verdict == "identical"  # equal pixels decide it; no decode
        assert "original" not in (full[ids["clean"]].replay or {})

        unarchived = full[ids["noise-unarchived"]]
        assert unarchived.verdict == "near-identical" and unarchived.replay["original"] == NOT_ARCHIVED
        assert "full_resolution" not in unarchived.distances

        # The CLI: --archive on the command line, stored with the run.
        run = cli(
            "--db", sqlite_url, "--json", "audit", "--backend-url", server.url,
            "--archive", str(store), "--ids", str(ids["noise"]),
        )  # fmt: skip
        assert run.code == 8, run.err  # the noise is a failure on a deterministic scheduler
        assert run.json()["options"]["archive"] == str(store.resolve())

        report = tmp_path / "report.md"
        write_report(ledger, None, "md", report)
        text = report.read_text()
        evidence = text[text.index("## Evidence") : text.index("## Integrity")]
        assert r"pixel\_psnr\_db | pixel\_ssim |" in evidence
        assert f"| {noise.distances['pixel_psnr_db']:.4g} | {noise.distances['pixel_ssim']:.4g} |" in evidence

    with ui_server(sqlite_url) as base:
        page = httpx.get(f"{base}/audits/{run_id}.json").json()
        shown = {r["record_id"]: r for r in page["results"]}
        assert shown[ids["noise"]]["pixel_psnr_db"] == noise.distances["pixel_psnr_db"]
        assert shown[ids["noise"]]["full_resolution"] is True
        assert shown[ids["noise-unarchived"]]["full_resolution"] is False
        html = httpx.get(f"{base}/audits/{run_id}").text
        assert "PSNR · SSIM" in html and str(noise.distances["pixel_ssim"]) in html
