"""A 3D result of several files is one record whose files are fingerprinted together:
packing, the combined fingerprint, and the capture paths that carry such a result."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trimesh
from PIL import Image

from ledger.capture.entries import Output, decode_entry, encode_entry
from ledger.capture.fingerprints import default_fingerprinter
from ledger.capture.pairing import _output_of
from ledger.errors import FingerprintError, NotFoundError
from ledger.fingerprint import Verdict, compare, fingerprint, sniff_modality
from ledger.fingerprint.mesh_files import MAX_FILES, pack_files, unpack_files
from ledger.store import Ledger
from tests import media
from tests.factories import new_record


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def parts() -> list[bytes]:
    torus = media.mesh_bytes(trimesh.creation.torus(1.0, 0.3), "glb")
    box = media.mesh_bytes(trimesh.creation.box(extents=(0.5, 0.5, 0.5)), "ply")
    return [torus, box, _png((200, 40, 40))]


def test_files_are_fingerprinted_together(parts: list[bytes]) -> None:
    packed = pack_files(parts)
    assert sniff_modality(packed) == "3d" and unpack_files(packed) == parts
    fp = fingerprint(packed)
    torus, box = fingerprint(parts[0]), fingerprint(parts[1])
    assert fp.modality == "3d" and fp.media_type == "application/x-seedledger-3d-files"
    assert fp.detail.file_type == "glb+ply+image" and len(fp.detail.parts) == 3
    assert fp.detail.vertices == torus.detail.vertices + box.detail.vertices
    assert fp.pixel_sha256 not in (torus.pixel_sha256, box.pixel_sha256)
    # The files' order is not content; the texture is.
    assert compare(fp, fingerprint(pack_files(parts[::-1]))).verdict is Verdict.IDENTICAL
    retextured = compare(fp, fingerprint(pack_files([*parts[:2], _png((40, 40, 200))])))
    assert retextured.verdict is not Verdict.IDENTICAL
    # Another mesh in place of one file is another result.
    other = media.mesh_bytes(trimesh.creation.cone(radius=0.8, height=1.6), "stl")
    assert compare(fp, fingerprint(pack_files([parts[0], other, parts[2]]))).verdict is Verdict.DIFFERENT
    # Only the mesh, alone, is a single-file result: fingerprinted as that file.
    assert pack_files(parts[:1]) == parts[0]


def test_bad_packs_are_refused_in_one_line(parts: list[bytes]) -> None:
    packed = pack_files(parts)
    bad = {
        "truncated": packed[:-10],
        "trailing bytes": packed + b"x",
        "no mesh": pack_files([parts[2], b"readme"]),
        "a bad mesh": pack_files([parts[0], parts[1][:40]]),
    }
    for name, data in bad.items():
        with pytest.raises(FingerprintError) as info:
            fingerprint(data)
        assert "\n" not in str(info.value), name
    with pytest.raises(FingerprintError):
        pack_files([parts[0]] * (MAX_FILES + 1))


def test_capture_carries_every_file_of_a_result(parts: list[bytes]) -> None:
    inline = {
        "taskType": "3dInference",
        "outputs": {
            "files": [
                {"uuid": f"u{k}", "base64Data": base64.b64encode(p).decode()} for k, p in enumerate(parts)
            ]
        },
    }
    output = _output_of(inline)
    assert output is not None and output.data == pack_files(parts)
    remote = {
        "outputs": {
            "files": [
                {"uuid": "a", "url": "https://x.test/a.glb"},
                {"uuid": "b", "url": "https://x.test/b.png"},
            ]
        }
    }
    output = _output_of(remote)
    assert output == Output(files=(Output(url="https://x.test/a.glb"), Output(url="https://x.test/b.png")))
    # A spool entry keeps the files of one output together.
    entry = decode_entry(encode_entry([new_record(idempotency_key="k1")], outputs={"k1": output}))
    assert entry.outputs["k1"] == output


@pytest.fixture
def server(parts: list[bytes]) -> Iterator[str]:
    served = {"/a.glb": parts[0], "/b.ply": parts[1], "/c.png": parts[2]}

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_writer_downloads_and_packs_a_result_of_several_files(
    server: str, sqlite_url: str, parts: list[bytes]
) -> None:
    run = default_fingerprinter(allow_private_downloads=True)
    assert run is not None
    with Ledger.open(sqlite_url) as ledger:
        whole, missing = ledger.add([new_record(), new_record()])
        files = (Output(url=f"{server}/a.glb"), Output(url=f"{server}/b.ply"), Output(data=parts[2]))
        gone = (Output(url=f"{server}/a.glb"), Output(url=f"{server}/nothing.ply"))
        assert run(ledger, [(whole, Output(files=files)), (missing, Output(files=gone))]) == 1
        stored = ledger.fingerprint_of(whole)
        assert stored is not None and stored.pixel_sha256 == fingerprint(pack_files(parts)).pixel_sha256
        assert stored.detail.parts == fingerprint(pack_files(parts)).detail.parts
        with pytest.raises(NotFoundError, match="has no fingerprint"):
            ledger.fingerprint_of(missing)  # never a fingerprint of part of a result


def test_a_replay_of_several_files_is_packed_the_same_way(parts: list[bytes]) -> None:
    from ledger.backends.http import CallStats
    from ledger.backends.runware import RunwareBackend

    async def payload() -> tuple[bytes, str]:
        backend = RunwareBackend("https://api.test/v1", api_key="k", read_env=False)
        try:
            files = [
                {"uuid": f"u{k}", "base64Data": base64.b64encode(p).decode()} for k, p in enumerate(parts)
            ]
            return await backend._payload({"outputs": {"files": files}}, "test", CallStats())
        finally:
            await backend.aclose()

    data, media_type = asyncio.run(payload())
    assert data == pack_files(parts) and media_type == "application/x-seedledger-3d-files"


def test_fingerprints_stored_before_pipeline_2_still_compare(parts: list[bytes]) -> None:
    """Payloads without the new fields (mesh quantiles and parts, audio band profile) load
    and compare by the older rule, which the reason names."""
    from ledger.fingerprint._payload import from_payload, to_payload

    def old(fp, *dropped: str):
        payload = {k: v for k, v in (to_payload(fp.detail) or {}).items() if k not in dropped}
        return replace(fp, detail=from_payload(fp.modality, payload))

    torus = fingerprint(parts[0])
    moved = media.mesh_bytes(_jittered(trimesh.creation.torus(1.0, 0.3), 1e-5), "ply")
    stored = old(torus, "d2_quantiles", "d1_quantiles", "parts")
    result = compare(stored, fingerprint(moved))
    assert result.shape_distance is None and "pipeline-1" in result.reason
    assert result.verdict is Verdict.NEAR_IDENTICAL
    assert compare(stored, torus).verdict is Verdict.IDENTICAL  # the geometry hash is unchanged
    tone = fingerprint(media.sound(media.chord()))
    stored_tone = old(tone, "band_profile")
    again = compare(stored_tone, fingerprint(media.sound(media.chord(), "mp3")))
    assert again.band_cosine is None and again.verdict is Verdict.NEAR_IDENTICAL


def _jittered(mesh: trimesh.Trimesh, sigma: float) -> trimesh.Trimesh:
    import numpy as np

    moved = mesh.copy()
    moved.vertices = moved.vertices + np.random.default_rng(0).normal(0, sigma, moved.vertices.shape)
    return moved
