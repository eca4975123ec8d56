"""What the numbers mean: fingerprint version, thresholds, policy, warnings, limits."""

from __future__ import annotations

from dataclasses import asdict

from ledger.core.warnings import CATALOG
from ledger.fingerprint import DEFAULT_THRESHOLDS, FINGERPRINT_VERSION
from ledger.reports._model import Methodology


def warning_meaning(code: str) -> str:
    kind = CATALOG.get(code)
    return kind.explanation if kind else "Not in this version's warning catalog."


VERDICTS = {
    "identical": "The replay's decoded content (pixels and size; a video's frames and times) hashes to "
    "the same cryptographic hash as the original's (SHA-256; BLAKE3 for video pipeline 3).",
    "near-identical": "Same size, perceptual-hash distance and thumbnail PSNR within the near band "
    "(re-encodes, ±1 pixel noise, GPU-noise level changes).",
    "similar": "Perceptual-hash distance and thumbnail PSNR within the similar band: same composition, "
    "visible drift.",
    "different": "Outside the similar band.",
    "error": "The replay failed (backend error, timeout, undecodable output).",
    "skipped": "Not replayed: the record cannot be reproduced (no seed, seedless model) or was excluded.",
}

POLICY = {
    "pass": "identical or near-identical",
    "expected-drift": "similar on a record with the stochastic-scheduler warning",
    "fail": "every other replayed verdict",
    "pass_rate": "passed / (audited − skipped); expected drift and errors count as not passed",
}

DEFINITIONS = {
    "explicit_seed": "a seed was captured for the output (set in the request or reported by the backend)",
    "deterministic_scheduler": "the scheduler catalog classifies the (resolved) scheduler as deterministic",
    "seed_capable_model": "the model catalog says the model takes a seed",
    "reproducible_by_design": "explicit seed AND deterministic scheduler AND seed-capable model",
    "latest_verdict": "the verdict of a record's most recent audit result (highest result id)",
    "never_audited": "selected records with no audit result in any run",
}

KNOWN_LIMITS = (
    "Metadata (PNG text chunks, EXIF, C2PA manifests) is stripped by most re-encodes; the ledger "
    "matches outputs by pixels and perceptual hashes, not by embedded metadata.",
    "Stochastic schedulers (ancestral, SDE, DDPM, LCM/TCD, restart) inject fresh noise at each step: "
    "a fixed seed may still drift, which the policy reports as expected drift, not failure.",
    "Hosted models can change behind an unchanged name (unpinned model identifiers, provider-side "
    "updates): a replay months later may differ although everything recorded is the same.",
    "Models without a seed parameter cannot be reproduced at all; they are skipped, not failed.",
    "Perceptual hashes depend on the hashing library versions; fingerprints are compared across "
    "versions only with a note (see the fingerprint version).",
    "Verdict thresholds are calibrated on a fixed image set, not guaranteed for every content type.",
    "Scheduler and model classifications come from a catalog that may lag behind providers.",
    "What each proof covers: a C2PA manifest (Content Credential) in a file proves who signed those "
    "bytes, and only when its signer chains to a trust anchor the verifier names; this ledger's "
    "Merkle log proves that a record was in the team's ledger at checkpoint N and has not changed "
    "since, and only under a log key the verifier pins. `seedledger verify-file` checks both.",
)


def methodology() -> Methodology:
    return Methodology(
        fingerprint_version=FINGERPRINT_VERSION,
        thresholds={k: float(v) for k, v in asdict(DEFAULT_THRESHOLDS).items()},
        verdicts=VERDICTS,
        policy=POLICY,
        definitions=DEFINITIONS,
        warnings={code: f"{kind.severity}: {kind.explanation}" for code, kind in CATALOG.items()},
        known_limits=KNOWN_LIMITS,
    )
