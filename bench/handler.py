"""Handler overhead per job: our producer and consumer vs bare handlers making the same AWS calls.

    .venv/bin/python bench/handler.py [--jobs 2000] [--batches 200] [--repeat 3]

Every AWS call is answered in-process by a ``before-call`` hook returning a canned response (what
``botocore.stub.Stubber`` does, without queueing one response per call): GetItem returns the job the producer
created, writes and sends return empty successes. So what is timed is Python: Powertools' resolver, logger and
metrics, validation, the domain logic, botocore's parameter validation and serialisation.

- producer: ``functions.handlers.api.handler`` for POST /jobs (a simulate job) vs a bare handler that parses the
  body and makes the very calls ours made (TransactWriteItems, SendMessage; captured from our first call) with
  plain boto3 clients, and answers a JSON body;
- consumer: ``functions.handlers.consumer.handler`` for a 10-record SQS batch (simulate, durationMs 0, no failure)
  vs a bare handler that, per record, parses the body and makes the same calls (GetItem, 2 x TransactWriteItems).

Runs as deployed (``ServiceConfig.lambda_environment``): LOG_LEVEL INFO, metrics on (the EMF lines go to
/dev/null), tracing off, and our clients as ``functions/dal/clients.py`` makes them on Lambda (no client-side
parameter validation, a fixed User-Agent); the bare handler's clients keep boto3's defaults, as a hand-written
handler would. Ours and bare alternate in ``--repeat`` x 10 short rounds over the same events; prints the median
microseconds per job of each side and the median of the per-round ratios ours / bare (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import time
from typing import Any

from _common import ROOT  # noqa: F401 - puts the repository on sys.path

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-queue"
DLQ_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs-dlq"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs-queue"
ROUNDS_PER_REPEAT = 10


class Canned:
    """before-call: answer every request without sending it; before-parameter-build: note calls when capturing."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.capture: list[tuple[str, str, dict[str, Any]]] | None = None
        self.calls = 0

    def before_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.capture is not None:
            self.capture.append((model.service_model.service_name, model.name, json.loads(json.dumps(params))))

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse

        self.calls += 1
        op = model.name
        parsed: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": 200}}
        params = context.get("bench_params", {})
        if op == "GetItem":
            item = self.items.get(params.get("Key", {}).get("pk", {}).get("S", ""))
            if item:
                parsed["Item"] = item
        elif op in ("PutItem", "TransactWriteItems"):
            # A created job (a plain job is one PutItem; a keyed one a transaction): kept for the consumer's GetItem.
            puts = [params] if op == "PutItem" else [e["Put"] for e in params.get("TransactItems", []) if "Put" in e]
            for put in puts:
                if put.get("ConditionExpression") == "attribute_not_exists(pk)":
                    self.items[put["Item"]["pk"]["S"]] = put["Item"]
        elif op == "SendMessage":
            parsed.update({"MessageId": "00000000-0000-0000-0000-000000000000", "MD5OfMessageBody": "x"})
        elif op == "GetQueueUrl":
            parsed["QueueUrl"] = QUEUE_URL
        return AWSResponse("https://canned", 200, {}, None), parsed


def install(canned: Canned) -> None:
    from botocore.handlers import BUILTIN_HANDLERS

    def keep_params(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["bench_params"] = params
        canned.before_params(params=params, **kwargs)

    BUILTIN_HANDLERS.append(("before-parameter-build", keep_params))
    BUILTIN_HANDLERS.append(("before-call", canned.before_call))


def environment() -> None:
    from infra.config import AWS_CONFIG

    os.environ.update(AWS_CONFIG.settings(queue_url=QUEUE_URL, dlq_url=DLQ_URL).to_env())
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            **AWS_CONFIG.lambda_environment(),
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def post_event(i: int) -> dict[str, Any]:
    from local.gateway import build_event

    body = {
        "type": "simulate",
        "payload": {
            "action": "resize",
            "target": f"https://example.com/img-{i}.png",
            "durationMs": 0,
            "failureRate": 0,
        },
        "maxAttempts": 3,
    }
    headers = {"content-type": "application/json", "x-api-key": "bench-key"}
    # What the authorizer hands the API for the key (a limit high enough never to refuse; its leases are counted).
    caller = {"tenant": "local", "keyId": "key-id", "scope": "full", "rateLimit": 100000, "burstLimit": 200000}
    return build_event("POST", "/jobs", headers, json.dumps(body).encode(), caller, "127.0.0.1")


def sqs_event(job_ids: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": json.dumps({"v": 1, "tenant": "local", "jobId": job_id}),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1",
            }
            for i, job_id in enumerate(job_ids)
        ]
    }


def time_per_job(fn: Any, events: list[dict[str, Any]], jobs_per_event: int, context: Any) -> float:
    started = time.perf_counter()
    for event in events:
        fn(event, context)
    return (time.perf_counter() - started) / (len(events) * jobs_per_event) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="POST /jobs calls per run")
    parser.add_argument("--batches", type=int, default=200, help="10-record batches per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    environment()
    canned = Canned()
    install(canned)
    import boto3

    from functions.handlers import api, consumer
    from local.lambda_context import LocalContext

    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    api_ctx, consumer_ctx = LocalContext("api", 10, 512), LocalContext("consumer", 900, 1024)

    # Our calls, captured once (warm: the tenant lookup is cached after the first request, as in a warm container).
    with contextlib.redirect_stdout(devnull):
        api.handler(post_event(-1), api_ctx)
        canned.capture = []
        response = api.handler(post_event(-2), api_ctx)
        producer_calls, canned.capture = canned.capture, None
        assert response["statusCode"] == 202, response
        job_id = json.loads(response["body"])["id"]
        canned.capture = []
        result = consumer.handler(sqs_event([job_id]), consumer_ctx)
        consumer_calls, canned.capture = canned.capture, None
        assert not result.get("batchItemFailures"), result
    # The consumer must have run the job (claim and outcome writes), not dropped its message as unknown.
    writes = [op for _, op, _ in consumer_calls if op in ("PutItem", "TransactWriteItems")]
    if len(writes) < 2:
        raise SystemExit(f"handler: the consumer did not run the job (its calls: {consumer_calls}); not measuring")

    # Pending jobs for the consumer: created by our producer, each read back by GetItem in every batch.
    ids: list[str] = []
    with contextlib.redirect_stdout(devnull):
        for i in range(10):
            ids.append(json.loads(api.handler(post_event(i), api_ctx)["body"])["id"])

    clients = {service: boto3.client(service) for service in {s for s, _, _ in producer_calls + consumer_calls}}

    def replay(calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        for service, op, params in calls:
            getattr(clients[service], snake(op))(**params)

    def bare_producer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = json.loads(event["body"])
        replay(producer_calls)
        return {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}

    def bare_consumer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for record in event["Records"]:
            json.loads(record["body"])
            replay(consumer_calls)
        return {"batchItemFailures": []}

    post_events = [post_event(i) for i in range(args.jobs)]
    batch_events = [sqs_event(ids) for _ in range(args.batches)]
    print(
        f"handler: {args.jobs} POST /jobs and {args.batches} x 10-record batches per run; ours and bare alternate "
        f"in {args.repeat * ROUNDS_PER_REPEAT} rounds; "
        f"AWS calls per job: producer {len(producer_calls)} "
        f"({', '.join(op for _, op, _ in producer_calls)}), consumer {len(consumer_calls)} "
        f"({', '.join(op for _, op, _ in consumer_calls)})",
        flush=True,
    )
    # Ours and bare alternate in short rounds, so that a slow spell of this shared machine (CPU frequency, another
    # process) falls on both sides alike; the figure is the median of the per-round ratios.
    results: dict[str, list[float]] = {k: [] for k in ("api", "bare api", "consumer", "bare consumer")}
    rounds = args.repeat * ROUNDS_PER_REPEAT
    with contextlib.redirect_stdout(devnull):
        for round_index in range(rounds):
            posts = post_events[round_index::rounds] or post_events
            batches = batch_events[round_index::rounds] or batch_events
            results["api"].append(time_per_job(api.handler, posts, 1, api_ctx))
            results["bare api"].append(time_per_job(bare_producer, posts, 1, api_ctx))
            results["consumer"].append(time_per_job(consumer.handler, batches, 10, consumer_ctx))
            results["bare consumer"].append(time_per_job(bare_consumer, batches, 10, consumer_ctx))
    med = {k: statistics.median(v) for k, v in results.items()}
    for ours, bare, label in (("api", "bare api", "producer (POST /jobs)"), ("consumer", "bare consumer", "consumer")):
        ratio = statistics.median(o / b for o, b in zip(results[ours], results[bare], strict=True))
        print(
            f"  {label:<22} ours {med[ours]:8.0f} us/job   bare boto3 {med[bare]:8.0f} us/job   "
            f"{ratio:5.2f}x  (target <= 1.5x: {'PASS' if ratio <= 1.5 else 'FAIL'})"
        )


if __name__ == "__main__":
    main()
