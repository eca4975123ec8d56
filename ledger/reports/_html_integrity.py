"""The HTML report's integrity parts: the banner at the top (FAILED, naming the first
divergence; or a notice that rows were not re-hashed) and the integrity section."""

from __future__ import annotations

from typing import Any

from ledger.core.markup import Safe, el, when
from ledger.reports._model import IntegritySection, Report, VerificationInfo

_WORD = {"passed": "passed", "failed": "FAILED", "not-rehashed": "rows not re-hashed"}
_CLASS = {"passed": "ok", "failed": "bad", "not-rehashed": "warn"}


def banner(report: Report) -> Safe:
    """What an auditor must see first: the log does not verify (red), or it was only
    checked in part or not at all (amber). Nothing when every row was re-hashed and passed."""
    i = report.integrity
    status = i.status()
    failure = i.failure()
    if failure is not None:
        return el(
            "div",
            el("strong", "FAILED: "),
            f"this ledger does not verify; the first divergence: {failure}. "
            "The report is kept as evidence; its figures come from the rows as they are now.",
            class_="banner",
            role="alert",
            data_metric="integrity.banner",
            data_value="failed",
        )
    if status == "passed" or i.checkpoint is None:
        return Safe("")
    text = (
        "Integrity: leaf hashes vs signed root; rows not re-hashed (a row changed after sealing is "
        "not found). Run the report without --verify leaf-hashes to re-hash every row."
        if status == "not-rehashed"
        else "Integrity: the log was not verified for this report (--verify none)."
    )
    return el("div", text, class_="banner notice", data_metric="integrity.banner", data_value=status)


def _verification(v: VerificationInfo) -> list[Any]:
    parts: list[Any] = [
        el(
            "p",
            el("strong", f"Verification ({v.mode}: {v.scope}): "),
            el(
                "span",
                _WORD[v.status],
                class_=_CLASS[v.status],
                data_metric="integrity.verified",
                data_value=v.status,
            ),
            f" at {when(v.ran_at)}: {v.detail}.",
        )
    ]
    d = v.divergence
    if d is not None and d.columns:
        parts.append(el("p", "Columns established as changed: ", el("code", ", ".join(d.columns)), "."))
    if v.key is not None:
        parts.append(
            el(
                "p",
                el("strong", "Signing key: "),
                el(
                    "span",
                    v.key.statement(),
                    class_="ok" if v.key.trusted else "warn",
                    data_metric="integrity.key_trusted",
                    data_value=str(v.key.trusted).lower(),
                ),
                ".",
            )
        )
    if v.path is not None:
        parts.append(el("p", f"Leaf walk: {v.path}.", class_="muted"))
    return parts


def _sealed(i: IntegritySection) -> Safe:
    return el(
        "p",
        el(
            "span",
            f"{i.sealed_records:,}",
            data_metric="integrity.sealed_records",
            data_value=i.sealed_records,
        ),
        " selected records are sealed in the log; ",
        el(
            "span",
            f"{i.unsealed_records:,}",
            data_metric="integrity.unsealed_records",
            data_value=i.unsealed_records,
        ),
        " are not sealed yet.",
    )


def integrity_section(report: Report) -> Safe:
    i = report.integrity
    cp = i.checkpoint
    if cp is None:
        return el(
            "section",
            el("h2", "Integrity"),
            el(
                "p",
                "No checkpoint yet: the log has not been sealed and signed (run `seedledger seal`).",
                class_="empty",
                data_metric="integrity.none",
            ),
            _sealed(i),
            id="integrity",
        )
    rows = [
        ("origin", cp.origin),
        ("tree size", f"{cp.size:,}"),
        ("root (hex)", el("code", cp.root_hex)),
        ("signed at", when(cp.created_at)),
        ("key name", cp.key_name),
        ("key id", el("code", cp.key_id)),
        ("public key", el("code", cp.verifier)),
        ("checkpoints", f"{i.checkpoints:,}"),
        ("log size now", f"{i.log_size:,}"),
    ]
    parts: list[Any] = [
        el("h2", "Integrity"),
        el("table", [el("tr", el("th", k), el("td", v)) for k, v in rows]),
        _sealed(i),
    ]
    v = i.verification
    if v is None:
        parts.append(el("p", "Verification was not run for this report.", class_="muted"))
    else:
        parts += _verification(v)
    p = i.previous
    if p is not None:
        sig = {True: "signature valid", False: "signature INVALID", None: "signature not checked"}[
            p.signature_ok
        ]
        parts.append(
            el(
                "p",
                el("strong", "Previous checkpoint: "),
                el(
                    "span",
                    "consistent" if p.consistent else "NOT consistent",
                    class_="ok" if p.consistent else "bad",
                    data_metric="integrity.previous_consistent",
                    data_value=str(p.consistent).lower(),
                ),
                f" — size {p.size:,}, root {p.root_hex[:16]}…, {sig}; {p.detail}.",
            )
        )
    parts += [el("h3", "Signed checkpoint (C2SP signed note)"), el("pre", cp.note)]
    return el("section", *parts, id="integrity")
