"""The Verify action: full log verification on a background thread, with progress.

At most one verification runs at a time (a second request joins the running one).
It only reads: `integrity.verify` works in one read snapshot.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ledger.errors import LedgerError
from ledger.integrity import Verifier, verify
from ledger.store import Ledger

#: Finished jobs kept for their result pages.
_KEEP = 20


@dataclass(frozen=True)
class VerifyJob:
    id: str
    started: float
    total: int  # leaves in the log head when the job started
    state: str = "running"  # running, passed, failed, error
    verified: int = 0
    seconds: float | None = None
    divergence: dict[str, Any] | None = None
    message: str | None = None
    pinned: bool = True
    size: int | None = None
    root: str | None = None
    checkpoints: int | None = None
    entries: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "total": self.total,
            "verified": self.verified,
            "percent": 100 if self.state != "running" else int(100 * self.verified / max(self.total, 1)),
            "seconds": self.seconds,
            "divergence": self.divergence,
            "message": self.message,
            "key_pinned": self.pinned,
            "size": self.size,
            "root": self.root,
            "checkpoints": self.checkpoints,
            "entries": dict(self.entries),
        }


class VerifyJobs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, VerifyJob] = {}
        self._threads: list[threading.Thread] = []

    def get(self, job_id: str) -> VerifyJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _set(self, job: VerifyJob) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def start(self, ledger: Ledger, verifiers: Sequence[Verifier], *, total: int, pinned: bool) -> VerifyJob:
        with self._lock:
            running = next((j for j in self._jobs.values() if j.state == "running"), None)
            if running is not None:
                return running
            job = VerifyJob(id=uuid.uuid4().hex[:16], started=time.monotonic(), total=total, pinned=pinned)
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-_KEEP]:
                self._jobs.pop(old)
        thread = threading.Thread(
            target=self._run, args=(job, ledger, list(verifiers)), name="seedledger-ui-verify", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return job

    def _run(self, job: VerifyJob, ledger: Ledger, verifiers: list[Verifier]) -> None:
        def progress(n: int) -> None:
            current = self.get(job.id) or job
            self._set(replace(current, verified=n))

        try:
            report = verify(ledger, verifiers, progress=progress)
        except LedgerError as exc:
            done = replace(self.get(job.id) or job, state="error", message=str(exc))
        except Exception as exc:  # the page must say it failed, never spin forever
            done = replace(self.get(job.id) or job, state="error", message=f"{type(exc).__name__}: {exc}")
        else:
            d = report.divergence
            done = replace(
                self.get(job.id) or job,
                state="passed" if report.ok else "failed",
                verified=report.size if report.ok else (self.get(job.id) or job).verified,
                size=report.size,
                root=report.root.hex(),
                checkpoints=report.checkpoints,
                entries=dict(report.entries),
                message=None if d is None else d.message(),
                divergence=None if d is None else asdict(d),
            )
        self._set(replace(done, seconds=round(time.monotonic() - job.started, 3)))

    def join(self, timeout: float = 30) -> None:
        for thread in self._threads:
            thread.join(timeout)
