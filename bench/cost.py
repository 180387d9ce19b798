"""AWS requests and dollars per job: N simulate jobs through the in-process local stack, every AWS request counted.

    .venv/bin/python bench/cost.py [--jobs 300] [--connections 4] [--save .build/bench/recording.json]
                                   [--load .build/bench/recording.json]

The stack is ``local.stack.LocalStack`` (moto in-process, the gateway, the SQS event-source emulator, the sweeper)
in this process; requests are counted by botocore event hooks (see _recording.py) and attributed to the API
function, the consumer, the event-source mapping (ESM) or the sweeper. Jobs: ``simulate`` {durationMs 50,
failureRate 0.35}, maxAttempts 3 (about 1.5 attempts per job). moto's SQS slows down as the queue deepens, so keep
N modest: the counts per job do not depend on N.

How AWS bills what is counted (us-east-1 list prices, checked 2025; on-demand DynamoDB after the 2024-11-01 cut):
- API Gateway REST API: $3.50 per million requests (first 333 M/month)      aws.amazon.com/api-gateway/pricing/
  (an HTTP API would be $1.00 per million)
- Lambda (x86): $0.20 per million requests + $0.0000166667 per GB-second      aws.amazon.com/lambda/pricing/
  billed duration per invocation rounded up to 1 ms; memory from infra/config.py
- SQS standard: $0.40 per million requests, each 64 KB chunk of payload a request  aws.amazon.com/sqs/pricing/
  the Lambda event-source mapping's receives/deletes are SQS requests; its empty receives are not counted here
- DynamoDB on-demand: $0.625 per million write request units, $0.125 per million read request units
                                                                               aws.amazon.com/dynamodb/pricing/on-demand/
  a write unit per 1 KB of item (the larger of before/after), x2 in a transaction; every GSI write costs the
  index item's size (projection ALL = the whole item) in ordinary write units; reads 4 KB per unit, x0.5 eventual
- S3: PUT $0.005 per 1,000, GET $0.0004 per 1,000 (these jobs do not touch S3)  aws.amazon.com/s3/pricing/
Not counted: CloudWatch Logs/metrics, X-Ray, data transfer, free tiers.

Lambda duration on AWS cannot be measured here: it is estimated (``_recording.estimate_ms``) as the handler's own
time measured locally plus ASSUMED_CALL_MS per AWS call (a typical in-region SDK round trip). Own time is CPU time
for the API (it never waits but on AWS; wall time here would include waits for the interpreter lock that moto and
the consumers hold in this process) and wall time minus the time inside moto for the consumer (its jobs wait).
A consumer batch whose records ran at once counts its slowest record plus the CPU time of the others.
The recording runs the consumer's records at once as on AWS (``record_concurrency``), with AWS's shard counts.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from typing import Any

from _recording import ASSUMED_CALL_MS, DEFAULT_RECORDING, Recording, by_role_op, record

PRICE = {
    "apigw_rest": 3.50 / 1e6,
    "apigw_http": 1.00 / 1e6,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s": 0.0000166667,
    "sqs_request": 0.40 / 1e6,
    "ddb_wru": 0.625 / 1e6,
    "ddb_rru": 0.125 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
}
TARGET_API, TARGET_ALL = 2.50, 6.00


def memory_mb() -> dict[str, int]:
    from infra.config import AWS_CONFIG

    return {
        "api": AWS_CONFIG.api_memory_mb,
        "consumer": AWS_CONFIG.consumer.memory_mb,
        "stats": AWS_CONFIG.stats_stream.memory_mb,
    }


def lambda_cost(rec: Recording, role: str, memory: int) -> tuple[float, float, float, float]:
    """(requests $, GB-s $, estimated ms per invocation, measured local ms per invocation) for the whole run."""
    calls = rec.invocations.get(role, 0)
    if not calls:
        return 0.0, 0.0, 0.0, 0.0
    if rec.estimated_ms.get(role):
        est = rec.estimated_ms[role] / calls  # per invocation, records at once accounted for (_recording.estimate_ms)
    else:  # a recording from before estimated_ms
        own = (rec.handler_ms[role] - rec.handler_aws_ms[role]) / calls
        est = own + ASSUMED_CALL_MS * rec.handler_aws_calls[role] / calls
    gb_s = calls * math.ceil(est) / 1000 * memory / 1024
    return calls * PRICE["lambda_request"], gb_s * PRICE["lambda_gb_s"], est, rec.handler_ms[role] / calls


def check_attribution(rec: Recording) -> None:
    """Refuse to price a recording in which the handlers' calls were not attributed (it would print $0 and PASS)."""
    if rec.invocations["consumer"] == 0 or not by_role_op(rec).get("api"):
        raise SystemExit(
            "cost: no consumer invocation or no POST /jobs call was attributed in this recording; the handlers the "
            "local stack runs were not wrapped (see _recording.record). Refusing to report figures."
        )


def report(rec: Recording) -> dict[str, Any]:
    check_attribution(rec)
    n = rec.jobs
    per_m = 1e6 / n
    print(f"cost: {n} jobs in {rec.seconds:.1f} s; counters at the end: {rec.outcomes}")
    stuck = n - rec.outcomes.get("completed", 0) - rec.outcomes.get("failed", 0)
    if stuck:
        print(f"  WARNING: {stuck} jobs not final when the run stopped: their remaining calls are not counted")
    print(
        f"  consumer: {rec.invocations['consumer']} invocations, {rec.records} records "
        f"({rec.records / max(1, rec.invocations['consumer']):.1f} per batch); ESM empty receives (not billed): "
        f"{rec.esm_empty_receives}"
    )
    if rec.errors:
        print(f"  AWS errors: {dict(rec.errors)}")

    print("\nAWS requests per job, by caller and operation (api-read = this bench's polling, excluded):")
    for role, ops in sorted(by_role_op(rec).items()):
        if role in ("setup",):
            continue
        total = sum(ops.values())
        detail = ", ".join(f"{op} {count / n:.2f}" for op, count in ops.most_common())
        print(f"  {role:<9} {total / n:6.2f}  {detail}")

    wru: Counter[str] = Counter()
    for w in rec.writes:
        scope = "gsi" if "/" in w.table else "table"
        wru[f"{w.role} {scope}"] += w.units
    sqs: Counter[str] = Counter()
    for key, chunks in rec.sqs_chunks.items():
        sqs[key.split(" ")[0]] += chunks

    mem = memory_mb()
    api_req, api_gbs, api_est, api_local = lambda_cost(rec, "api", mem["api"])
    con_req, con_gbs, con_est, con_local = lambda_cost(rec, "consumer", mem["consumer"])
    sta_req, sta_gbs, sta_est, sta_local = lambda_cost(rec, "stats", mem["stats"])
    lines = {
        "API Gateway REST (POST /jobs)": ("api", rec.invocations["api"] * PRICE["apigw_rest"]),
        "Lambda api: requests": ("api", api_req),
        f"Lambda api: GB-s ({mem['api']} MB x {api_est:.1f} ms est.; {api_local:.1f} ms local)": ("api", api_gbs),
        "DynamoDB api: table WRU": ("api", wru["api table"] * PRICE["ddb_wru"]),
        "DynamoDB api: GSI WRU": ("api", wru["api gsi"] * PRICE["ddb_wru"]),
        "DynamoDB api: RRU": ("api", rec.read_units["api"] * PRICE["ddb_rru"]),
        "SQS api (SendMessage)": ("api", sqs["api"] * PRICE["sqs_request"]),
        "Lambda consumer: requests": ("all", con_req),
        f"Lambda consumer: GB-s ({mem['consumer']} MB x {con_est:.0f} ms est./batch; {con_local:.0f} ms local)": (
            "all",
            con_gbs,
        ),
        "DynamoDB consumer: table WRU": ("all", wru["consumer table"] * PRICE["ddb_wru"]),
        "DynamoDB consumer: GSI WRU": ("all", wru["consumer gsi"] * PRICE["ddb_wru"]),
        "DynamoDB consumer: RRU": ("all", rec.read_units["consumer"] * PRICE["ddb_rru"]),
        "SQS consumer (visibility, DLQ)": ("all", sqs["consumer"] * PRICE["sqs_request"]),
        "SQS event-source mapping (receive, delete)": ("all", sqs["esm"] * PRICE["sqs_request"]),
        "Lambda stats aggregator: requests (stream reads by Lambda are free)": ("all", sta_req),
        f"Lambda stats aggregator: GB-s ({mem['stats']} MB x {sta_est:.1f} ms est.; {sta_local:.1f} ms local)": (
            "all",
            sta_gbs,
        ),
        "DynamoDB stats aggregator: WRU (counters, watermark)": ("all", wru["stats table"] * PRICE["ddb_wru"]),
        "DynamoDB stats aggregator: RRU (watermark)": ("all", rec.read_units["stats"] * PRICE["ddb_rru"]),
    }
    print("\n$ per million jobs:")
    behind = sum(cost for scope, cost in lines.values() if scope == "api") * per_m
    total = sum(cost for _, cost in lines.values()) * per_m
    for label, (scope, cost) in lines.items():
        print(f"  {label:<78} {cost * per_m:8.3f}  {'(behind the API)' if scope == 'api' else ''}")
    units = {
        "api table WRU/job": wru["api table"] / n,
        "api GSI WRU/job": wru["api gsi"] / n,
        "consumer table WRU/job": wru["consumer table"] / n,
        "consumer GSI WRU/job": wru["consumer gsi"] / n,
        "RRU/job": sum(rec.read_units[r] for r in ("api", "consumer")) / n,
        "SQS requests/job": sum(sqs[r] for r in ("api", "consumer", "esm")) / n,
    }
    print("  units: " + ", ".join(f"{k} {v:.2f}" for k, v in units.items()))
    apigw = rec.invocations["api"] * PRICE["apigw_rest"] * per_m
    verdict_api = "PASS" if behind <= TARGET_API else "FAIL"
    verdict_all = "PASS" if total <= TARGET_ALL else "FAIL"
    target_api = f"target <= {TARGET_API:.2f}: {verdict_api}"
    print(f"\n  behind the API (API Gateway + api Lambda + its calls)     {behind:7.2f} $/M  {target_api}")
    print(f"    of which API Gateway REST alone                        {apigw:7.2f} $/M  (HTTP API: {apigw / 3.5:.2f})")
    target_all = f"target <= {TARGET_ALL:.2f}: {verdict_all}"
    print(f"  all-in (+ consumer, its calls, the ESM's SQS requests)    {total:7.2f} $/M  {target_all}")

    gsi_all = (wru["api gsi"] + wru["consumer gsi"]) * PRICE["ddb_wru"] * per_m
    keys_only = sum(w.keys_only_units for w in rec.writes if "/" in w.table and w.role in ("api", "consumer"))
    print("\n  what-ifs (estimates from the same counts):")
    print(f"    GSIs cost {gsi_all:.2f} $/M; with KEYS_ONLY projections {keys_only * PRICE['ddb_wru'] * per_m:.2f} $/M")
    stats_calls = rec.invocations.get("stats", 0)
    if stats_calls:
        records = rec.stream_records / stats_calls
        per_call = (
            wru["stats table"] * PRICE["ddb_wru"] + sta_req + sta_gbs + rec.read_units["stats"] * PRICE["ddb_rru"]
        )
        full = per_call / stats_calls * 1e6 * rec.stream_records / n / 100
        print(
            f"    the stats aggregator ran {stats_calls} times for {rec.stream_records} stream records "
            f"({records:.1f} per invocation): {per_call * per_m:.2f} $/M here; with full batches of 100 (a busy "
            f"stream shard) about {full:.2f} $/M"
        )
    sweeper = rec.invocations.get("sweeper", 0)
    if sweeper:
        print(
            f"    sweeper (not per job; time-based): {sweeper} runs here, "
            f"{sum(v for k, v in rec.calls.items() if k.startswith('sweeper')) / sweeper:.1f} AWS calls per run"
        )
    return {"behind_api": behind, "all_in": total, "apigw": apigw, "units": units}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--cap", type=float, default=120, help="stop waiting for final after this many seconds")
    parser.add_argument("--save", type=str, default=str(DEFAULT_RECORDING), help="write the recording here")
    parser.add_argument("--load", type=str, help="report from a saved recording instead of running")
    args = parser.parse_args()
    if args.load:
        from pathlib import Path

        rec = Recording.load(Path(args.load))
    else:
        from pathlib import Path

        rec = record(args.jobs, args.connections, args.cap)
    report(rec)
    if args.save and not args.load:
        rec.save(Path(args.save))


if __name__ == "__main__":
    main()
