"""Job dependencies (dependsOn) on moto: the API, the consumer and the jobs table's stream handler, as Lambda runs
them. ``settle`` hands the stream to the real stats-stream handler (counters and dependencies), then runs the
queues, until nothing moves."""

from __future__ import annotations

import time
import uuid
from typing import Any

from functions.dal.dependencies import edge_key
from functions.dal.jobs_repository import key_shard
from functions.handlers import stats_stream
from functions.handlers.runtime import dependency_store, runtime
from functions.models.job import JobStatus
from local.lambda_context import LocalContext
from local.stream_source import drain as drain_stream
from tests.integration.harness import TENANT_A, Service, failing_job, ok_job


def _stream(service: Service) -> int:
    return drain_stream(service.settings.jobs_table, stats_stream.handler, batch_size=100)


def settle(service: Service, *, run_jobs: bool = True, timeout: float = 30.0) -> None:
    """Hand the stream to its handler and run the queued jobs, until neither has anything left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handled = _stream(service)
        ran = service.drain() if run_jobs else []
        if not handled and not ran and not _stream(service):
            return
    raise AssertionError("dependencies did not settle")


def _status(service: Service, job_id: str) -> str:
    return service.record(job_id).status.value


def test_a_chain_runs_in_order_each_job_waiting_until_its_dependency_completed(service: Service) -> None:
    # Given A, B depending on A, C depending on B
    a = service.create_job(ok_job())
    b = service.create_job(ok_job(dependsOn=[a["id"]]))
    c = service.create_job(ok_job(dependsOn=[b["id"]]))

    # Then B and C wait, showing what they wait for; only A's message was sent
    assert (b["status"], b["dependsOn"], b["waitingOn"]) == ("waiting", [a["id"]], 1)
    assert (c["status"], c["dependsOn"], c["waitingOn"]) == ("waiting", [b["id"]], 1)
    assert [entry["status"] for entry in b["history"]] == ["waiting"]
    assert len(service.sent) == 1

    # When A runs (and the stream is handled) B is released and runs, then C
    service.drain()
    assert _status(service, b["id"]) == "waiting"  # nothing moves before the stream is handled
    settle(service)

    # Then every one completed, each after its dependency
    jobs = [service.job(job["id"]) for job in (a, b, c)]
    assert [job["status"] for job in jobs] == ["completed"] * 3
    assert jobs[1]["waitingOn"] == 0 and jobs[2]["waitingOn"] == 0
    assert [entry["status"] for entry in jobs[2]["history"]] == ["waiting", "pending", "processing", "completed"]
    assert jobs[0]["completedAt"] <= jobs[1]["startedAt"] and jobs[1]["completedAt"] <= jobs[2]["startedAt"]


def test_a_failed_dependency_cancels_the_chain_below_it_with_the_exact_error(service: Service) -> None:
    # Given A (fails on its only attempt), B depending on A, C depending on B and on a completed job
    done = service.create_job(ok_job())
    service.drain()
    a = service.create_job(failing_job(max_attempts=1))
    b = service.create_job(ok_job(dependsOn=[a["id"]]))
    c = service.create_job(ok_job(dependsOn=[b["id"], done["id"]]))
    assert c["waitingOn"] == 1  # the completed one counts as met

    # When A fails
    settle(service)

    # Then B is cancelled because A failed, C because B was cancelled
    b_after, c_after = service.job(b["id"]), service.job(c["id"])
    assert (b_after["status"], b_after["error"]) == ("cancelled", f"dependency {a['id']} failed")
    assert (c_after["status"], c_after["error"]) == ("cancelled", f"dependency {b['id']} cancelled")
    assert b_after["attempts"] == 0 and c_after["attempts"] == 0
    assert b_after["history"][-1] == {
        "status": "cancelled",
        "at": b_after["completedAt"],
        "error": f"dependency {a['id']} failed",
    }


def test_dependencies_already_completed_count_as_met_and_the_job_runs_at_once(service: Service) -> None:
    first, second = service.create_job(ok_job()), service.create_job(ok_job())
    service.drain()

    # When a job depends on both (one named twice: a repeated id counts once)
    job = service.create_job(ok_job(dependsOn=[first["id"], second["id"], first["id"]]))

    # Then it is pending at once, with nothing to wait for, and runs
    assert (job["status"], job["dependsOn"], job["waitingOn"]) == ("pending", [first["id"], second["id"]], 0)
    service.drain()
    assert _status(service, job["id"]) == "completed"


def test_a_dependency_already_failed_or_cancelled_cancels_the_new_job(service: Service) -> None:
    failed = service.create_job(failing_job(max_attempts=1))
    service.drain()
    cancelled = service.create_job(ok_job(delaySeconds=3600))
    assert service.api("DELETE", f"/jobs/{cancelled['id']}").status == 200

    on_failed = service.create_job(ok_job(dependsOn=[failed["id"]]))
    on_cancelled = service.create_job(ok_job(dependsOn=[cancelled["id"]]))
    assert on_failed["status"] == "waiting"
    settle(service)

    assert service.job(on_failed["id"])["error"] == f"dependency {failed['id']} failed"
    assert service.job(on_cancelled["id"])["error"] == f"dependency {cancelled['id']} cancelled"


def test_a_dependency_completing_while_its_dependent_is_created_is_not_missed(service: Service) -> None:
    # Given A's completion was handled by the stream before B existed (the race the creation event closes)
    a = service.create_job(ok_job())
    service.drain()
    # B's edges were written and its record too, but the stream saw A complete before that
    settle(service)
    b = service.create_job(ok_job(dependsOn=[a["id"]]))
    assert b["status"] == "pending"  # the consistent read at creation saw A completed

    # And when the completion lands between the creation's read and its edges (A read as processing)
    c = service.create_job(ok_job())
    real_jobs = dependency_store().jobs

    def stale(tenant: str, ids: Any) -> Any:
        found = real_jobs(tenant, ids)
        return {job_id: job.model_copy(update={"status": JobStatus.PROCESSING}) for job_id, job in found.items()}

    service.drain()
    _stream(service)  # C's completion handled: no edge exists yet
    store = dependency_store()
    store.jobs = stale  # type: ignore[method-assign]
    try:
        d = service.create_job(ok_job(dependsOn=[c["id"]]))
    finally:
        del store.jobs
    assert d["status"] == "waiting"

    # Then D's own creation event finds C final and releases it
    settle(service)
    assert _status(service, d["id"]) == "completed"


def test_a_waiting_job_can_be_cancelled_and_its_dependents_follow(service: Service) -> None:
    a = service.create_job(ok_job(delaySeconds=3600))
    b = service.create_job(ok_job(dependsOn=[a["id"]]))
    c = service.create_job(ok_job(dependsOn=[b["id"]]))

    status, body, _ = service.api("DELETE", f"/jobs/{b['id']}")
    assert (status, body["status"]) == (200, "cancelled")
    settle(service, run_jobs=False)

    assert service.job(c["id"])["error"] == f"dependency {b['id']} cancelled"
    assert _status(service, a["id"]) == "scheduled"  # a dependent's end leaves its dependency alone
    # and a cancelled dependent stays so when its dependency completes later
    assert service.api("DELETE", f"/jobs/{a['id']}").status == 200
    settle(service, run_jobs=False)
    assert _status(service, b["id"]) == "cancelled"


def test_waiting_is_listed_counted_and_cancelled_in_bulk(service: Service) -> None:
    a = service.create_job(ok_job(delaySeconds=3600))
    waiting = [service.create_job(ok_job(dependsOn=[a["id"]])) for _ in range(3)]
    settle(service, run_jobs=False)

    status, body, _ = service.api("GET", "/jobs", query={"status": "waiting"})
    assert status == 200 and {job["id"] for job in body["jobs"]} == {job["id"] for job in waiting}
    assert service.stats()["waiting"] == 3

    status, body, _ = service.api("POST", "/jobs/cancel", {"status": "waiting"})
    assert (status, body["cancelled"]) == (200, 3)
    _stream(service)
    assert service.stats()["waiting"] == 0


def test_unknown_and_foreign_ids_are_invalid_option_naming_them(service: Service) -> None:
    theirs = service.create_job(ok_job(), key=service.key_b)
    unknown = str(uuid.uuid4())
    status, body, _ = service.api("POST", "/jobs", ok_job(dependsOn=[theirs["id"], unknown]))
    assert status == 400 and body["code"] == "INVALID_OPTION"
    assert "dependsOn" in body["error"] and theirs["id"] in body["error"] and unknown in body["error"]
    assert body["details"]["unknownIds"] == [theirs["id"], unknown]

    for bad in ([], "x", [1], ["a" * 65], [str(uuid.uuid4())] * 0 + ["ok"] * 101):
        status, body, _ = service.api("POST", "/jobs", ok_job(dependsOn=bad))
        assert (status, body["code"]) == (400, "INVALID_OPTION"), bad
    mine = service.create_job(ok_job())
    status, body, _ = service.api("POST", "/jobs", ok_job(dependsOn=[mine["id"]], delaySeconds=5))
    assert (status, body["code"]) == (400, "INVALID_OPTION")


def test_a_job_with_100_dependencies_the_jobs_of_a_batch_settles(service: Service) -> None:
    status, batch, _ = service.api("POST", "/jobs/batch", {"jobs": [ok_job() for _ in range(100)]})
    assert status == 202, batch
    child = service.create_job(ok_job(dependsOn=batch["jobIds"]))
    assert (child["status"], child["waitingOn"]) == ("waiting", 100)

    settle(service)

    done = service.job(child["id"])
    assert (done["status"], done["waitingOn"], len(done["dependsOn"])) == ("completed", 0, 100)


def test_1000_jobs_depending_on_one_settle_spread_over_the_shards(service: Service) -> None:
    # Given one scheduled job and 1,000 waiting on it (edges and records written in bulk: the API path is the
    # tests above; their creation's stream records are counted, and settle nothing while the parent is scheduled)
    parent = service.create_job(ok_job(delaySeconds=3600))
    template = service.record(service.create_job(ok_job(dependsOn=[parent["id"]]))["id"])
    dependents = [str(uuid.uuid4()) for _ in range(1000)]
    shards = service.settings.dependency_shards
    edges = [
        {**edge_key(TENANT_A, parent["id"], dependent_id, shards), "createdAt": {"S": template.created_at}}
        for dependent_id in dependents
    ]
    for start in range(0, len(edges), 25):
        service.dynamodb.batch_write_item(
            RequestItems={
                service.settings.dependencies_table: [
                    {"PutRequest": {"Item": item}} for item in edges[start : start + 25]
                ]
            }
        )
    # The marker names each shard once: the first creation landing in a shard adds it (the store's own path)
    first_of_shard = {key_shard(job_id, shards): job_id for job_id in reversed(dependents)}
    for dependent_id in first_of_shard.values():
        dependency_store().add_edges(TENANT_A, dependent_id, [parent["id"]], template.created_at)
    for start in range(0, 1000, 99):
        chunk = dependents[start : start + 99]
        runtime().repo.create_many([template.model_copy(update={"id": job_id, "version": 0}) for job_id in chunk])
    _stream(service)
    pks = {edge["pk"]["S"] for edge in edges}
    assert len(pks) == shards  # no single key takes the 1,000 edges

    # When the parent is cancelled
    assert service.api("DELETE", f"/jobs/{parent['id']}").status == 200
    started = time.monotonic()
    _stream(service)

    # Then every dependent is cancelled with the parent named, in one pass of the stream
    settled_in = time.monotonic() - started
    cancelled = [service.record(job_id) for job_id in dependents[::50]]
    assert {job.status for job in cancelled} == {JobStatus.CANCELLED}
    assert {job.error for job in cancelled} == {f"dependency {parent['id']} cancelled"}
    assert settled_in < 60, settled_in


def test_the_stream_handler_is_idempotent_when_a_batch_comes_again(service: Service) -> None:
    a = service.create_job(ok_job())
    b = service.create_job(ok_job(dependsOn=[a["id"]]))
    service.drain()
    table = service.settings.jobs_table
    # The same batch twice (a retried invocation): B is released once
    events: list[dict[str, Any]] = []
    drain_stream(table, lambda event, _ctx: events.append(event), batch_size=100)
    for event in events * 2:
        stats_stream.handler(event, LocalContext("stats-aggregator", 30))
    record = service.record(b["id"])
    assert (record.status.value, record.waiting_on) == ("pending", 0)
    assert [entry.status.value for entry in record.history] == ["waiting", "pending"]


def test_a_released_job_goes_to_its_own_lane(service: Service) -> None:
    # Given a high-priority job and an ordered one, both waiting on one job
    first = service.create_job(ok_job())
    urgent = service.create_job(ok_job(dependsOn=[first["id"]], priority=10))
    grouped = service.create_job(ok_job(dependsOn=[first["id"]], groupId="invoices"))
    sent_before = len(service.sent)

    # When the first completes and the stream is handled
    settle(service)

    # Then each was sent to its lane when released, and ran there
    urls = {params["QueueUrl"] for params in service.sent[sent_before:]}
    assert {service.lane_queues("high").queue_url, service.lane_queues("ordered").queue_url} <= urls
    assert {_status(service, urgent["id"]), _status(service, grouped["id"])} == {"completed"}


def test_a_stray_message_for_a_waiting_job_is_dropped_and_the_job_still_waits(service: Service) -> None:
    first = service.create_job(ok_job(delaySeconds=3600))
    waiting = service.create_job(ok_job(dependsOn=[first["id"]]))
    service.send_message_for(waiting["id"])
    service.drain()
    record = service.record(waiting["id"])
    assert (record.status.value, record.attempts) == ("waiting", 0)
