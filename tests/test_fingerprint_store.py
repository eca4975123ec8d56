"""Fingerprints in the store: attach, read back, add with records, reverse lookup
(exact and multi-index Hamming search), identical on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import io
import random

import numpy as np
import pytest
from PIL import Image

from ledger.errors import InvalidInputError, NotFoundError, UsageError
from ledger.fingerprint import Fingerprint, Verdict, fingerprint_bytes
from ledger.store import Ledger
from ledger.store import fingerprints as store
from tests.factories import new_record
from tests.test_fingerprint import encode, scene


def synthetic(phash: int, *, dhash: int = 0, pixel: str | None = None) -> Fingerprint:
    """A fingerprint with a chosen phash (thumbnail of a flat image)."""
    return Fingerprint(
        version="fp-test",
        media_type="image/png",
        file_sha256=f"{phash:064x}",
        pixel_sha256=pixel or f"{phash:064x}",
        width=64,
        height=64,
        phash=phash,
        dhash=dhash,
        thumbnail=_FLAT_THUMB,
    )


def _flat_thumb() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


_FLAT_THUMB = _flat_thumb()


def test_flips_enumerates_every_value_within_the_chunk_radius() -> None:
    values = store.flips(0xBEEF, 2)
    assert len(values) == len(set(values)) == 1 + 16 + 120
    assert all((v ^ 0xBEEF).bit_count() <= 2 for v in values)
    assert store.flips(7, 0) == [7]
    ring = store.flips(0xBEEF, 2, min_bits=2)
    assert len(ring) == 120 and all((v ^ 0xBEEF).bit_count() == 2 for v in ring)


def test_signed_storage_round_trip() -> None:
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        signed = store.to_signed(value)
        assert -(2**63) <= signed < 2**63
        assert store.to_unsigned(signed) == value


def test_attach_and_read_back_extreme_hashes(ledger: Ledger) -> None:
    rid = ledger.record(new_record())
    fp = synthetic(2**64 - 1, dhash=2**63)
    assert ledger.attach_fingerprint(rid, fp) is True
    assert ledger.fingerprint_of(rid) == fp
    assert ledger.attach_fingerprint(rid, fp) is False  # same again: no-op


def test_attach_refuses_other_pixels_unless_replace(ledger: Ledger) -> None:
    rid = ledger.record(new_record())
    ledger.attach_fingerprint(rid, synthetic(1))
    with pytest.raises(InvalidInputError, match=f"record {rid} already has a fingerprint of other pixels"):
        ledger.attach_fingerprint(rid, synthetic(2))
    assert ledger.fingerprint_of(rid).phash == 1
    assert ledger.attach_fingerprint(rid, synthetic(2), replace=True) is True
    assert ledger.fingerprint_of(rid).phash == 2


def test_missing_record_and_missing_fingerprint(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError, match="no record with id 999"):
        ledger.attach_fingerprint(999, synthetic(1))
    with pytest.raises(NotFoundError, match="no record with id 999"):
        ledger.fingerprint_of(999)
    rid = ledger.record(new_record())
    with pytest.raises(NotFoundError, match=f"record {rid} has no fingerprint; attach one"):
        ledger.fingerprint_of(rid)


def test_add_stores_records_and_fingerprints_in_one_transaction(ledger: Ledger) -> None:
    fps = [synthetic(11), None, synthetic(33)]
    ids = ledger.add([new_record(seed=s) for s in (1, 2, 3)], fingerprints=fps)
    assert ledger.fingerprint_of(ids[0]).phash == 11
    assert ledger.fingerprint_of(ids[2]).phash == 33
    with pytest.raises(NotFoundError):
        ledger.fingerprint_of(ids[1])
    with pytest.raises(UsageError, match="2 fingerprints for 1 records"):
        ledger.add([new_record()], fingerprints=[synthetic(1), synthetic(2)])
    # A batch that fails stores neither records nor fingerprints.
    before = ledger.count()
    dup = new_record(idempotency_key="dup")
    with pytest.raises(UsageError):
        ledger.add([dup, dup], fingerprints=[synthetic(5), synthetic(6)])
    assert ledger.count() == before
    assert ledger.find_image(synthetic(5), 0) == []


def test_add_keeps_an_existing_fingerprint_for_a_known_record(ledger: Ledger) -> None:
    rec = new_record(idempotency_key="k1")
    [rid] = ledger.add([rec], fingerprints=[synthetic(1)])
    assert ledger.add([rec], fingerprints=[synthetic(2)]) == [rid]
    assert ledger.fingerprint_of(rid).phash == 1


def _clustered_hashes(n: int, seed: int) -> list[int]:
    """phash-like values: 32 bits set, clustered around a few centres so that many
    fall within small radii of each other (the hard case for chunk probes)."""
    rng = random.Random(seed)
    centres = []
    for _ in range(6):
        bits = rng.sample(range(64), 32)
        centres.append(sum(1 << b for b in bits))
    out = []
    for _ in range(n):
        value = rng.choice(centres)
        for b in rng.sample(range(64), rng.randrange(0, 14)):
            value ^= 1 << b
        out.append(value)
    return out


def test_multi_index_search_equals_full_scan_and_brute_force(ledger: Ledger) -> None:
    hashes = _clustered_hashes(1500, seed=7)
    ids = ledger.add(
        [new_record(seed=i) for i in range(len(hashes))], fingerprints=[synthetic(h) for h in hashes]
    )
    by_id = dict(zip(ids, hashes, strict=True))
    queries = [*hashes[:6], *_clustered_hashes(6, seed=8), 0, 2**64 - 1]
    with ledger.reading() as conn:
        for query in queries:
            for radius in range(17):
                expected = {
                    rid: (h ^ query).bit_count()
                    for rid, h in by_id.items()
                    if (h ^ query).bit_count() <= radius
                }
                assert store.within_radius(conn, query, radius) == expected, (query, radius)
                assert store.within_radius_full_scan(conn, query, radius) == expected
        assert any(len(store.within_radius_full_scan(conn, q, 8)) > 5 for q in queries)


def test_radius_is_bounded(ledger: Ledger) -> None:
    with pytest.raises(UsageError, match="radius must be between 0 and 16"):
        ledger.find_image(synthetic(1), 17)


def test_find_image_exact_first_then_near_then_similar(ledger: Ledger) -> None:
    img = scene(256, 256, seed=3)
    original = fingerprint_bytes(encode(img))
    jpeg = fingerprint_bytes(encode(img, "JPEG", quality=85))
    moved = fingerprint_bytes(encode(np.pad(img, ((0, 0), (40, 0), (0, 0)), mode="edge")[:, :256]))
    other = fingerprint_bytes(encode(scene(256, 256, seed=99)))
    ids = ledger.add([new_record(seed=i) for i in range(4)], fingerprints=[jpeg, other, original, moved])
    matches = ledger.find_image(original, 16)
    assert [m.record_id for m in matches][:2] == [ids[2], ids[0]]
    assert matches[0].verdict is Verdict.IDENTICAL
    assert matches[1].verdict is Verdict.NEAR_IDENTICAL
    assert ids[1] not in [m.record_id for m in matches if m.verdict is not Verdict.DIFFERENT]
    assert [m.record_id for m in ledger.find_image(original, 16, limit=1)] == [ids[2]]


def test_exact_pixel_match_is_found_even_outside_the_radius(ledger: Ledger) -> None:
    # Same pixels hashed by an older version with another phash: still the exact match.
    fp = fingerprint_bytes(encode(scene()))
    old = dataclasses.replace(fp, version="fp0+old", phash=fp.phash ^ 0xFFFF)
    rid = ledger.record(new_record())
    ledger.attach_fingerprint(rid, old)
    [match] = ledger.find_image(fp, 0)
    assert match.record_id == rid and match.verdict is Verdict.IDENTICAL
    assert not match.comparison.same_version
