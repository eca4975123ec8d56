from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.seeds import (
    SEED_MAX,
    SEED_RANGES,
    SeedRange,
    check_seed_for_backend,
    parse_seed,
    random_seed,
)
from ledger.errors import InvalidSeedError

SEED_MATRIX = [0, 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("seed", SEED_MATRIX)
def test_valid_seeds_parse_from_int_and_decimal_text(seed: int) -> None:
    assert parse_seed(seed) == seed
    assert parse_seed(str(seed)) == seed
    assert parse_seed(f"  {seed}\n") == seed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "negative"),
        (2**64, r"≥ 2\^64"),
        (2**70, r"≥ 2\^64"),
        (1.0, "float"),
        (float(2**53 + 1), "float"),
        (True, "boolean"),
        (False, "boolean"),
        ("12abc", "decimal integer"),
        ("-5", "decimal integer"),
        ("0x10", "decimal integer"),
        ("1e3", "decimal integer"),
        ("", "decimal integer"),
        ("١٢٣", "decimal integer"),  # non-ASCII digits
        (None, "NoneType"),
        ([1], "list"),
    ],
)
def test_invalid_seeds_are_refused_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(InvalidSeedError, match=message):
        parse_seed(value)


@given(st.integers(min_value=0, max_value=SEED_MAX))
def test_every_u64_round_trips_through_text(seed: int) -> None:
    assert parse_seed(str(seed)) == seed


def test_random_seed_stays_in_range_and_varies() -> None:
    seeds = {random_seed() for _ in range(200)}
    assert len(seeds) == 200
    assert all(0 <= s <= SEED_MAX for s in seeds)
    # With 200 draws over 2^64, at least one lands above 2^63 with overwhelming odds.
    assert any(s >= 2**63 for s in seeds)


@pytest.mark.parametrize("backend", sorted(SEED_RANGES))
def test_random_seed_respects_a_backend_range(backend: str) -> None:
    rng = SEED_RANGES[backend]
    for _ in range(100):
        assert random_seed(backend) in rng


def test_small_range_is_covered() -> None:
    assert {random_seed(SeedRange(5, 6)) for _ in range(100)} == {5, 6}


def test_backend_range_check() -> None:
    check_seed_for_backend(2**63 - 1, "runware")
    with pytest.raises(InvalidSeedError, match="runware"):
        check_seed_for_backend(2**63, "runware")
    with pytest.raises(InvalidSeedError, match="a1111"):
        check_seed_for_backend(2**32, "a1111")
    check_seed_for_backend(2**64 - 1, "comfyui")


def test_a_refused_seed_never_echoes_text_that_is_not_number_like() -> None:
    with pytest.raises(InvalidSeedError) as info:
        parse_seed("sk-live-0123456789abcdef")
    assert "sk-live" not in str(info.value) and "24 character" in str(info.value)
    with pytest.raises(InvalidSeedError, match="'-5'"):
        parse_seed("-5")
