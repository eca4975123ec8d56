"""seedledger: a seed provenance ledger and reproduction auditor for AI media generation."""

__version__ = "0.1.0"
