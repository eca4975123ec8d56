"""Content Credentials: stamp a record's output with a signed C2PA manifest that
carries the record and its inclusion proof, read it with c2pa's own Reader, and check
it with `seedledger verify-file` (the CLI as a subprocess) — and every way it must fail.

The CA and leaf come from `seedledger keys c2pa-test-cert` (made with `cryptography`).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from ledger.fingerprint import fingerprint_bytes
from ledger.integrity import Signer, prove, seal
from ledger.store import Ledger
from ledger.store.schema import records
from ledger.workflows.credentials import ASSERTION_LABEL, CredentialAssertion
from ledger.workflows.credentials._c2pa import sign_manifest
from ledger.workflows.credentials.sign import manifest_for
from ledger.workflows.stamp import TRAINED_ALGORITHMIC_MEDIA
from tests.cli import seedledger
from tests.factories import new_record

SEEDS = (0, 2**63, 2**64 - 1)


def _png(seed: int, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed % 2**32).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


class Setup:
    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp = tmp
        self.url = url
        self.signer = Signer.generate("test.example/log")
        self.verifier = str(self.signer.verifier)
        made = seedledger("keys", "c2pa-test-cert", "--out", str(tmp / "certs"), "--json")
        assert made.code == 0, made.err
        self.certs = made.json()
        assert self.certs["trusted"] is False and "UNTRUSTED" in made.err
        self.ids: dict[int, int] = {}
        self.files: dict[int, Path] = {}
        with Ledger.open(url) as ledger:
            for seed in SEEDS:
                data = _png(seed)
                (record_id,) = ledger.add([new_record(seed=seed)], fingerprints=[fingerprint_bytes(data)])
                path = tmp / f"out-{seed}.png"
                path.write_bytes(data)
                self.ids[seed], self.files[seed] = record_id, path
            seal(ledger, self.signer)

    def stamp(self, seed: int, out: Path) -> Any:
        done = seedledger(
            "--db", self.url, "--json", "stamp", str(self.ids[seed]), str(self.files[seed]),
            "--out", str(out), "--c2pa-cert", self.certs["chain"], "--c2pa-key", self.certs["key"],
        )  # fmt: skip
        assert done.code == 0, done.err
        return done.json()

    def verify(
        self, path: Path, *extra: str, anchors: bool = True, key: str | None = None, db: bool = True
    ) -> Any:
        args = ["--json"]
        if db:
            args = ["--db", self.url, *args]
        args += ["verify-file", str(path), *extra]
        if anchors:
            args += ["--trust-anchors", self.certs["ca"]]
        args += ["--key", key or self.verifier]
        done = seedledger(*args)
        return done.code, json.loads(done.out) if done.out.strip() else None, done.err


@pytest.fixture
def setup(tmp_path: Path, sqlite_url: str) -> Setup:
    return Setup(tmp_path, sqlite_url)


def _statuses(report: Any) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_stamp_read_verify_round_trip(setup: Setup, seed: int) -> None:
    out = setup.tmp / "signed.png"
    stamped = setup.stamp(seed, out)
    assert stamped["c2pa"] is True and stamped["record_id"] == setup.ids[seed]
    # c2pa's own Reader, trusting the test CA.
    context = c2pa.Context.from_dict({"trust": {"trust_anchors": Path(setup.certs["ca"]).read_text()}})
    with c2pa.Reader("image/png", io.BytesIO(out.read_bytes()), context=context) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    by_label = {a["label"]: a["data"] for a in manifest["assertions"]}
    (action,) = by_label["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert action["softwareAgent"]["name"] == "runware:101@1"
    ours = by_label[ASSERTION_LABEL]
    assert ours["seed"] == str(seed) and ours["model"] == "runware:101@1"
    assert ours["log"]["checkpoint"].startswith("test.example/log\n")
    # XMP was written before signing, and survives.
    assert TRAINED_ALGORITHMIC_MEDIA.encode() in out.read_bytes()
    code, report, err = setup.verify(out)
    assert code == 0, err
    assert report["ok"] is True and report["seed"] == str(seed)
    assert set(_statuses(report).values()) == {"ok"}
    assert set(_statuses(report)) == {
        "c2pa-manifest", "c2pa-signer", "assertion", "pixels", "log-proof", "assertion-matches-leaf",
        "ledger-record",
    }  # fmt: skip


def test_without_a_trust_anchor_the_signer_is_untrusted(setup: Setup) -> None:
    out = setup.tmp / "signed.png"
    setup.stamp(0, out)
    code, report, err = setup.verify(out, anchors=False)
    assert code == 7 and "c2pa-signer (untrusted)" in err
    statuses = _statuses(report)
    assert statuses["c2pa-signer"] == "untrusted"
    assert all(v == "ok" for k, v in statuses.items() if k != "c2pa-signer")
    # Anchors that do not include the signer's CA: untrusted too.
    other = setup.tmp / "other"
    assert seedledger("keys", "c2pa-test-cert", "--out", str(other)).code == 0
    code, report, _ = setup.verify(out, "--trust-anchors", str(other / "ca.pem"), anchors=False)
    assert code == 7 and _statuses(report)["c2pa-signer"] == "untrusted"


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
        for t, d in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


def test_a_flipped_byte_in_the_image_data_fails(setup: Setup) -> None:
    out = setup.tmp / "signed.png"
    setup.stamp(0, out)
    chunks = _chunks(out.read_bytes())
    i = next(n for n, (t, _) in enumerate(chunks) if t == b"IDAT")
    idat = bytearray(zlib.decompress(chunks[i][1]))
    idat[len(idat) // 2] ^= 0x01
    chunks[i] = (b"IDAT", zlib.compress(bytes(idat)))
    out.write_bytes(_png_from(chunks))
    code, report, err = setup.verify(out)
    statuses = _statuses(report)
    assert code == 7 and statuses["c2pa-manifest"] == "failed" and statuses["pixels"] == "failed"
    assert "c2pa-manifest" in err


def test_a_manifest_moved_onto_another_image_fails(setup: Setup) -> None:
    out = setup.tmp / "signed.png"
    setup.stamp(0, out)
    manifest_chunks = [c for c in _chunks(out.read_bytes()) if c[0] == b"caBX"]
    assert manifest_chunks
    other = _chunks(_png(999))
    moved = setup.tmp / "moved.png"
    moved.write_bytes(_png_from([other[0], *manifest_chunks, *other[1:]]))
    code, report, _ = setup.verify(moved)
    statuses = _statuses(report)
    assert code == 7 and statuses["c2pa-manifest"] == "failed" and statuses["pixels"] == "failed"


def test_a_proof_for_another_record_fails(setup: Setup) -> None:
    # A correctly signed manifest whose assertion claims record A with record B's proof.
    with Ledger.open(setup.url) as ledger:
        record = ledger.get(setup.ids[0])
        other_proof = prove(ledger, setup.ids[2**63])
    data = setup.files[0].read_bytes()
    claim = CredentialAssertion.for_record(
        record, pixel_sha256=fingerprint_bytes(data).pixel_sha256, fingerprint_version="x", proof=other_proof
    )
    signed = sign_manifest(
        data,
        "image/png",
        manifest_for(record, claim, "forged.png"),
        Path(setup.certs["chain"]).read_bytes(),
        Path(setup.certs["key"]).read_bytes(),
    )
    forged = setup.tmp / "forged.png"
    forged.write_bytes(signed)
    code, report, _ = setup.verify(forged)
    statuses = _statuses(report)
    assert code == 7 and statuses["log-proof"] == "failed"
    assert statuses["c2pa-manifest"] == statuses["c2pa-signer"] == statuses["pixels"] == "ok"


def test_a_checkpoint_signed_by_another_key_fails(setup: Setup) -> None:
    out = setup.tmp / "signed.png"
    setup.stamp(0, out)
    stranger = str(Signer.generate("test.example/log").verifier)
    code, report, _ = setup.verify(out, key=stranger)
    assert code == 7 and _statuses(report)["log-proof"] == "failed"
    # No trusted log key at all: a key carried by the file is no proof.
    done = seedledger("--json", "verify-file", str(out), "--trust-anchors", setup.certs["ca"])
    assert done.code == 7 and "no trusted log key" in done.out


def test_an_edited_ledger_row_fails(setup: Setup) -> None:
    out = setup.tmp / "signed.png"
    setup.stamp(0, out)
    assert setup.verify(out)[0] == 0
    with Ledger.open(setup.url) as ledger, ledger.writing() as conn:
        conn.execute(update(records).where(records.c.id == setup.ids[0]).values(prompt="edited"))
    code, report, err = setup.verify(out)
    statuses = _statuses(report)
    assert code == 7 and statuses["ledger-record"] == "failed" and "ledger-record" in err
    # Offline (no --db) the file alone still verifies: the edit is in the ledger, not the file.
    assert setup.verify(out, db=False)[0] == 0


def test_stamp_refuses_another_image_and_an_unsealed_record(setup: Setup, sqlite_url: str) -> None:
    wrong = setup.tmp / "wrong.png"
    wrong.write_bytes(_png(12345))
    done = seedledger(
        "--db", setup.url, "stamp", str(setup.ids[0]), str(wrong), "--out", str(setup.tmp / "x.png"),
        "--c2pa-cert", setup.certs["chain"], "--c2pa-key", setup.certs["key"],
    )  # fmt: skip
    assert done.code == 2 and "not record" in done.err and not (setup.tmp / "x.png").exists()
    with Ledger.open(setup.url) as ledger:
        data = _png(7)
        (fresh,) = ledger.add([new_record(seed=7)], fingerprints=[fingerprint_bytes(data)])
    path = setup.tmp / "fresh.png"
    path.write_bytes(data)
    done = seedledger(
        "--db", setup.url, "stamp", str(fresh), str(path), "--out", str(setup.tmp / "y.png"),
        "--c2pa-cert", setup.certs["chain"], "--c2pa-key", setup.certs["key"],
    )  # fmt: skip
    assert done.code == 3 and "not sealed" in done.err and not (setup.tmp / "y.png").exists()
    done = seedledger("--db", setup.url, "stamp", str(fresh), str(path), "--c2pa-cert", setup.certs["chain"])
    assert done.code == 2 and "go together" in done.err


def test_verify_file_on_a_file_without_a_manifest(setup: Setup) -> None:
    code, report, _ = setup.verify(setup.files[0])
    assert code == 7 and _statuses(report)["c2pa-manifest"] == "failed"
    assert "no C2PA manifest" in json.dumps(report)


def test_test_certificates_are_not_overwritten(tmp_path: Path) -> None:
    assert seedledger("keys", "c2pa-test-cert", "--out", str(tmp_path)).code == 0
    before = (tmp_path / "key.pem").read_bytes()
    again = seedledger("keys", "c2pa-test-cert", "--out", str(tmp_path))
    assert again.code == 2 and "--force" in again.err
    assert (tmp_path / "key.pem").read_bytes() == before
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
    assert seedledger("keys", "c2pa-test-cert", "--out", str(tmp_path), "--force").code == 0
    assert (tmp_path / "key.pem").read_bytes() != before


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_jpeg_and_webp_credentials(setup: Setup, fmt: str, mime: str, _sqlite_template: Path) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(_png(5))).save(buffer, fmt, quality=90)
    data = buffer.getvalue()
    with Ledger.open(setup.url) as ledger:
        (record_id,) = ledger.add([new_record(seed=5)], fingerprints=[fingerprint_bytes(data)])
        seal(ledger, setup.signer)
    source = setup.tmp / f"in.{fmt.lower()}"
    source.write_bytes(data)
    out = setup.tmp / f"signed.{fmt.lower()}"
    done = seedledger(
        "--db", setup.url, "--json", "stamp", str(record_id), str(source), "--out", str(out),
        "--c2pa-cert", setup.certs["chain"], "--c2pa-key", setup.certs["key"],
    )  # fmt: skip
    assert done.code == 0, done.err
    assert done.json()["format"] == fmt.lower()
    with c2pa.Reader(mime, io.BytesIO(out.read_bytes())) as reader:
        labels = [a["label"] for a in reader.get_active_manifest()["assertions"]]
    assert ASSERTION_LABEL in labels
    code, report, err = setup.verify(out)
    assert code == 0, err
    assert report["record_id"] == record_id
    # Into another ledger: WEBP carries no XMP stamp, so the record comes from the leaf row.
    import shutil

    other = setup.tmp / f"other-{fmt}.db"
    shutil.copyfile(_sqlite_template, other)
    assert _import(f"sqlite:///{other}", out)["status"] == "imported"
    with Ledger.open(f"sqlite:///{other}") as ledger:
        (copy,) = ledger.query()
    assert (copy.seed, copy.model, copy.prompt) == (5, "runware:101@1", "a lighthouse at dusk")


# -- import reads Content Credentials ---------------------------------------------------


def _import(url: str, path: Path) -> Any:
    done = seedledger("--db", url, "--json", "import", str(path))
    assert done.code == 0, done.err
    (outcome,) = [o for o in done.json_lines() if o.get("path") or o.get("file") or o.get("status")]
    return outcome


def test_import_links_a_credential_to_its_record_or_reads_it(setup: Setup, _sqlite_template: Path) -> None:
    import shutil

    out = setup.tmp / "signed.png"
    setup.stamp(2**64 - 1, out)
    linked = _import(setup.url, out)
    assert linked["status"] == "linked" and linked["record_ids"] == [setup.ids[2**64 - 1]]
    empty = setup.tmp / "empty.db"
    shutil.copyfile(_sqlite_template, empty)
    elsewhere = _import(f"sqlite:///{empty}", out)
    assert elsewhere["status"] == "imported"  # this ledger has no such record: nothing linked
    with Ledger.open(f"sqlite:///{empty}") as ledger:
        (record,) = ledger.query()
    assert record.seed == 2**64 - 1 and record.idempotency_key == new_record_key(setup, 2**64 - 1)
    c2pa_facts = record.params["c2pa"]
    assert c2pa_facts["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    assert (
        c2pa_facts["trusted"] is None and c2pa_facts["seedledger_record"]["record_id"] == setup.ids[2**64 - 1]
    )


def new_record_key(setup: Setup, seed: int) -> str | None:
    with Ledger.open(setup.url) as ledger:
        return ledger.get(setup.ids[seed]).idempotency_key


def test_import_reads_a_manifest_made_elsewhere(setup: Setup) -> None:
    # A manifest with no seedledger assertion, on an image with no other metadata (as
    # Firefly or an OpenAI image carries): the software agent is the model, no seed.
    manifest = {
        "claim_generator_info": [{"name": "Adobe Firefly", "version": "3.0"}],
        "title": "elsewhere.png",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": "Firefly Image 3"},
                        }
                    ]
                },
            }
        ],
    }
    signed = sign_manifest(
        _png(4242),
        "image/png",
        manifest,
        Path(setup.certs["chain"]).read_bytes(),
        Path(setup.certs["key"]).read_bytes(),
    )
    path = setup.tmp / "elsewhere.png"
    path.write_bytes(signed)
    outcome = _import(setup.url, path)
    assert outcome["status"] == "imported"
    with Ledger.open(setup.url) as ledger:
        record = ledger.get(outcome["record_ids"][0])
    assert record.model == "Firefly Image 3" and record.seed is None
    assert record.params["c2pa"]["claim_generator"] == "Adobe Firefly 3.0"
    assert record.params["c2pa"]["signer"]["issuer"] == "seedledger UNTRUSTED TEST"


def test_report_methodology_says_what_each_layer_proves(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    done = seedledger("--db", sqlite_url, "report", "--format", "md", "--out", str(out))
    assert done.code == 0, done.err
    text = out.read_text(encoding="utf-8")
    assert "C2PA manifest (Content Credential) in a file proves who signed" in text
    assert "has not changed since, and only under a log key the verifier pins" in text
