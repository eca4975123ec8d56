"""A generated ledger for report tests and the report benchmark.

Inserted with Core ``executemany`` in chunks (fast at 100,000 records): records of
every kind a report distinguishes (seeded and seedless models, deterministic and
stochastic schedulers, missing seeds, unpinned models, several backends, sources and
modalities), fingerprints with thumbnails, two audit runs (so "latest result" matters),
record warnings, and optionally a sealed, signed log.

Planted on purpose: a prompt with HTML and script in it, a base64 output payload in
``response`` and the secret ``SENTINEL_KEY`` in ``params`` and in audit error text, so
tests can show a report never prints them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import insert, select

from ledger.fingerprint import THUMB_SIZE, phash_chunks
from ledger.store import Ledger
from ledger.store.schema import (
    audit_results,
    audit_runs,
    fingerprints,
    record_tags,
    record_warnings,
    records,
)

SENTINEL_KEY = "sk-SENTINEL-4f1c2a9e-do-not-store"  # same value as tests/conftest.py
# A payload that looks like what a backend returns inline (imageBase64Data).
PAYLOAD_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\nPAYLOAD-" + bytes(range(256)) * 4).decode()
HOSTILE_PROMPT = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'"> & | *'

# (model, seed support, pinned)
MODELS = (
    ("runware:101@1", True),
    ("civitai:4384@128713", True),
    ("openai:gpt-image@1", False),
    ("runware:100", True),  # unpinned
)
# (scheduler, kind)
SCHEDULERS = (
    ("DPM++ 2M Karras", "deterministic"),
    ("Euler a", "stochastic"),
    (None, "default"),
)
BACKENDS = ("runware", "a1111", "comfyui", "reference")
SOURCES = ("hook", "proxy", "import", "api")
START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 2000


def _thumb(rng: np.random.Generator, *, noise: int = 0, base: np.ndarray | None = None) -> bytes:
    if base is None:
        y, x = np.mgrid[0:THUMB_SIZE, 0:THUMB_SIZE]
        c = rng.integers(0, 255, size=3)
        base = np.stack([(x * 5 + c[0]) % 256, (y * 5 + c[1]) % 256, ((x + y) * 3 + c[2]) % 256], axis=2)
    pixels = base.astype(np.int16)
    if noise:
        pixels = pixels + rng.integers(-noise, noise + 1, size=pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Populated:
    records: int
    audited: int
    run_ids: tuple[str, str]


def populate(
    ledger: Ledger,
    n: int,
    *,
    audited_share: float = 0.8,
    rerun_share: float = 0.2,
    seed: int = 7,
    thumbnails: bool = True,
) -> Populated:
    """Insert ``n`` records with fingerprints, audits and warnings."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    pool = [_thumb(nprng) for _ in range(16)]
    pool_pixels = [np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in pool]
    drift = [_thumb(nprng, noise=25, base=px) for px in pool_pixels]
    different = [_thumb(nprng) for _ in range(8)]
    now = datetime.now(UTC)
    run_ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    with ledger.writing() as conn:
        for i, run_id in enumerate(run_ids):
            conn.execute(
                insert(audit_runs).values(
                    id=run_id,
                    created_at=now - timedelta(hours=2 - i),
                    finished_at=now - timedelta(hours=2 - i, minutes=-30),
                    status="finished",
                    backend=None,
                    backend_url=None,
                    selection={},
                    policy={"pass": ["identical", "near-identical"]},
                    options={},
                    selected_count=n,
                    summary={},
                )
            )
    audited = 0
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        rec_rows: list[dict[str, Any]] = []
        fp_rows: list[dict[str, Any]] = []
        res_rows: list[dict[str, Any]] = []
        warn_rows: list[dict[str, Any]] = []
        tag_rows: list[dict[str, Any]] = []
        for k in range(size):
            i = start + k
            model, seed_ok = MODELS[rng.randrange(len(MODELS)) if i % 7 else 0]
            sched, _kind = SCHEDULERS[rng.randrange(len(SCHEDULERS))]
            has_seed = seed_ok and rng.random() > 0.1
            seed_value = None
            if has_seed:
                seed_value = (1 << 64) - 1 if i % 97 == 3 else rng.randrange(0, 1 << 63)
            prompt = HOSTILE_PROMPT if i % 50 == 1 else f"a lighthouse at dusk, variation {i % 13}"
            modality = "video" if i % 11 == 0 else "image"
            rec_rows.append(
                {
                    "idempotency_key": f"bench:{seed}:{i}",
                    "backend": BACKENDS[i % len(BACKENDS)],
                    "task_type": "imageInference",
                    "modality": modality,
                    "model": model,
                    "scheduler_requested": sched or "Default",
                    "scheduler": sched,
                    "seed": seed_value,
                    "seed_origin": "request" if has_seed else "unknown",
                    "prompt": prompt,
                    "negative_prompt": None,
                    "width": 512,
                    "height": 512,
                    "steps": 25,
                    "cfg_scale": 7.0,
                    "output_format": "PNG" if i % 5 else "JPG",
                    "params": {"positivePrompt": prompt, "apiKey": SENTINEL_KEY},
                    "response": {"imageBase64Data": PAYLOAD_B64},
                    "task_uuid": None,
                    "output_uuid": None,
                    "output_index": 0,
                    "cost": 0.002,
                    "source": SOURCES[i % len(SOURCES)],
                    "experiment_id": None,
                    "parent_id": None,
                    "tags": ["bench"] if i % 3 == 0 else [],
                    "status": "ok",
                    "error_code": None,
                    "error": None,
                    "created_at": START + timedelta(minutes=i),
                    "recorded_at": now,
                }
            )
        with ledger.writing() as conn:
            conn.execute(insert(records), rec_rows)
            keys = [row["idempotency_key"] for row in rec_rows]
            ids = dict(
                conn.execute(
                    select(records.c.idempotency_key, records.c.id).where(records.c.idempotency_key.in_(keys))
                ).all()
            )
            for k, row in enumerate(rec_rows):
                rid = ids[row["idempotency_key"]]
                i = start + k
                thumb_i = i % len(pool)
                digest = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()
                phash = rng.getrandbits(64) - (1 << 63)
                c = phash_chunks(phash + (1 << 63))
                fp_rows.append(
                    {
                        "record_id": rid,
                        "version": "fp1+bench",
                        "media_type": "image/png",
                        "file_sha256": digest,
                        "pixel_sha256": digest,
                        "width": 512,
                        "height": 512,
                        "phash": phash,
                        "dhash": phash,
                        "phash_c0": c[0],
                        "phash_c1": c[1],
                        "phash_c2": c[2],
                        "phash_c3": c[3],
                        "thumbnail": pool[thumb_i] if thumbnails else None,
                        "created_at": now,
                    }
                )
                if "bench" in row["tags"]:
                    tag_rows.append({"record_id": rid, "tag": "bench"})
                codes = _warnings(row)
                for code, severity in codes:
                    warn_rows.append(
                        {
                            "record_id": rid,
                            "code": code,
                            "severity": severity,
                            "detail": f"{code} on {rid}",
                            "checked_at": now,
                        }
                    )
                if rng.random() >= audited_share:
                    continue
                audited += 1
                runs = [run_ids[0]] + ([run_ids[1]] if rng.random() < rerun_share else [])
                for n_run, run_id in enumerate(runs):
                    verdict, outcome, replay = _outcome(row, rng, pool[thumb_i], drift[thumb_i], different)
                    if n_run == 0 and len(runs) == 2:
                        # The earlier run disagrees, so only "latest" gives the right numbers.
                        verdict, outcome, replay = "error", "error", None
                    res_rows.append(
                        {
                            "run_id": run_id,
                            "record_id": rid,
                            "verdict": verdict,
                            "outcome": outcome,
                            "warnings": [code for code, _ in codes],
                            "distances": None
                            if replay is None
                            else {
                                "phash_distance": rng.randrange(0, 30),
                                "dhash_distance": rng.randrange(0, 30),
                                "thumb_psnr_db": round(rng.uniform(12, 60), 3),
                                "thumb_mean_abs_diff": round(rng.uniform(0, 40), 4),
                            },
                            "replay": {
                                "imageBase64Data": PAYLOAD_B64,
                                "seed": row["seed"] and str(row["seed"]),
                            },
                            "replay_thumbnail": replay if thumbnails else None,
                            "replay_pixel_sha256": None
                            if replay is None
                            else hashlib.sha256(replay).hexdigest(),
                            "error_code": "backend-error" if verdict == "error" else None,
                            "error": f"backend said no (key {SENTINEL_KEY})" if verdict == "error" else None,
                            "created_at": now - timedelta(minutes=10 - n_run),
                        }
                    )
            conn.execute(insert(fingerprints), fp_rows)
            if tag_rows:
                conn.execute(insert(record_tags), tag_rows)
            if warn_rows:
                conn.execute(insert(record_warnings), warn_rows)
            # Results in run order, so the later run's rows get the higher ids.
            res_rows.sort(key=lambda row: run_ids.index(row["run_id"]))
            if res_rows:
                conn.execute(insert(audit_results), res_rows)
    return Populated(records=n, audited=audited, run_ids=run_ids)


def _warnings(row: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if row["scheduler"] == "Euler a":
        out.append(("stochastic-scheduler", "warning"))
    if row["scheduler"] is None:
        out.append(("scheduler-unresolved", "warning"))
    if row["model"].startswith("openai:"):
        out.append(("seedless-model", "error"))
    if row["seed"] is None:
        out.append(("seed-not-captured", "error"))
    if "@" not in row["model"]:
        out.append(("model-unpinned", "warning"))
    if row["output_format"] == "JPG":
        out.append(("lossy-output", "info"))
    return out


def _outcome(
    row: dict[str, Any], rng: random.Random, original: bytes, drift: bytes, different: list[bytes]
) -> tuple[str, str, bytes | None]:
    if row["seed"] is None or row["model"].startswith("openai:"):
        return "skipped", "skipped", None
    roll = rng.random()
    if roll < 0.03:
        return "error", "error", None
    if row["scheduler"] == "Euler a":
        if roll < 0.7:
            return "similar", "expected-drift", drift
        return "different", "fail", rng.choice(different)
    if roll < 0.75:
        return "identical", "pass", original
    if roll < 0.9:
        return "near-identical", "pass", original
    if roll < 0.95:
        return "similar", "fail", drift
    return "different", "fail", rng.choice(different)
