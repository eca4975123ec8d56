"""Keyset pages (store/keyset.py) return exactly the filter's matches, newest first,
whichever plan serves them: tag-driven, equality index, or a range read either way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ledger.core.records import Modality
from ledger.store import Ledger, RecordFilter, browse, keyset
from ledger.store.schema import records
from tests.factories import new_record

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _walk(ledger: Ledger, where: RecordFilter, limit: int = 7) -> list[int]:
    seen: list[int] = []
    before = None
    while True:
        page = browse.record_page(ledger, where, before=before, limit=limit)
        assert len(page.records) <= limit
        seen.extend(r.id for r in page.records)
        if page.next_before is None:
            return seen
        before = page.next_before


@pytest.mark.parametrize("cap", [3, 10_000])  # ranges counted as common / as rare
def test_every_filter_pages_exactly_its_matches(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    monkeypatch.setattr(keyset, "PROBE_CAP", cap)
    made = []
    for n in range(90):
        tags = tuple(t for t, every in (("all", 1), ("half", 2), ("few", 9)) if n % every == 0)
        tags += ("old",) if n < 6 else ()
        made.append(
            new_record(
                seed=(n * 0x9E3779B97F4A7C15) % 2**64,
                model=("m:1@1", "m:2@1", "m:3@1")[n % 3],
                modality=Modality.VIDEO if n % 10 == 0 else Modality.IMAGE,
                tags=tags,
                created_at=BASE + timedelta(minutes=n),
            )
        )
    ids = ledger.add(made)
    rows = list(zip(ids, made, strict=True))
    mid_seed = 2**63
    cases = [
        (RecordFilter(), lambda r: True),
        (RecordFilter(model="m:2@1"), lambda r: r.model == "m:2@1"),
        (RecordFilter(modality="video"), lambda r: r.modality == Modality.VIDEO),
        (RecordFilter(tags=("all",)), lambda r: True),
        (RecordFilter(tags=("old",)), lambda r: "old" in r.tags),
        (RecordFilter(tags=("all", "few", "half")), lambda r: {"few", "half"} <= set(r.tags)),
        (RecordFilter(tags=("half",), model="m:1@1"), lambda r: "half" in r.tags and r.model == "m:1@1"),
        (RecordFilter(seed_min=mid_seed), lambda r: r.seed >= mid_seed),
        (RecordFilter(seed_max=mid_seed // 8), lambda r: r.seed <= mid_seed // 8),
        (
            RecordFilter(since=BASE + timedelta(minutes=80)),
            lambda r: r.created_at >= BASE + timedelta(minutes=80),
        ),
        (
            RecordFilter(
                since=BASE + timedelta(minutes=5), until=BASE + timedelta(minutes=20), seed_min=mid_seed
            ),
            lambda r: (
                BASE + timedelta(minutes=5) <= r.created_at < BASE + timedelta(minutes=20)
                and r.seed >= mid_seed
            ),
        ),
        (RecordFilter(tags=("half",), seed_min=mid_seed), lambda r: "half" in r.tags and r.seed >= mid_seed),
        (
            RecordFilter(model="m:1@1", since=BASE + timedelta(minutes=30)),
            lambda r: r.model == "m:1@1" and r.created_at >= BASE + timedelta(minutes=30),
        ),
        (RecordFilter(prompt="LIGHTHOUSE", status="ok"), lambda r: True),
        (RecordFilter(tags=("nobody",)), lambda r: False),
    ]
    for where, match in cases:
        expected = [i for i, r in reversed(rows) if match(r)]
        assert _walk(ledger, where) == expected, where
        assert _walk(ledger, where, limit=100) == expected, where


PROMPTS = (
    "a lighthouse at dusk",
    "a Lighthouse, ZANZIBAR coast",
    "100% cotton_candy sky",
    "Crème BRÛLÉE on a table",
    'a "quoted" fox',
    None,
)


@pytest.mark.parametrize("cap", [3, 10_000])  # prompt candidates counted as common / as rare
def test_prompt_pages_equal_the_plain_filter(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    monkeypatch.setattr(keyset, "PROBE_CAP", cap)
    # the rare ones only among the oldest records: the hardest case for a newest-first walk
    made = [
        new_record(
            prompt=PROMPTS[0] if n >= 12 else PROMPTS[n % len(PROMPTS)], model=("m:1@1", "m:2@1")[n % 2]
        )
        for n in range(60)
    ]
    ledger.add(made)
    cases = [
        RecordFilter(prompt="lighthouse"),  # common
        RecordFilter(prompt="zanzibar"),  # rare, other case than stored
        RecordFilter(prompt="ZanZibar", model="m:1@1"),  # rare, and an equality index
        RecordFilter(prompt="li"),  # under 3 characters: scanned
        RecordFilter(prompt="0% c"),  # LIKE wildcards are the user's literal text
        RecordFilter(prompt="n_c"),
        RecordFilter(prompt="%"),
        RecordFilter(prompt="_"),
        RecordFilter(prompt="crème brûlée"),  # non-ASCII case folding: whatever lower() does here
        RecordFilter(prompt="rème"),
        RecordFilter(prompt='"quoted"'),  # FTS5 phrase quoting
        RecordFilter(prompt="nowhere at all"),
    ]
    for where in cases:
        with ledger.engine.connect() as conn:
            plain = select(records.c.id).where(where.where()).order_by(records.c.id.desc())
            expected = list(conn.execute(plain).scalars())
        assert _walk(ledger, where, limit=4) == expected, where
        assert _walk(ledger, where, limit=100) == expected, where
    # the oracle itself is not empty where it must not be
    with ledger.engine.connect() as conn:
        rare = conn.execute(select(records.c.id).where(RecordFilter(prompt="ZANZIBAR").where())).all()
        wild = conn.execute(select(records.c.id).where(RecordFilter(prompt="0% c").where())).all()
    assert len(rare) == 2 and len(wild) == 2
