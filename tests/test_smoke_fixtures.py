from ledger.store import Ledger


def test_fresh_ledger_is_empty(ledger: Ledger) -> None:
    assert ledger.count() == 0
