"""Hot partition keys: the share of DynamoDB writes that land on the single hottest partition key.

    .venv/bin/python bench/hotkeys.py [--load .build/bench/recording.json | --jobs 300] [--rate 10000]

From the recording cost.py saves (or a fresh one): every base-table write by (table, partition key), and every GSI
write by (index, index partition key) as derived from the change of the item (see _recording.py). DynamoDB caps a
partition at 1,000 write units per second; an index partition has the same limit, and a GSI that falls behind
throttles the base table's writes. Per-job writes do not depend on N, so the share extrapolates to a rate: at
``--rate`` jobs/s, the hottest key receives share x writes-per-job x rate writes per second.

Scope: the jobs' own work (API and consumer writes); the sweeper writes nothing in a clean run. One tenant here,
as in ``make run``: a per-tenant partition (``tenant``, ``tenant#status``, ``tenant#type``) is that tenant's
whole traffic, so this is the one-busy-tenant case. Target: hottest key <= 2 % of writes.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from _recording import DEFAULT_RECORDING, Recording, Write, record

LIMIT_PER_PARTITION = 1000
TARGET_SHARE = 0.02


def pattern(pk: str) -> str:
    """A key's shape with ids replaced, so that the report names the kind of key (e.g. ``local#<id>``)."""
    parts = pk.split("#")
    return "#".join(p if len(p) < 20 and not p.isdigit() else ("<n>" if p.isdigit() else "<id>") for p in parts)


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
        f"\n  {'table / index':<22} {'writes/job':>10} {'hottest partition key':<32} {'share':>7} {'of all':>7} "
        f"{'writes/s @rate':>14} {'WCU/s @rate':>12}  limit 1,000/s"
    )
    for scope in sorted(by_scope):
        items = by_scope[scope]
        keys = Counter(w.pk for w in items)
        units = Counter()
        for w in items:
            units[w.pk] += w.units
        pk, count = keys.most_common(1)[0]
        share = f"{count / len(items):7.1%} {count / total_writes:7.1%}"
        if "<id>" in pattern(pk):
            # One job's own key: its writes do not grow with the rate (a few per job, over the job's life).
            print(f"  {scope:<22} {len(items) / n:10.2f} {pattern(pk):<32} {share} {'one job: ' + str(count):>14}")
            continue
        per_s = count / n * rate
        wcu_s = units[pk] / n * rate
        verdict = "over" if max(per_s, wcu_s) > LIMIT_PER_PARTITION else "ok"
        print(
            f"  {scope:<22} {len(items) / n:10.2f} {pattern(pk):<32} {share} {per_s:14,.0f} {wcu_s:12,.0f}  {verdict}"
        )
    print(
        f"\n  hottest key overall: {hottest[0][0]} {pattern(hottest[0][1])!r}: {hottest[1] / total_writes:.1%} of all "
        f"writes (target <= {TARGET_SHARE:.0%}: {'PASS' if ok else 'FAIL'})"
    )
    return ok


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
