"""Hot partition keys: the share of DynamoDB writes that land on the single hottest partition key.

    .venv/bin/python bench/hotkeys.py [--load .build/bench/recording.json | --jobs 300] [--rate 10000]

From the recording cost.py saves (or a fresh one): every base-table write by (table, partition key), and every GSI
write by (index, index partition key) as derived from the change of the item (see _recording.py). DynamoDB caps a
partition at 1,000 write units per second; an index partition has the same limit, and a GSI that falls behind
throttles the base table's writes. Per-job writes do not depend on N, so the share extrapolates to a rate: at
``--rate`` jobs/s, the hottest key receives share x writes-per-job x rate writes per second.

Scope: the jobs' own work (API and consumer writes); the sweeper writes nothing in a clean run. The stats
aggregator's writes are reported apart: they come per invocation (a batch of stream records), not per job. One
tenant here, as in ``make run``: a per-tenant partition (``tenant``, ``tenant#status``, ``tenant#type``) is that
tenant's whole traffic, so this is the one-busy-tenant case. Target: hottest key <= 2 % of writes, and no key over
1,000 writes or write units per second at ``--rate``: for a sharded key shape the rate per key is the shape's writes
over its shards (observed in the sample), which a steady rate approaches; the sample's hottest shard is shown as a
share.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from _recording import DEFAULT_RECORDING, Recording, Write, record

LIMIT_PER_PARTITION = 1000
MINUTE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ")
TARGET_SHARE = 0.02


def pattern(pk: str) -> str:
    """A key's shape with ids replaced, so that the report names the kind of key (e.g. ``local#<id>``)."""
    parts = pk.split("#")
    return "#".join(
        "<n>" if p.isdigit() else "<minute>" if MINUTE.fullmatch(p) else p if len(p) < 20 else "<id>" for p in parts
    )


def report(rec: Recording, rate: float) -> bool:
    writes: list[Write] = [w for w in rec.writes if w.role in ("api", "consumer")]
    n = rec.jobs
    total_writes = len(writes)
    if not total_writes:
        raise SystemExit("hotkeys: the recording holds no DynamoDB write; run bench/cost.py first (it records).")
    total_units = sum(w.units for w in writes)
    print(f"hotkeys: {n} jobs, {total_writes} item writes ({total_writes / n:.2f}/job), {total_units} WCU")
    print(f"  at {rate:,.0f} jobs/s: {total_writes / n * rate:,.0f} item writes/s, {total_units / n * rate:,.0f} WCU/s")
    by_scope: dict[str, list[Write]] = defaultdict(list)
    for w in writes:
        by_scope[w.table].append(w)
    all_keys: Counter[tuple[str, str]] = Counter((w.table, w.pk) for w in writes)
    hottest = all_keys.most_common(1)[0]
    ok = hottest[1] / total_writes <= TARGET_SHARE

    print(
        f"\n  {'table / index':<22} {'writes/job':>10} {'busiest key shape':<32} {'share':>7} {'of all':>7} "
        f"{'keys':>5} {'writes/s/key':>12} {'WCU/s/key':>10}  limit 1,000/s"
    )
    over = []
    for scope in sorted(by_scope):
        items = by_scope[scope]
        keys = Counter(w.pk for w in items)
        pk, count = keys.most_common(1)[0]
        share = f"{count / len(items):7.1%} {count / total_writes:7.1%}"
        if "<id>" in pattern(pk):
            # One job's own key: its writes do not grow with the rate (a few per job, over the job's life).
            print(f"  {scope:<22} {len(items) / n:10.2f} {pattern(pk):<32} {share} {'one job: ' + str(count):>30}")
            continue
        # A sharded key (counters, index keys ending in a shard): at a steady rate each shard of the busiest key
        # shape takes its even share; a small sample's hottest shard overstates that (its share column shows it).
        # Every key shape of the scope counts (job-stats holds counters and per-minute buckets): the busiest per key.
        shapes: dict[str, list[Write]] = defaultdict(list)
        for w in items:
            shapes[pattern(w.pk)].append(w)
        # A shape's keys at one moment are its shards (a per-minute bucket's keys are the shards of that minute).
        shards = {shape: len({w.pk.rsplit("#", 1)[-1] for w in ws}) for shape, ws in shapes.items()}
        per_key = {
            shape: (
                len(ws) / shards[shape] / n * rate,
                sum(w.units for w in ws) / shards[shape] / n * rate,
                shards[shape],
            )
            for shape, ws in shapes.items()
        }
        shape = max(per_key, key=lambda name: max(per_key[name][:2]))
        per_s, wcu_s, shard_count = per_key[shape]
        verdict = "over" if max(per_s, wcu_s) > LIMIT_PER_PARTITION else "ok"
        if verdict == "over":
            over.append(f"{scope} {shape}")
        print(
            f"  {scope:<22} {len(items) / n:10.2f} {shape:<32} {share} {shard_count:5} {per_s:12,.0f} "
            f"{wcu_s:10,.0f}  {verdict}"
        )
    within = not over
    print(
        f"\n  hottest key overall: {hottest[0][0]} {pattern(hottest[0][1])!r}: {hottest[1] / total_writes:.1%} of all "
        f"writes (target <= {TARGET_SHARE:.0%}: {'PASS' if ok else 'FAIL'})"
    )
    print(
        f"  every key within {LIMIT_PER_PARTITION:,} writes and WCU per second at {rate:,.0f} jobs/s: "
        f"{'PASS' if within else 'FAIL (' + ', '.join(over) + ')'}"
    )
    stats_report(rec, rate)
    return ok and within


def stats_report(rec: Recording, rate: float) -> None:
    """The stats aggregator writes per invocation, not per job: its keys are judged at full batches."""
    from infra.config import AWS_CONFIG

    writes = [w for w in rec.writes if w.role == "stats"]
    if not writes or not rec.stream_records:
        return
    records_per_job = rec.stream_records / rec.jobs
    batch = AWS_CONFIG.stats_stream.batch_size
    invocations = records_per_job * rate / batch
    shapes = Counter(pattern(w.pk) for w in writes)
    print(
        f"\n  stats aggregator: {len(writes)} item writes in {rec.invocations['stats']} invocations "
        f"({', '.join(f'{shape} {count}' for shape, count in shapes.most_common())}); they grow with invocations, "
        f"not jobs. At {rate:,.0f} jobs/s ({records_per_job:.2f} stream records a job) full batches of {batch} make "
        f"~{invocations:,.0f} invocations/s, each writing, per tenant, the counter item its stream shard maps to (of "
        f"{AWS_CONFIG.stats_shards}): Lambda runs one batch at a time per stream shard, a few a second, so a key "
        f"takes a few writes/s from each shard that maps to it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=Path, help=f"a recording saved by cost.py (default {DEFAULT_RECORDING} if any)")
    parser.add_argument("--jobs", type=int, default=300, help="record afresh with this many jobs when none is loaded")
    parser.add_argument("--rate", type=float, default=10_000)
    args = parser.parse_args()
    path = args.load or (DEFAULT_RECORDING if DEFAULT_RECORDING.exists() else None)
    if path is not None:
        print(f"(from {path})")
        rec = Recording.load(path)
    else:
        rec = record(args.jobs)
    report(rec, args.rate)


if __name__ == "__main__":
    main()
