"""Column types that make SQLite and PostgreSQL store the same values exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

_OFFSET = 2**63


class SeedType(TypeDecorator[int]):
    """An unsigned 64-bit seed in a signed BIGINT, shifted by −2^63.

    Both engines store BIGINT exactly (SQLite's INTEGER is signed 64-bit; NUMERIC
    affinity would turn values above 2^63−1 into floats). Shifting by 2^63 maps
    0 … 2^64−1 onto −2^63 … 2^63−1 and keeps the order, so ``ORDER BY`` and range
    filters on the column are numeric and can use the index. Raw SQL readers add 2^63.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> int | None:
        return None if value is None else value - _OFFSET

    def process_result_value(self, value: int | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value) + _OFFSET


def to_seed_key(seed: int) -> int:
    """The stored BIGINT for a seed (for raw SQL)."""
    return seed - _OFFSET


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON stored as JSONB on PostgreSQL.
JSONType: Any = JSON().with_variant(JSONB(), "postgresql")
