"""What every request shares: the open ledger, the archive and the Verify jobs."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from ledger.integrity import Verifier
from ledger.store import Ledger
from ledger.store.archive import Archive
from ledger.ui.config import UIConfig
from ledger.ui.jobs import VerifyJobs


@dataclass(frozen=True)
class UIState:
    config: UIConfig
    ledger: Ledger
    archive: Archive | None
    jobs: VerifyJobs
    #: Trusted checkpoint keys (--key, SEEDLEDGER_VERIFIER_KEY); empty: none pinned.
    verifiers: tuple[Verifier, ...] = ()


def state(request: Request) -> UIState:
    return request.app.state.ui  # type: ignore[no-any-return]
