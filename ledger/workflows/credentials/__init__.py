"""Content Credentials that point into the log (C2PA manifests carrying a record).

A credential is a C2PA manifest, signed with an X.509 certificate, in the file itself:
``c2pa.actions.v2`` says the file was created by a trained algorithm (IPTC
``trainedAlgorithmicMedia``) and names the model as the software agent; the
``org.seedledger.record`` assertion carries the record (seed as a decimal string),
its output's pixel hash and an inclusion proof into the Merkle log with its signed
checkpoint. C2PA proves who signed these bytes; the proof shows the record was in the
team's ledger at checkpoint N and has not changed since. :func:`verify_file` checks
both and names each check.

The c2pa library is an optional extra (``seedledger[c2pa]``); it is imported only in
:mod:`ledger.workflows.credentials._c2pa`, the one seam to it.
"""

from ledger.workflows.credentials.assertion import ASSERTION_LABEL, CredentialAssertion
from ledger.workflows.credentials.sign import CredentialResult, credential_file
from ledger.workflows.credentials.testcert import make_test_certificates
from ledger.workflows.credentials.verify import Check, FileVerification, verify_file

__all__ = [
    "ASSERTION_LABEL",
    "Check",
    "CredentialAssertion",
    "CredentialResult",
    "FileVerification",
    "credential_file",
    "make_test_certificates",
    "verify_file",
]
