"""The floor under bench/e2e.py's enqueue rate: what one ``POST /jobs`` costs the local stack's CPU, part by part.

    .venv/bin/python bench/local_floor.py [--jobs 300] [--rounds 7]

``make run`` is one Python process (moto in-process, the HTTP gateway, the handlers, the event-source emulators):
its Python code runs on one core at a time, so the CPU a job takes bounds how fast the stack can accept jobs, however
the work is spread over threads. Measured here in-process, single-threaded, as CPU time (``time.process_time``),
with nothing else running, each part against the local stack's own tables and queues (``local.aws``, moto patched
as the stack runs it), in interleaved rounds (the figure is the median):

- the record: the ``PutItem`` of one job record alone, as our API writes it (captured from the handler). Any shape
  that keeps a job's record pays at least this to accept a job;
- the API's calls: every AWS call our ``POST /jobs`` makes (the record, the send), replayed bare;
- the handler: ``functions.handlers.api.handler`` for ``POST /jobs`` against moto, with no HTTP in front of it;
- over HTTP: ``python -m local`` with no consumer (``JOBS_LOCAL_CONSUMERS=0``), the stack process's CPU time per
  ``POST /jobs`` on 8 keep-alive connections: the gateway, the handler and the stream's count of each new job.

bench/e2e.py prints the stack's CPU per job while enqueueing over HTTP (the gateway, the stream's stats and the
consumers running meanwhile); the peer's enqueue rate is in its output. The last line:
``floor: POST /jobs <A> ms of CPU in-process, the record's write alone <B> ms: at most <R> jobs/s on one core``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import API_KEY, BUILD, cpu_seconds, start_local_stack, stop_process_group, wait_http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs per part per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-http", action="store_true", help="skip the part over HTTP (it starts the stack)")
    args = parser.parse_args()
    over_http = None if args.no_http else http_cpu_per_post(args.jobs)

    from botocore.handlers import BUILTIN_HANDLERS
    from handler import post_event, snake

    from infra.config import local_config
    from local.aws import LocalAws, create_resources, fake_credentials, patch_moto
    from local.lambda_context import LocalContext

    # Noted before any session exists: a session copies these handlers when it is made.
    captured: list[tuple[str, str, dict[str, Any]]] = []
    capturing = [False]

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        if capturing[0]:
            captured.append((model.service_model.service_name, model.name, json.loads(json.dumps(params))))

    BUILTIN_HANDLERS.append(("before-parameter-build", capture))
    fake_credentials()
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    patch_moto()
    aws = LocalAws(None)
    aws.start()
    try:
        config = local_config()
        resources = create_resources(config)
        settings = config.settings(queue_url=resources.queue_url, dlq_url=resources.dlq_url, **resources.lane_urls())
        os.environ.update(settings.to_env())
        import boto3

        from functions.handlers import api

        context = LocalContext("api", 10, 512)
        devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
        with contextlib.redirect_stdout(devnull):
            api.handler(post_event(-1), context)  # warm: imports, clients, the first model validations
            capturing[0] = True
            response = api.handler(post_event(-2), context)
            capturing[0] = False
        if response["statusCode"] != 202:
            raise SystemExit(f"local floor: POST /jobs answered {response['statusCode']}: {response['body']}")
        job_id = json.loads(response["body"])["id"]
        calls = [(service, op, params) for service, op, params in captured if job_id in json.dumps(params)]
        record = [call for call in calls if call[1] in ("PutItem", "TransactWriteItems")][:1]
        if not record:
            raise SystemExit(f"local floor: no record write among the POST's calls: {[op for _, op, _ in calls]}")
        clients = {service: boto3.client(service) for service in {service for service, _, _ in calls}}
        serial = [0]

        def replay(chosen: list[tuple[str, str, dict[str, Any]]]) -> Callable[[], None]:
            texts = [(service, op, json.dumps(params)) for service, op, params in chosen]

            def run() -> None:
                serial[0] += 1
                fresh = f"{serial[0]:08d}-floor-{job_id[14:]}"  # a new job id, so the create's condition holds
                for service, op, text in texts:
                    method = getattr(clients[service], snake(op))
                    method(**json.loads(text.replace(job_id, fresh)))

            return run

        events = iter(post_event(i) for i in range(10**9))

        def handler() -> None:
            with contextlib.redirect_stdout(devnull):
                api.handler(next(events), context)

        parts: dict[str, Callable[[], None]] = {
            "record": replay(record),
            "calls": replay(calls),
            "handler": handler,
        }
        figures: dict[str, list[float]] = {name: [] for name in parts}
        sqs = boto3.client("sqs")
        for _ in range(args.rounds):
            for name, run in parts.items():
                started = time.process_time()
                for _ in range(args.jobs):
                    run()
                figures[name].append((time.process_time() - started) / args.jobs * 1000)
                # The stack's consumers keep the queue drained; moto's SQS work grows with a queue's depth.
                _drain(sqs, resources.queue_url)
    finally:
        aws.stop()

    med = {name: statistics.median(values) for name, values in figures.items()}
    ops = ", ".join(op for _, op, _ in calls)
    print(f"local floor: one POST /jobs in-process, single-threaded; median CPU of {args.rounds} rounds x {args.jobs}")
    print(f"  moto: the record's {record[0][1]} alone      {med['record']:6.2f} ms  ({1000 / med['record']:5.0f}/s)")
    print(f"  moto: the API's calls ({ops})  {med['calls']:6.2f} ms  ({1000 / med['calls']:5.0f}/s)")
    print(f"  the API handler against moto, no HTTP   {med['handler']:6.2f} ms  ({1000 / med['handler']:5.0f}/s)")
    if over_http is not None:
        print(f"  the stack over HTTP, no consumer running  {over_http:6.2f} ms  ({1000 / over_http:5.0f}/s)")
    print(
        f"floor: POST /jobs {med['handler']:.2f} ms of CPU in-process, "
        f"the record's write alone {med['record']:.2f} ms: at most {1000 / med['handler']:.0f} jobs/s on one core"
    )


def http_cpu_per_post(jobs: int) -> float | None:
    """The local stack's CPU ms per ``POST /jobs`` over HTTP with no consumer running (None if it did not start)."""
    from e2e import enqueue

    consumers_off = {"JOBS_LOCAL_CONSUMERS": "0", "JOBS_LOCAL_LANE_CONSUMERS": "0"}
    proc, port = start_local_stack(BUILD / "local-floor.log", extra_env=consumers_off)
    try:
        if not wait_http(port, "/health", 90, proc):
            return None
        headers = {"x-api-key": API_KEY}
        warm = [{"type": "message", "payload": {"message": "warm"}}] * 20
        enqueue(port, headers, warm, 4, 202)
        bodies = [
            {"type": "simulate", "payload": {"action": "fetch", "target": f"https://example.com/{i}", "durationMs": 50}}
            for i in range(jobs)
        ]
        time.sleep(1)  # the warm-up's stream records counted
        before = cpu_seconds(proc.pid)
        enqueue(port, headers, bodies, 8, 202)
        time.sleep(1)  # and these
        after = cpu_seconds(proc.pid)
        if before is None or after is None:
            return None
        return (after - before - _idle_cpu(proc.pid, 1.0)) / jobs * 1000
    finally:
        stop_process_group(proc)


def _idle_cpu(pid: int, seconds: float) -> float:
    """What the stack spends meanwhile with nothing to do (its pollers, the sweeper), for ``seconds`` x 2 sleeps."""
    before = cpu_seconds(pid)
    time.sleep(seconds * 2)
    after = cpu_seconds(pid)
    return (after - before) if before is not None and after is not None else 0.0


def _drain(sqs: Any, queue_url: str) -> None:
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


if __name__ == "__main__":
    main()
