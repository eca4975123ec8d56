"""Every ``SEEDLEDGER_*`` environment variable, declared once: name, type, default, meaning.

Modules read the environment only through these declarations (a test greps the tree for
any other read and checks each name is documented in README.md or docs/). Click options
take ``envvar=ARCHIVE.name`` and so on. This module imports nothing but the standard
library and ``ledger.errors``, so every layer, ``core`` included, may use it.

The build-time switch ``SEEDLEDGER_REQUIRE_NATIVE`` is read by setup.py itself (the
package is not importable while it builds) and ``SEEDLEDGER_TEST_PG_URL`` by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.errors import UsageError

__all__ = ["VARIABLES", "Variable"]


@dataclass(frozen=True)
class Variable:
    """One environment variable. ``kind`` is its type in words (``text``, ``path``,
    ``url``, ``secret``, ``flag``, ``count``); ``default`` what applies when it is unset."""

    name: str
    kind: str
    default: str
    doc: str

    def raw(self, env: Mapping[str, str] | None = None) -> str | None:
        """The value with surrounding blanks removed; None when unset or blank."""
        value = (os.environ if env is None else env).get(self.name, "").strip()
        return value or None

    def path(self, env: Mapping[str, str] | None = None) -> Path | None:
        value = self.raw(env)
        return None if value is None else Path(value).expanduser()

    def flag(self, env: Mapping[str, str] | None = None) -> bool:
        """On unless set to ``0`` (for switches that are on by default)."""
        return self.raw(env) != "0"

    def count(self, env: Mapping[str, str] | None = None, *, strict: bool = True) -> int | None:
        """A positive whole number, None when unset. A bad value is a usage error, or
        None with ``strict=False`` (for tuning knobs that fall back to their default)."""
        value = self.raw(env)
        if value is None:
            return None
        if value.isdigit() and int(value) > 0:
            return int(value)
        if strict:
            raise UsageError(f"{self.name} must be a positive whole number, got {value!r}")
        return None


DATABASE_URL: Final = Variable(
    "SEEDLEDGER_DATABASE_URL", "url", "./seedledger.db", "the ledger: a SQLite path or a postgresql:// URL"
)
SPOOL: Final = Variable(
    "SEEDLEDGER_SPOOL", "path", "./.seedledger-spool", "the capture spool directory (proxy, hook, drain)"
)
ARCHIVE: Final = Variable(
    "SEEDLEDGER_ARCHIVE",
    "path",
    "none",
    "the output archive (`archive`, `ui`, `audit`, `--archive` of `sweep`/`import`/`proxy`/`spool drain`, "
    "the in-process recorder)",
)
SIGNING_KEY: Final = Variable(
    "SEEDLEDGER_SIGNING_KEY", "secret", "none", "the signing key (the key itself or a file holding it)"
)
VERIFIER_KEY: Final = Variable(
    "SEEDLEDGER_VERIFIER_KEY",
    "text",
    "none",
    "trusted log keys (verifier strings separated by blanks or commas, or a file of them)",
)
UI_TOKEN: Final = Variable(
    "SEEDLEDGER_UI_TOKEN", "secret", "none", "the token `seedledger ui` requires on every request"
)
PROXY_TOKEN: Final = Variable(
    "SEEDLEDGER_PROXY_TOKEN", "secret", "none", "the client token the recording proxy requires"
)
WEBHOOK_TOKEN: Final = Variable(
    "SEEDLEDGER_WEBHOOK_TOKEN", "secret", "generated into the spool", "the token in the proxy's webhook path"
)
NATIVE: Final = Variable("SEEDLEDGER_NATIVE", "flag", "1", "0 turns the native verify walker off")
NATIVE_THREADS: Final = Variable(
    "SEEDLEDGER_NATIVE_THREADS", "count", "CPU count, at most 8", "SQLite threads of the native walker"
)
MODELS: Final = Variable(
    "SEEDLEDGER_MODELS", "path", "none", "a TOML or JSON file of model catalog overrides"
)
DIFFUSERS_DEVICE: Final = Variable(
    "SEEDLEDGER_DIFFUSERS_DEVICE", "text", "cuda if available, else cpu", "the diffusers replay device"
)
DIFFUSERS_DTYPE: Final = Variable(
    "SEEDLEDGER_DIFFUSERS_DTYPE", "text", "float32", "the diffusers replay dtype (e.g. float64)"
)
DIFFUSERS_THREADS: Final = Variable(
    "SEEDLEDGER_DIFFUSERS_THREADS", "count", "torch's", "torch threads for diffusers replays"
)

VARIABLES: Final[tuple[Variable, ...]] = (
    DATABASE_URL,
    SPOOL,
    ARCHIVE,
    SIGNING_KEY,
    VERIFIER_KEY,
    UI_TOKEN,
    PROXY_TOKEN,
    WEBHOOK_TOKEN,
    NATIVE,
    NATIVE_THREADS,
    MODELS,
    DIFFUSERS_DEVICE,
    DIFFUSERS_DTYPE,
    DIFFUSERS_THREADS,
)
