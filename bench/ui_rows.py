"""A large ledger with a realistic spread of values, for the UI benchmark.

Rows are bulk inserted with SQLAlchemy Core (one ``executemany`` per chunk) with
explicit ids, so ``record_tags`` can be written beside them. The spread is chosen so
every filter the UI offers has a very common value, a rare one, and (for tags and
experiments) values that only old records carry, which is the hard case for a
newest-first keyset page:

- models: eight, Zipf-like (40 % … 0.1 %); schedulers: five plus none (5 %);
- seeds: random 64-bit; sweeps (experiments) use consecutive seeds;
- experiments: 200-record sweeps at the start of every 10,000 records (2 %);
- tags: ``bench`` on every record, ``client:acme`` 30 %, ``approved`` 5 %,
  ``review`` 0.5 %, ``legacy`` on the oldest 1 % only;
- status: 3 % failed; modality: image 96 %, video 3 %, audio 1 %;
- prompts from a vocabulary of subjects and styles; ``created_at`` 20 s apart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text

from ledger.store import Ledger
from ledger.store.schema import experiments, record_tags, records

MODELS = (
    ("runware:101@1", 40.0),
    ("civitai:4384@128713", 20.0),
    ("sd_xl_base_1.0", 12.0),
    ("flux1-dev", 10.0),
    ("runware:100@1", 8.0),
    ("juggernautXL_v9", 6.0),
    ("dreamshaper_8", 3.9),
    ("rare-model-v0", 0.1),
)
SCHEDULERS = (
    ("DPM++ 2M Karras", 35.0),
    ("Euler", 25.0),
    ("Euler a", 15.0),
    ("DDIM", 10.0),
    ("UniPC", 10.0),
    (None, 5.0),
)
BACKENDS = (
    ("runware", "api", 60.0),
    ("a1111", "import", 20.0),
    ("comfyui", "hook", 15.0),
    ("local", "sweep", 5.0),
)
MODALITIES = (("image", 96.0), ("video", 3.0), ("audio", 1.0))
SUBJECTS = (
    "a lighthouse at dusk", "a koi pond", "a red fox in snow", "a city street in rain",
    "an astronaut riding a horse", "a bowl of ramen", "a mountain lake", "a cyberpunk alley",
    "a portrait of an old sailor", "a cat on a windowsill", "a medieval castle", "a desert caravan",
    "a field of sunflowers", "a steam locomotive", "a coral reef", "a jazz club",
    "a glass of whiskey", "a robot gardener", "a snowy cabin", "a tiger in the jungle",
)  # fmt: skip
STYLES = (
    "photorealistic",
    "oil painting",
    "watercolor",
    "35mm film",
    "studio lighting",
    "anime",
    "isometric",
)
RARE_WORD = "zanzibar"  # in 1 of every 10,000 prompts
EXPERIMENT_EVERY, EXPERIMENT_SIZE = 10_000, 200
BASE = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=20)


@dataclass(frozen=True)
class Filled:
    rows: int
    seconds: float
    experiments: tuple[str, ...]  # oldest first
    a_seed: int  # a seed some record has


def _weighted(rng: random.Random, table: tuple[Any, ...], count: int) -> list[Any]:
    values = [entry[:-1] if len(entry) > 2 else entry[0] for entry in table]
    return rng.choices(values, weights=[entry[-1] for entry in table], k=count)


def _chunk(rng: random.Random, start: int, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    models = _weighted(rng, MODELS, count)
    schedulers = _weighted(rng, SCHEDULERS, count)
    backends = _weighted(rng, BACKENDS, count)
    modalities = _weighted(rng, MODALITIES, count)
    rows: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for i in range(count):
        n = start + i
        record_id = n + 1
        in_sweep = n % EXPERIMENT_EVERY < EXPERIMENT_SIZE
        experiment = f"sweep-{n // EXPERIMENT_EVERY:05d}" if in_sweep else None
        seed = (1000 + n % EXPERIMENT_EVERY) if in_sweep else rng.getrandbits(64)
        subject = SUBJECTS[rng.randrange(len(SUBJECTS))]
        prompt = f"{subject}, {STYLES[rng.randrange(len(STYLES))]}, variation {n}"
        if n % 10_000 == 5_000:
            prompt += f", {RARE_WORD}"
        failed = rng.random() < 0.03
        backend, source = backends[i]
        width, height = ((1024, 1024), (832, 1216), (1216, 832), (512, 512))[rng.randrange(4)]
        steps, cfg = (20, 25, 28, 30, 40)[rng.randrange(5)], (3.5, 5.0, 7.0, 7.5)[rng.randrange(4)]
        record_tags_here = ["bench"]
        roll = rng.random()
        if roll < 0.30:
            record_tags_here.append("client:acme")
        if roll < 0.05:
            record_tags_here.append("approved")
        if roll < 0.005:
            record_tags_here.append("review")
        if n < 10_000:
            record_tags_here.append("legacy")
        created = BASE + STEP * n
        params = {"model": models[i], "prompt": prompt, "seed": seed, "steps": steps, "CFGScale": cfg}
        rows.append(
            {
                "id": record_id,
                "idempotency_key": f"{backend}:bench:{n}",
                "backend": backend,
                "task_type": "imageInference" if modalities[i] == "image" else f"{modalities[i]}Inference",
                "modality": modalities[i],
                "model": models[i],
                "scheduler_requested": schedulers[i],
                "scheduler": schedulers[i],
                "seed": seed,
                "seed_origin": "request",
                "prompt": prompt,
                "negative_prompt": "blurry, low quality",
                "width": width,
                "height": height,
                "steps": steps,
                "cfg_scale": cfg,
                "output_format": "PNG",
                "params": params,
                "response": {"seed": seed, "imageURL": f"https://im.example/{n}.png"},
                "task_uuid": f"task-{n // 4}",  # batches of four
                "output_uuid": None,
                "output_index": n % 4,
                "cost": 0.0038,
                "source": source,
                "experiment_id": experiment,
                "parent_id": None,
                "tags": record_tags_here,
                "status": "failed" if failed else "ok",
                "error_code": "provider-error" if failed else None,
                "error": "upstream 500" if failed else None,
                "created_at": created,
                "recorded_at": created + timedelta(milliseconds=5),
            }
        )
        tags.extend({"record_id": record_id, "tag": tag} for tag in record_tags_here)
    return rows, tags


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def fill(ledger: Ledger, total: int, *, chunk: int = 20_000, seed: int = 7) -> Filled:
    """Insert ``total`` records (ids 1…total) with their tags and experiments."""
    rng = random.Random(seed)
    started = time.perf_counter()
    names = tuple(f"sweep-{k:05d}" for k in range((total + EXPERIMENT_EVERY - 1) // EXPERIMENT_EVERY))
    with ledger.writing() as conn:
        if names:
            conn.execute(
                insert(experiments),
                [
                    {"id": name, "kind": "seed-sweep", "name": name, "plan": {"seeds": EXPERIMENT_SIZE},
                     "created_at": BASE + STEP * (k * EXPERIMENT_EVERY)}
                    for k, name in enumerate(names)
                ],
            )  # fmt: skip
    a_seed = None
    for start, count in _chunks(total, chunk):
        rows, tags = _chunk(rng, start, count)
        a_seed = a_seed or next((r["seed"] for r in reversed(rows) if r["experiment_id"] is None), None)
        with ledger.writing() as conn:
            conn.execute(insert(records), rows)
            conn.execute(insert(record_tags), tags)
    with ledger.writing() as conn:
        if conn.dialect.name == "postgresql":  # explicit ids leave the sequence behind
            top = conn.execute(select(func.max(records.c.id))).scalar_one()
            conn.execute(text("SELECT setval(pg_get_serial_sequence('records', 'id'), :n)"), {"n": top or 1})
    return Filled(total, time.perf_counter() - started, names, a_seed or 1000)


def describe(ledger: Ledger) -> Filled:
    """The :class:`Filled` of a ledger that :func:`fill` filled earlier (``--db``)."""
    with ledger.reading() as conn:
        rows = int(conn.execute(select(func.count()).select_from(records)).scalar_one())
        names = tuple(conn.execute(select(experiments.c.id).order_by(experiments.c.id)).scalars())
        a_seed = conn.execute(
            select(records.c.seed)
            .where(records.c.experiment_id.is_(None))
            .order_by(records.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    return Filled(rows, 0.0, names, int(a_seed) if a_seed is not None else 1000)
