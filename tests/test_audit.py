"""The auditor end to end against the reference server: verdicts, warnings, policy,
flaky servers, dry runs, the cost guard, no-fingerprint records, inputs, sampling."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ledger.audit import AuditOptions, Policy, Selection, plan_audit, results_of, resume_audit, run_audit
from ledger.audit.originals import generate_originals, store_originals
from ledger.audit.store import get_run, list_runs
from ledger.backends import GenerationRequest, open_backend, request_from_params
from ledger.backends.reference.server import ReferenceServer
from ledger.cli import main
from ledger.core.records import NewRecord, SeedOrigin
from ledger.errors import UsageError
from ledger.integrity import Signer, verify
from ledger.store import Ledger
from ledger.store.schema import audit_results, audit_run_records, audit_runs, record_warnings
from tests.cli import Run


def cli(*args: str) -> Run:
    """The CLI in process (click's CliRunner): faster than a subprocess per call."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


REVISED_MODEL = "civitai:4384@128713"


def image_request(seed: int | None = 1234, **params: Any) -> GenerationRequest:
    task: dict[str, Any] = {
        "model": "runware:101@1",
        "positivePrompt": "a lighthouse at dusk",
        "width": 128,
        "height": 128,
        "steps": 20,
        "CFGScale": 7.0,
        "scheduler": "DPM++ 2M Karras",
        "outputFormat": "PNG",
    }
    task.update(params)
    return request_from_params("reference", task, seed=seed)


def make_originals(
    ledger: Ledger,
    url: str,
    requests: Sequence[GenerationRequest],
    *,
    edit: Any = None,
    fingerprint: bool = True,
) -> list[int]:
    async def generate() -> list[Any]:
        backend = open_backend("reference", url)
        try:
            return await generate_originals(backend, requests)
        finally:
            await backend.aclose()

    return store_originals(ledger, asyncio.run(generate()), edit=edit, fingerprint=fingerprint)


def drop_seed(record: NewRecord) -> NewRecord:
    """A capture that lost the seed."""
    return dataclasses.replace(record, seed=None, seed_origin=SeedOrigin.UNKNOWN)


def audit(ledger: Ledger, url: str, policy: Policy | None = None, **options: Any) -> Any:
    selection = options.pop("selection", Selection())
    return asyncio.run(
        run_audit(ledger, selection, AuditOptions(backend_url=url, **options), policy or Policy())
    )


def by_record(ledger: Ledger, run_id: str) -> dict[int, Any]:
    return {r.record_id: r for r in results_of(ledger, run_id)}


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer.running() as srv:
        yield srv


# -- the acceptance scenario ---------------------------------------------------------------


def test_each_kind_of_record_gets_its_verdict_warnings_and_outcome(ledger: Ledger) -> None:
    with ReferenceServer.running() as original:
        ids = make_originals(
            ledger,
            original.url,
            [
                image_request(),  # deterministic
                image_request(scheduler="Euler a"),  # stochastic
                image_request(model="openai:gpt-image@1"),  # seedless
                image_request(model="runware:101"),  # unpinned
                image_request(model=REVISED_MODEL),  # revised later
            ],
        )
        [missing] = make_originals(ledger, original.url, [image_request(seed=99)], edit=drop_seed)
    deterministic, stochastic, seedless, unpinned, revised = ids
    # The provider silently updates one model: restart with another revision of it.
    with ReferenceServer.running(model_revision={REVISED_MODEL: 2}) as updated:
        outcome = audit(ledger, updated.url)
        url = updated.url

    results = by_record(ledger, outcome.run.id)
    got = {rid: (r.verdict, r.outcome, r.warning_codes, r.error_code) for rid, r in results.items()}
    assert got[deterministic] == ("identical", "pass", (), None)
    assert got[stochastic] == ("similar", "expected-drift", ("stochastic-scheduler",), None)
    assert got[seedless] == ("skipped", "skipped", ("seedless-model",), "seedless-model")
    assert got[missing] == ("skipped", "skipped", ("seed-not-captured",), "seed-not-captured")
    assert got[unpinned] == ("identical", "pass", ("model-unpinned",), None)
    assert got[revised][0] in ("similar", "different")
    assert got[revised][1:] == ("fail", (), None)
    assert set(results) == {*ids, missing}

    run = outcome.run
    assert run.status == "finished"
    assert run.summary["outcomes"] == {"expected-drift": 1, "fail": 1, "pass": 2, "skipped": 2}
    assert run.summary["policy_held"] is False
    assert not outcome.policy_held
    # A replay carries its metadata; the distances sit beside the verdict.
    replay = results[deterministic].replay
    assert replay["seed"] == "1234" and replay["seed_matches"] is True
    assert replay["backend"] == "reference" and replay["task_uuid"]
    assert results[deterministic].distances["pixel_equal"] is True
    assert results[deterministic].replay_thumbnail.startswith(b"\x89PNG")
    assert results[revised].distances["phash_distance"] > 0
    # The warnings are stored per record for reports.
    with ledger.reading() as conn:
        stored = set(conn.execute(select(record_warnings.c.record_id, record_warnings.c.code)).all())
    assert (stochastic, "stochastic-scheduler") in stored
    assert (seedless, "seedless-model") in stored
    assert (missing, "seed-not-captured") in stored
    assert (unpinned, "model-unpinned") in stored
    assert not any(rid == deterministic for rid, _ in stored)

    # The exit code follows the policy: default fails on `fail`, CI may choose.
    assert Policy.parse("error").holds(run.summary["outcomes"])
    assert not Policy.parse("drift").holds(run.summary["outcomes"])
    del url


def test_cli_exit_code_follows_the_policy(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger, ReferenceServer.running() as srv:
        make_originals(ledger, srv.url, [image_request(), image_request(scheduler="Euler a")])
        base = ("--db", sqlite_url, "audit", "--backend-url", srv.url)
        default = cli(*base)
        assert default.code == 0, default.err  # pass + expected drift hold under fail,error
        strict = cli(*base, "--fail-on", "fail,error,drift")
        assert strict.code == 8, strict.err
        assert "fail the policy" in strict.err
        # A revised model: the default policy now fails, --fail-on error does not.
    with ReferenceServer.running(model_revision=3) as revised:
        failing = cli("--db", sqlite_url, "--json", "audit", "--backend-url", revised.url)
        assert failing.code == 8, failing.err
        run = failing.json()
        assert run["status"] == "finished" and run["summary"]["outcomes"] == {"fail": 2}
        lenient = cli("--db", sqlite_url, "audit", "--backend-url", revised.url, "--fail-on", "error")
        assert lenient.code == 0, lenient.err
    listed = cli("--db", sqlite_url, "--json", "audit", "list").json_lines()
    assert len(listed) == 4 and {r["status"] for r in listed} == {"finished"}
    shown = cli("--db", sqlite_url, "audit", "show", run["id"], "--json").json()
    assert shown["run"]["id"] == run["id"]
    assert [r["outcome"] for r in shown["results"]] == ["fail", "fail"]
    text = cli("--db", sqlite_url, "audit", "show", run["id"][:8])
    assert text.code == 0 and run["id"] in text.out and "fail" in text.out


# -- a flaky server ------------------------------------------------------------------------


def test_flaky_server_run_completes_with_one_result_per_record(sqlite_url: str) -> None:
    ledger = Ledger.open(sqlite_url)
    with ReferenceServer.running() as clean:
        ids = make_originals(
            ledger, clean.url, [image_request(seed=s, width=64, height=64) for s in range(1, 41)]
        )
    with ReferenceServer.running(error_rate=0.2, stall_rate=0.05, stall_seconds=5, knob_seed=11) as flaky:
        outcome = audit(ledger, flaky.url, concurrency=8, timeout=0.6, attempts=4)
        stats = flaky.stats
    run = outcome.run
    assert run.status == "finished" and not outcome.interrupted
    with ledger.reading() as conn:
        per_record = conn.execute(
            select(audit_results.c.record_id, func.count())
            .where(audit_results.c.run_id == run.id)
            .group_by(audit_results.c.record_id)
        ).all()
    assert sorted(rid for rid, _ in per_record) == ids
    assert all(n == 1 for _, n in per_record)
    results = results_of(ledger, run.id)
    assert run.summary["results"] == len(ids) == len(results)
    # The server really failed and stalled, and the adapter retried through it.
    assert stats.server_errors > 0 and stats.stalled > 0
    retried = [r for r in results if r.replay and r.replay["retries"] > 0]
    assert retried and all(r.outcome == "pass" for r in retried)
    # Whatever could not get through after every attempt is an error result.
    assert all(r.outcome in ("pass", "error") for r in results)
    assert all(r.error_code for r in results if r.outcome == "error")
    ledger.close()


def test_undecodable_output_and_backend_errors_are_error_results(
    sqlite_url: str, server: ReferenceServer
) -> None:
    ledger = Ledger.open(sqlite_url)
    ids = make_originals(ledger, server.url, [image_request(seed=s) for s in (1, 2, 3)])
    # A record whose model the backend refuses, and one whose stored fingerprint
    # does not exist: neither ends the run.
    [refused] = ledger.add(
        [
            dataclasses.replace(
                r, idempotency_key=None, model="nosuch:1@1", params={**r.params, "model": "nosuch:1@1"}
            )
            for r in [ledger.get(ids[0])]
        ]
    )
    [bare] = make_originals(ledger, server.url, [image_request(seed=7)], fingerprint=False)
    outcome = audit(ledger, server.url)
    got = by_record(ledger, outcome.run.id)
    assert [got[i].outcome for i in ids] == ["pass", "pass", "pass"]
    assert got[bare].outcome == "error" and got[bare].error_code == "no-fingerprint"
    assert got[bare].replay is None  # nothing to compare with, so nothing was replayed
    assert got[refused].outcome in ("error", "skipped")
    assert outcome.run.status == "finished" and outcome.run.summary["results"] == 5
    ledger.close()


# -- dry run, cost guard, sampling ---------------------------------------------------------


def test_dry_run_lists_replays_and_cost_and_writes_nothing(sqlite_url: str, server: ReferenceServer) -> None:
    with Ledger.open(sqlite_url) as ledger:
        make_originals(ledger, server.url, [image_request(seed=s) for s in (1, 2)])
        make_originals(ledger, server.url, [image_request(model="openai:gpt-image@1")])
        plan = plan_audit(ledger, Selection(), AuditOptions(backend_url=server.url))
        cost = plan.estimated_cost
    assert [p.action for p in plan.records] == ["replay", "replay", "skip"]
    assert cost > 0
    dry = cli("--db", sqlite_url, "--json", "audit", "--dry-run", "--backend-url", server.url)
    assert dry.code == 0, dry.err
    rows = dry.json_lines()
    assert [r["action"] for r in rows] == ["replay", "replay", "skip"]
    assert rows[2]["reason"] == "seedless-model"
    assert f"estimated cost {cost:g}" in dry.err
    over = cli("--db", sqlite_url, "audit", "--backend-url", server.url, "--max-cost", str(cost / 3))
    assert over.code == 2 and "--max-cost" in over.err
    with Ledger.open(sqlite_url) as ledger, ledger.reading() as conn:
        assert conn.execute(select(func.count()).select_from(audit_runs)).scalar_one() == 0
    enough = cli("--db", sqlite_url, "audit", "--backend-url", server.url, "--max-cost", str(cost * 2))
    assert enough.code == 0, enough.err


def test_sample_is_reproducible_from_its_recorded_seed(sqlite_url: str, server: ReferenceServer) -> None:
    with Ledger.open(sqlite_url) as ledger:
        make_originals(ledger, server.url, [image_request(seed=s, width=32, height=32) for s in range(1, 21)])
        first = audit(ledger, server.url, selection=Selection(sample=5))
        seed = int(first.run.selection["sample_seed"])
        again = audit(ledger, server.url, selection=Selection(sample=5, sample_seed=seed))

        def members(run_id: str) -> list[int]:
            with ledger.reading() as conn:
                return sorted(
                    r
                    for (r,) in conn.execute(
                        select(audit_run_records.c.record_id).where(audit_run_records.c.run_id == run_id)
                    )
                )

        assert len(members(first.run.id)) == 5
        assert members(first.run.id) == members(again.run.id)
        assert first.run.selection["population"] == 20
        assert [r.record_id for r in results_of(ledger, again.run.id)] == members(again.run.id)


def test_selection_filters_and_ids(sqlite_url: str, server: ReferenceServer) -> None:
    with Ledger.open(sqlite_url) as ledger:
        ids = make_originals(
            ledger, server.url, [image_request(seed=s, width=32, height=32) for s in (1, 2, 3)]
        )
        out = cli(
            "--db", sqlite_url, "--json", "audit", "--backend-url", server.url, "--ids", f"{ids[0]},{ids[2]}"
        )
        assert out.code == 0, out.err
        assert out.json()["selected_count"] == 2
        none = cli("--db", sqlite_url, "audit", "--backend-url", server.url, "--model", "nosuch:*")
        assert none.code == 2 and "no records match" in none.err
        with pytest.raises(UsageError):
            Selection(sample=0)
        assert list_runs(ledger)[0].selection["filters"] == {"ids": [ids[0], ids[2]]}


def test_a_backend_that_cannot_open_is_one_error_and_writes_nothing(
    sqlite_url: str, server: ReferenceServer
) -> None:
    with Ledger.open(sqlite_url) as ledger:
        make_originals(ledger, server.url, [image_request()])
    # Replaying on Runware itself needs an API key, and none is configured: refused
    # before a run starts, naming the variable and the way around it.
    out = cli("--db", sqlite_url, "audit", "--replay-backend", "runware")
    assert out.code == 2 and "RUNWARE_API_KEY" in out.err and "--replay-backend" in out.err
    with Ledger.open(sqlite_url) as ledger, ledger.reading() as conn:
        assert conn.execute(select(func.count()).select_from(audit_runs)).scalar_one() == 0


# -- inputs --------------------------------------------------------------------------------


def test_unfetchable_input_image_is_skipped_with_inputs_unavailable(
    sqlite_url: str, server: ReferenceServer
) -> None:
    with Ledger.open(sqlite_url) as ledger:
        [ok] = make_originals(ledger, server.url, [image_request()])
        record = ledger.get(ok)
        gone = f"{server.base_url}/outputs/does-not-exist.png"
        [img2img] = ledger.add(
            [dataclasses.replace(record, idempotency_key=None, params={**record.params, "seedImage": gone})]
        )
        store_fp = ledger.fingerprint_of(ok)
        ledger.attach_fingerprint(img2img, store_fp)
        outcome = audit(ledger, server.url)
        got = by_record(ledger, outcome.run.id)
        assert got[ok].outcome == "pass"
        assert got[img2img].outcome == "skipped"
        assert got[img2img].error_code == "inputs-unavailable"
        assert "does-not-exist.png" in got[img2img].warnings[-1].detail
        checked = get_run(ledger, outcome.run.id[:8])
        assert checked.id == outcome.run.id


def test_max_cost_stops_launching_mid_run_and_resume_finishes(
    sqlite_url: str, server: ReferenceServer
) -> None:
    def cheap(record: NewRecord) -> NewRecord:
        # The recorded cost understates what the replays really cost (x10).
        return dataclasses.replace(record, cost=(record.cost or 0.0) / 10)

    with Ledger.open(sqlite_url) as ledger:
        ids = make_originals(
            ledger, server.url, [image_request(seed=s, width=32, height=32) for s in range(1, 11)], edit=cheap
        )
        plan = plan_audit(ledger, Selection(), AuditOptions(backend_url=server.url))
        limit = plan.estimated_cost * 3  # room for about three real replays
        outcome = audit(ledger, server.url, concurrency=1, max_cost=limit)
        run = outcome.run
        assert outcome.interrupted and run.status == "interrupted"
        assert run.summary["stopped"] == "max-cost"
        done = run.summary["results"]
        assert 1 <= done < len(ids) and run.summary["pending"] == len(ids) - done
        assert run.summary["cost"] <= limit + 1e-9
        finished = asyncio.run(resume_audit(ledger, run.id, overrides={"max_cost": limit * 100}))
        assert finished.run.status == "finished"
        assert finished.run.summary["outcomes"] == {"pass": len(ids)}
        assert sorted(by_record(ledger, run.id)) == ids


def test_finished_run_is_sealed_into_the_log_when_a_key_is_configured(
    sqlite_url: str, server: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Signer.generate("audit.test/log")
    monkeypatch.setenv("SEEDLEDGER_SIGNING_KEY", signer.private_key_string())
    with Ledger.open(sqlite_url) as ledger:
        ids = make_originals(ledger, server.url, [image_request(seed=s, width=32, height=32) for s in (1, 2)])
        outcome = audit(ledger, server.url)
        assert outcome.run.summary["sealed"] == 2 * len(ids)  # the records and their results
        report = verify(ledger, [signer.verifier])
        assert report.divergence is None
        assert report.entries == {"record": 2, "audit-result": 2, "environment": 0}
