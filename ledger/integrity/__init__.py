"""Tamper-evident log: RFC 6962 Merkle tree, sealing, signed checkpoints, proofs, verify.

See ``docs/integrity.md`` for the leaf format, key formats and the verification steps.
"""

from ledger.integrity.divergence import Divergence, VerifyReport
from ledger.integrity.leaves import ENTRY_TYPES, RECORD, EntryType, register
from ledger.integrity.note import Checkpoint, Signer, Verifier, load_signer, load_verifiers
from ledger.integrity.proofs import prove, verify_proof
from ledger.integrity.seal import SealResult, seal, seal_if_configured
from ledger.integrity.verify import verify

__all__ = [
    "ENTRY_TYPES",
    "RECORD",
    "Checkpoint",
    "Divergence",
    "EntryType",
    "SealResult",
    "Signer",
    "Verifier",
    "VerifyReport",
    "load_signer",
    "load_verifiers",
    "prove",
    "register",
    "seal",
    "seal_if_configured",
    "verify",
    "verify_proof",
]
