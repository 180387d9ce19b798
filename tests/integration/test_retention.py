"""Retention: finished jobs carry a DynamoDB TTL; expired jobs are gone for the API; stats do not move."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from functions.dal.jobs_repository import record_key
from functions.handlers import stats_stream
from local.stream_source import deliver_once, drain
from tests.integration.harness import TENANT_A, Service, failing_job, ok_job

DAY = 86_400


def _item(service: Service, job_id: str) -> dict:
    return dict(
        service.dynamodb.get_item(
            TableName=service.settings.jobs_table, Key={"pk": {"S": record_key(TENANT_A, job_id)}}
        ).get("Item", {})
    )


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def test_a_finished_job_expires_after_the_retention_and_an_unfinished_one_never(service: Service) -> None:
    # Given a job that completes and one still pending
    done = service.create_job(ok_job())
    service.drain()
    waiting = service.create_job(ok_job(delaySeconds=3600))

    # Then the finished one expires 30 days after it ended, the waiting one carries no expiry
    finished = service.job(done["id"])
    assert int(_item(service, done["id"])["expiresAt"]["N"]) == _epoch(finished["completedAt"]) + 30 * DAY
    assert "expiresAt" not in _item(service, waiting["id"])


def test_a_retried_job_no_longer_expires(service: Service) -> None:
    # Given a failed job (it carries an expiry)
    job = service.create_job(failing_job(max_attempts=1))
    service.drain()
    assert "expiresAt" in _item(service, job["id"])

    # When it is retried, it is live again: no expiry until it ends again
    assert service.api("POST", f"/jobs/{job['id']}/retry")[0] == 202
    assert "expiresAt" not in _item(service, job["id"])


def test_an_expired_job_is_gone_for_the_api_before_ttl_deletes_it_and_stats_stay(service: Service) -> None:
    # Given two completed jobs, one of which has passed its expiry (DynamoDB's TTL sweep has not run yet)
    kept = service.create_job(ok_job("kept.png"))
    old = service.create_job(ok_job("old.png"))
    service.drain()
    stats_before = service.stats()
    service.dynamodb.update_item(
        TableName=service.settings.jobs_table,
        Key={"pk": {"S": record_key(TENANT_A, old["id"])}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )

    # Then it is not found and not listed; the other one is
    assert service.api("GET", f"/jobs/{old['id']}")[0] == 404
    listed = [job["id"] for job in service.api("GET", "/jobs")[1]["jobs"]]
    by_status = [job["id"] for job in service.api("GET", "/jobs", query={"status": "completed"})[1]["jobs"]]
    assert listed == by_status == [kept["id"]]

    # And when TTL deletes the record, the stats are what they were: counted by transition, not by record
    service.dynamodb.delete_item(
        TableName=service.settings.jobs_table, Key={"pk": {"S": record_key(TENANT_A, old["id"])}}
    )
    assert service.stats() == stats_before
    assert stats_before["completed"] == 2


def test_an_expiry_never_reaches_the_stats_aggregator_and_the_counts_stay_exact(service: Service) -> None:
    # Given the aggregator's own handler behind the local stream source, recording what each invocation is given
    given: list[str] = []

    def aggregator(event: dict[str, Any], context: Any) -> Any:
        given.extend(record["eventName"] for record in event["Records"])
        return stats_stream.handler(event, context)

    table = service.settings.jobs_table
    # And two completed jobs, counted
    kept = service.create_job(ok_job("kept.png"))
    expired = service.create_job(ok_job("expired.png"))
    service.drain()
    drain(table, aggregator)
    stats_before = service.stats()
    assert stats_before["completed"] == 2
    given.clear()

    # When TTL deletes one of them and another job is created and completes meanwhile
    service.dynamodb.delete_item(TableName=table, Key={"pk": {"S": record_key(TENANT_A, expired["id"])}})
    fresh = service.create_job(ok_job("fresh.png"))
    service.drain()
    drain(table, aggregator)

    # Then the aggregator saw the new job's creation and its changes, and not the removal (it left the stream)
    assert "REMOVE" not in given
    assert given[0] == "INSERT" and "MODIFY" in given
    assert deliver_once(table, aggregator, batch_size=100) == 0
    # And the counts are exact: the expired job stays counted as completed, the new one is added
    stats_after = service.stats()
    assert stats_after["completed"] == 3
    assert stats_after["enqueued"] == stats_before["enqueued"] + 1
    assert service.job(kept["id"])["status"] == service.job(fresh["id"])["status"] == "completed"


def test_pages_stay_full_when_expired_jobs_sit_among_the_listed_ones(service: Service) -> None:
    # Given five completed jobs, the second and third newest of which have expired (TTL has not deleted them)
    ids = [service.create_job(ok_job(f"page-{n}.png"))["id"] for n in range(5)]
    service.drain()
    newest_first = [job["id"] for job in service.api("GET", "/jobs", query={"limit": "5"})[1]["jobs"]]
    assert sorted(newest_first) == sorted(ids)
    for expired in newest_first[1:3]:
        service.dynamodb.update_item(
            TableName=service.settings.jobs_table,
            Key={"pk": {"S": record_key(TENANT_A, expired)}},
            UpdateExpression="SET expiresAt = :past",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )

    # When they are listed two at a time
    pages: list[list[str]] = []
    query = {"limit": "2"}
    while True:
        response = service.api("GET", "/jobs", query=query)
        assert response[0] == 200, response
        body = response[1]
        pages.append([job["id"] for job in body["jobs"]])
        if not body.get("nextCursor"):
            break
        query = {"limit": "2", "cursor": body["nextCursor"]}

    # Then the first page is still full (the listing reads on past the expired ones) and each live job shows once
    live = [newest_first[0], *newest_first[3:]]
    assert pages[0] == live[:2]
    assert [job_id for page in pages for job_id in page] == live
