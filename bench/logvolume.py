"""The bytes each function writes to CloudWatch Logs per job at the default log level (INFO), as deployed.

    .venv/bin/python bench/logvolume.py [--json]

Runs the real handlers in the deployed environment (``ServiceConfig.lambda_environment``: INFO, metrics on, tracing
off) with every AWS call answered in-process (``bench/handler.py``'s canned responses), and counts what they print:
their structured log lines and Powertools' EMF metric lines (CloudWatch ingests both as log events). The standard
job: ``POST /jobs`` (a ``message`` job), one ``GET /jobs/{id}``, and the consumer running it, in a batch of one
(light traffic) and in a batch of ten (busy traffic, the per-invocation lines shared by ten jobs). Lambda itself adds
its START, END and REPORT lines to every invocation (``PLATFORM_BYTES_PER_INVOCATION``, counted apart: the cost
model multiplies it by its invocations).

Runs the handlers in a fresh interpreter: the canned responses replace botocore's sending for the whole process.
``measure()`` runs this script that way and returns its ``--json`` figures (bench/cost.py can import it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# START (~70 B: "START RequestId: <uuid> Version: $LATEST"), END (~50 B) and REPORT (~200-260 B: durations, memory;
# "Init Duration" on a cold start) lines, text format, one of each per invocation.
PLATFORM_BYTES_PER_INVOCATION = 330


def measure() -> dict[str, Any]:
    """The figures of ``--json``, measured in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--json"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _printed(fn: Any, *args: Any) -> tuple[Any, int]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(*args)
    return result, len(out.getvalue().encode())


def run() -> dict[str, Any]:
    from handler import Canned, environment, install, sqs_event

    environment()
    install(Canned())
    from functions.handlers import api, consumer
    from local.gateway import build_event
    from local.lambda_context import LocalContext

    api_ctx, consumer_ctx = LocalContext("api", 10, 512), LocalContext("consumer", 900, 1024)
    headers = {"content-type": "application/json", "x-api-key": "bench-key"}
    # What the authorizer passes for a full key of the tenant sqs_event names (functions/logic/keys.py; rate 0: none)
    key = {"tenant": "local", "keyId": "key-id", "scope": "full", "rateLimit": 0, "burstLimit": 0}

    def post() -> tuple[str, int]:
        body = json.dumps({"type": "message", "payload": {"message": "hello"}}).encode()
        event = build_event("POST", "/jobs", headers, body, key, "127.0.0.1")
        response, size = _printed(api.handler, event, api_ctx)
        assert response["statusCode"] == 202, response
        return json.loads(response["body"])["id"], size

    def get(job_id: str) -> int:
        event = build_event("GET", f"/jobs/{job_id}", headers, b"", key, "127.0.0.1")
        response, size = _printed(api.handler, event, api_ctx)
        assert response["statusCode"] == 200, response
        return size

    def consume(job_ids: list[str]) -> int:
        result, size = _printed(consumer.handler, sqs_event(job_ids), consumer_ctx)
        assert not result.get("batchItemFailures"), result
        return size

    # Warm containers: a first request and a first batch print what only a cold start prints.
    with contextlib.redirect_stdout(io.StringIO()):
        consume([post()[0]])
    job_id, post_bytes = post()
    get_bytes = get(job_id)
    batch_of_one = consume([job_id])
    ids = [post()[0] for _ in range(10)]
    batch_of_ten = consume(ids)
    return {
        "level": "INFO",
        "api_post_bytes": post_bytes,
        "api_get_bytes": get_bytes,
        "consumer_batch_of_1_bytes_per_job": batch_of_one,
        "consumer_batch_of_10_bytes_per_job": round(batch_of_ten / 10),
        "platform_bytes_per_invocation": PLATFORM_BYTES_PER_INVOCATION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args()
    figures = run()
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"logs at {figures['level']} per job: api {figures['api_post_bytes']} B (POST /jobs) + "
        f"{figures['api_get_bytes']} B (GET /jobs/{{id}}); consumer {figures['consumer_batch_of_1_bytes_per_job']} B "
        f"(batch of 1), {figures['consumer_batch_of_10_bytes_per_job']} B (batch of 10); Lambda's "
        f"START/END/REPORT lines, ~{PLATFORM_BYTES_PER_INVOCATION} B per invocation, only at system log level INFO "
        "(deployed: WARN, none)"
    )


if __name__ == "__main__":
    main()
