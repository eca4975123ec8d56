"""What the numbers mean: fingerprint version, thresholds, policy, warnings, limits."""

from __future__ import annotations

from dataclasses import asdict

from ledger.fingerprint import DEFAULT_THRESHOLDS, FINGERPRINT_VERSION
from ledger.reports._model import Methodology

# The warning catalog's own explanations win when it is importable; these are the
# meanings from the auditor's specification, used until then and for unknown codes.
_WARNINGS: dict[str, str] = {
    "stochastic-scheduler": "The scheduler injects fresh noise at each step; a fixed seed may still drift.",
    "seedless-model": "The model takes no seed: the output cannot be reproduced.",
    "seed-not-captured": "No seed was recorded for the output.",
    "scheduler-unresolved": "The scheduler was Default or omitted and could not be resolved.",
    "model-unpinned": "The model identifier has no version; the provider may change it under the same name.",
    "lossy-output": "The output was stored in a lossy format (JPG, WEBP); exact pixel matches are unlikely.",
    "inputs-unavailable": "A seed image, mask or reference image cannot be fetched for a replay.",
    "batch-seed-unknown": "The output came from a batch whose per-output seed is not known.",
    "nondeterministic-settings": "Recorded settings (e.g. xformers, GPU RNG) make outputs nondeterministic.",
}


def warning_meaning(code: str) -> str:
    try:
        from ledger.core import warnings as catalog  # the auditor's catalog, when present

        describe = getattr(catalog, "describe", None)
        if callable(describe):
            text = describe(code)
            if isinstance(text, str) and text:
                return text
    except ImportError:
        pass
    return _WARNINGS.get(code, "No description in the warning catalog.")


VERDICTS = {
    "identical": "The replay's decoded pixels (and size) hash to the same SHA-256 as the original's.",
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
)


def methodology() -> Methodology:
    return Methodology(
        fingerprint_version=FINGERPRINT_VERSION,
        thresholds={k: float(v) for k, v in asdict(DEFAULT_THRESHOLDS).items()},
        verdicts=VERDICTS,
        policy=POLICY,
        definitions=DEFINITIONS,
        warnings={code: warning_meaning(code) for code in _WARNINGS},
        known_limits=KNOWN_LIMITS,
    )
