"""Seeds in the domain's terms: unsigned 64-bit integers, checked strictly.

A seed is an integer in 0 … 2^64−1. Backends accept narrower ranges (Runware
1 … 2^63−1, AUTOMATIC1111 draws below 2^32); :data:`SEED_RANGES` names them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from ledger.errors import InvalidSeedError

SEED_MIN: Final = 0
SEED_MAX: Final = 2**64 - 1

_DECIMAL = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class SeedRange:
    """An inclusive range of seeds a backend accepts."""

    low: int
    high: int

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and not isinstance(seed, bool) and self.low <= seed <= self.high


FULL_RANGE: Final = SeedRange(SEED_MIN, SEED_MAX)

#: Accepted seed ranges by backend (see reference/runware.md, a1111-comfyui.md).
SEED_RANGES: Final[dict[str, SeedRange]] = {
    "runware": SeedRange(1, 2**63 - 1),
    "reference": SeedRange(1, 2**63 - 1),
    "comfyui": FULL_RANGE,
    # A1111 stores seeds as Python ints but draws random ones below 2^32, and
    # several of its code paths (numpy generators) need seeds under 2^32.
    "a1111": SeedRange(0, 2**32 - 1),
}


def parse_seed(value: object) -> int:
    """Return ``value`` as a seed, or raise :class:`InvalidSeedError`.

    Accepts ints and decimal strings (surrounding whitespace allowed). Refuses
    booleans, floats (even integral ones: 2^53+1 would already be wrong),
    negative numbers, values ≥ 2^64 and strings with anything but digits.
    """
    if isinstance(value, bool):
        raise InvalidSeedError(f"seed must be an integer, not a boolean ({value!r})")
    if isinstance(value, int):
        seed = value
    elif isinstance(value, str):
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            raise InvalidSeedError(f"seed must be a decimal integer, got {_describe(value)}")
        seed = int(text)
    elif isinstance(value, float):
        raise InvalidSeedError(
            f"seed must be an integer, not a float ({value!r}); floats lose precision above 2^53"
        )
    else:
        raise InvalidSeedError(f"seed must be an integer, not {type(value).__name__}")
    if seed < SEED_MIN:
        raise InvalidSeedError(f"seed {seed} is negative; seeds are 0 … 2^64−1")
    if seed > SEED_MAX:
        raise InvalidSeedError(f"seed {seed} is ≥ 2^64; seeds are 0 … 2^64−1")
    return seed


_NUMERIC_LOOKING = re.compile(r"[-+0-9.eExX_ ,]{1,24}")


def _describe(text: str) -> str:
    """Echo short number-like input (helps fix a typo); describe anything else, so a
    secret pasted into a seed field never reaches a message or a log."""
    if _NUMERIC_LOOKING.fullmatch(text):
        return repr(text)
    return f"text of {len(text)} character(s)" if text else "an empty string"


def random_seed(seed_range: SeedRange | str = FULL_RANGE) -> int:
    """Pick a seed uniformly from ``seed_range`` (or a backend name) with a CSPRNG."""
    rng = SEED_RANGES[seed_range] if isinstance(seed_range, str) else seed_range
    return rng.low + secrets.randbelow(rng.high - rng.low + 1)


def check_seed_for_backend(seed: int, backend: str) -> None:
    """Raise if ``seed`` is outside what ``backend`` accepts."""
    rng = SEED_RANGES.get(backend, FULL_RANGE)
    if seed not in rng:
        raise InvalidSeedError(f"seed {seed} is outside the range {backend} accepts ({rng.low} … {rng.high})")
