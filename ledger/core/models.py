"""Model catalog: AIR identifiers, which models expose a seed, default schedulers.

A model is named by an AIR, ``source:id@version`` (``runware:101@1``,
``civitai:101055@128078``). An AIR without ``@version`` is *unpinned*: the provider
may swap the weights under the same name.

Whether a model takes a seed follows ``reference/runware.md`` (the curated Runware
schemas): ``recraft``, ``klingai``, ``luma``, ``openai``, ``sourceful``, ``xai``,
``lightricks`` and ``minimax`` models have no ``seed``; nor do most ``ideogram`` models
(``ideogram:4@1`` and ``ideogram:layerize-text@0`` do) or ``bytedance:seedance@2.0*``;
``runware``, ``civitai``, ``rundiffusion``, ``bfl``, ``alibaba``, ``vidu`` and
``pixverse`` models do. Some ``google`` image models lack it, so ``google`` is unknown.

Users override or extend the catalog with a ``[models]`` table (TOML) or a ``"models"``
object (JSON, or a Python dict), keyed by an AIR or an ``fnmatch`` pattern::

    [models."myprovider:*"]
    seed = false                       # the model ignores or lacks a seed

    [models."civitai:4384@128713"]
    seed = true
    default_scheduler = "DPM++ 2M Karras"
    note = "pinned house model"

``seed`` is ``true``, ``false`` or absent (unknown). The most specific entry wins: an
exact AIR over a pattern, a longer pattern over a shorter one, user entries over the
built-in ones at equal specificity.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from ledger.config import MODELS
from ledger.core.jsonsafe import loads_bounded
from ledger.core.seeds import SEED_RANGES, SeedRange
from ledger.errors import InvalidInputError

_AIR: Final = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9_.\-]*):(?P<id>[^@\s:]+)(?:@(?P<version>[^@\s]+))?"
)


@dataclass(frozen=True)
class AIR:
    """A parsed AIR identifier ``source:id@version``."""

    source: str
    id: str
    version: str | None = None

    @property
    def is_pinned(self) -> bool:
        """True when the AIR names a version, so the weights should not change under it."""
        return self.version is not None

    def __str__(self) -> str:
        return f"{self.source}:{self.id}" + (f"@{self.version}" if self.version is not None else "")


def parse_air(text: str) -> AIR:
    """Parse ``source:id@version`` (version optional); raise InvalidInputError otherwise."""
    if not isinstance(text, str):
        raise InvalidInputError(
            f"model must be an AIR string like 'runware:101@1', not {type(text).__name__}"
        )
    match = _AIR.fullmatch(text.strip())
    if match is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InvalidInputError(f"model {shown!r} is not an AIR identifier like 'runware:101@1'")
    return AIR(match["source"].lower(), match["id"], match["version"])


def is_pinned(model: str) -> bool:
    """True when ``model`` parses as an AIR with a ``@version``."""
    try:
        return parse_air(model).is_pinned
    except InvalidInputError:
        return False


@dataclass(frozen=True)
class ModelInfo:
    """What the catalog knows about a model (or a pattern of models)."""

    pattern: str
    #: True: the model takes a seed; False: it has none (cannot be reproduced); None: unknown.
    seed: bool | None = None
    default_scheduler: str | None = None
    note: str = ""
    builtin: bool = True
    #: Where a diffusers replay loads this model from (a local directory or a hub id).
    diffusers_path: str | None = None
    #: False: the model's video/audio output is known not to repeat from its seed.
    reproducible: bool | None = None


# Built-in entries, from Runware's model schemas (https://schemas.runware.ai/registry.json).
_SEEDLESS_PROVIDERS: Final = (
    "recraft",
    "klingai",
    "luma",
    "openai",
    "sourceful",
    "xai",
    "lightricks",
    "minimax",
)
_SEEDED_PROVIDERS: Final = ("runware", "civitai", "rundiffusion", "alibaba", "vidu", "pixverse")
# Cited in warnings people read: a public source, never a document outside the project.
_SCHEMA_NOTE: Final = "Runware's curated model schemas (https://schemas.runware.ai)"

BUILTIN_MODELS: Final[tuple[ModelInfo, ...]] = (
    *(ModelInfo(f"{p}:*", False, note=f"no seed parameter: {_SCHEMA_NOTE}") for p in _SEEDLESS_PROVIDERS),
    *(ModelInfo(f"{p}:*", True, note=f"seed parameter: {_SCHEMA_NOTE}") for p in _SEEDED_PROVIDERS),
    ModelInfo("bfl:*", True, note="most bfl models take a seed: " + _SCHEMA_NOTE),
    ModelInfo("ideogram:*", False, note="14 of 16 ideogram models have no seed: " + _SCHEMA_NOTE),
    ModelInfo("ideogram:4@1", True, note="one of two ideogram models with a seed: " + _SCHEMA_NOTE),
    ModelInfo(
        "ideogram:layerize-text@0", True, note="one of two ideogram models with a seed: " + _SCHEMA_NOTE
    ),
    ModelInfo("bytedance:seedance@2.0*", False, note="no seed parameter: " + _SCHEMA_NOTE),
    ModelInfo("bytedance:*", None, note="seed support varies by model"),
    ModelInfo("google:*", None, note="several google image models have no seed: " + _SCHEMA_NOTE),
    # FLUX.1 [dev] and [schnell] on Runware sample with flow-match Euler.
    ModelInfo("runware:101@1", True, "FlowMatchEulerDiscreteScheduler", "FLUX.1 [dev]"),
    ModelInfo("runware:100@1", True, "FlowMatchEulerDiscreteScheduler", "FLUX.1 [schnell]"),
)

#: Providers the catalog knows at all (the reference backend refuses others).
KNOWN_PROVIDERS: Final = frozenset(
    (*_SEEDLESS_PROVIDERS, *_SEEDED_PROVIDERS, "bfl", "ideogram", "bytedance", "google")
)


def _specificity(pattern: str) -> tuple[int, int]:
    wild = any(c in pattern for c in "*?[")
    return (0 if wild else 1, len(pattern.replace("*", "")))


class ModelCatalog:
    """Built-in model facts plus user overrides; look models up by AIR."""

    def __init__(self, entries: tuple[ModelInfo, ...] = BUILTIN_MODELS) -> None:
        self._entries = tuple(entries)

    @property
    def entries(self) -> tuple[ModelInfo, ...]:
        return self._entries

    def with_overrides(self, config: Mapping[str, Any] | str | Path | None) -> ModelCatalog:
        """A new catalog with the user's entries (a mapping, or a TOML/JSON file path)."""
        if config is None:
            return self
        return ModelCatalog(self._entries + _load_overrides(config))

    def lookup(self, model: str) -> ModelInfo:
        """The most specific entry matching ``model``; an empty unknown entry if none."""
        text = model.strip()
        try:
            air = parse_air(text)
            candidates = {str(air), text, f"{air.source}:{air.id}"}
        except InvalidInputError:
            return ModelInfo(text, None, note="not an AIR identifier", builtin=True)
        best: ModelInfo | None = None
        best_key: tuple[int, int, int] | None = None
        for entry in self._entries:
            if not any(fnmatch.fnmatchcase(c.lower(), entry.pattern.lower()) for c in candidates):
                continue
            key = (*_specificity(entry.pattern), 0 if entry.builtin else 1)
            if best_key is None or key >= best_key:
                best, best_key = entry, key
        return best or ModelInfo(str(air), None, note=f"provider {air.source!r} is not in the catalog")

    def supports_seed(self, model: str) -> bool | None:
        """True/False when the catalog knows whether ``model`` takes a seed, else None."""
        return self.lookup(model).seed

    def default_scheduler(self, model: str) -> str | None:
        return self.lookup(model).default_scheduler

    def diffusers_path(self, model: str) -> str | None:
        """The diffusers checkpoint a ``[models]`` entry maps ``model`` to, if any."""
        return self.lookup(model).diffusers_path

    def reproducible(self, model: str) -> bool | None:
        """False when ``model``'s output is known not to repeat from its seed."""
        return self.lookup(model).reproducible

    def is_known(self, model: str) -> bool:
        """True when ``model`` is an AIR whose provider (or exact AIR) the catalog lists."""
        try:
            air = parse_air(model)
        except InvalidInputError:
            return False
        if air.source in KNOWN_PROVIDERS:
            return True
        return any(
            not e.builtin and fnmatch.fnmatchcase(str(air).lower(), e.pattern.lower()) for e in self._entries
        )


def _load_overrides(config: Mapping[str, Any] | str | Path) -> tuple[ModelInfo, ...]:
    if isinstance(config, str | Path):
        path = Path(config)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read model catalog {path}: {exc.strerror or exc}") from None
        try:
            if path.suffix.lower() == ".json":
                data = loads_bounded(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except RecursionError:  # tomllib recurses once per nesting level
            raise InvalidInputError(f"model catalog {path}: nested too deep") from None
        except (InvalidInputError, ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"model catalog {path} is not valid {path.suffix or 'TOML'}: {exc}"
            ) from None
    else:
        data = config
    if not isinstance(data, Mapping):
        raise InvalidInputError("model catalog must be a table/object with a 'models' key")
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise InvalidInputError("model catalog 'models' must map AIR patterns to tables")
    out: list[ModelInfo] = []
    for pattern, fields in models.items():
        where = f"models.{pattern!r}"
        if not isinstance(pattern, str) or ":" not in pattern:
            raise InvalidInputError(f"{where}: key must be an AIR or pattern like 'provider:*'")
        if not isinstance(fields, Mapping):
            raise InvalidInputError(f"{where}: expected a table of catalog fields")
        unknown = set(fields) - {"seed", "default_scheduler", "note", "diffusers_path", "reproducible"}
        if unknown:
            raise InvalidInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        seed = fields.get("seed")
        if seed is not None and not isinstance(seed, bool):
            raise InvalidInputError(f"{where}.seed: expected true or false")
        sched = fields.get("default_scheduler")
        if sched is not None and not isinstance(sched, str):
            raise InvalidInputError(f"{where}.default_scheduler: expected a string")
        note = fields.get("note", "user configuration")
        if not isinstance(note, str):
            raise InvalidInputError(f"{where}.note: expected a string")
        local = fields.get("diffusers_path")
        if local is not None and not isinstance(local, str):
            raise InvalidInputError(f"{where}.diffusers_path: expected a string")
        reproducible = fields.get("reproducible")
        if reproducible is not None and not isinstance(reproducible, bool):
            raise InvalidInputError(f"{where}.reproducible: expected true or false")
        out.append(
            ModelInfo(
                pattern.strip(),
                seed,
                sched,
                note,
                builtin=False,
                diffusers_path=local,
                reproducible=reproducible,
            )
        )
    return tuple(out)


#: A TOML or JSON file of user overrides (the format above), applied everywhere the
#: catalog is consulted: warnings, audit planning, reports.
ENV_MODELS = MODELS.name


@cache
def default_catalog() -> ModelCatalog:
    """The built-in catalog plus the overrides file named by ``SEEDLEDGER_MODELS``."""
    path = MODELS.raw()
    return ModelCatalog().with_overrides(Path(path)) if path else ModelCatalog()


def supports_seed(model: str, catalog: ModelCatalog | None = None) -> bool | None:
    return (catalog or default_catalog()).supports_seed(model)


def default_scheduler(model: str, catalog: ModelCatalog | None = None) -> str | None:
    return (catalog or default_catalog()).default_scheduler(model)


def seed_range(backend: str) -> SeedRange:
    """The seeds ``backend`` accepts (``runware``, ``reference``, ``comfyui``, ``a1111``)."""
    try:
        return SEED_RANGES[backend.lower()]
    except KeyError:
        known = ", ".join(sorted(SEED_RANGES))
        raise InvalidInputError(f"unknown backend {backend!r}; known: {known}") from None


__all__ = [
    "AIR",
    "BUILTIN_MODELS",
    "KNOWN_PROVIDERS",
    "SEED_RANGES",
    "ModelCatalog",
    "ModelInfo",
    "SeedRange",
    "default_catalog",
    "default_scheduler",
    "is_pinned",
    "parse_air",
    "seed_range",
    "supports_seed",
]
