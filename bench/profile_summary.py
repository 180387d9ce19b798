"""Summarise a py-spy speedscope profile of ``python -m local`` (from ``bench/e2e.py --profile FILE``).

    .venv/bin/python bench/profile_summary.py .build/bench/e2e.speedscope.json [--top 25]

Each sample (py-spy counts non-idle threads only) is put in the first bucket whose code is on its stack, outermost
owner wins in this order: moto (the fake AWS), botocore/boto3 (the SDK client side), Powertools, our functions/,
the emulator (jobsctl/local), the HTTP server; the rest is "other". Then the hottest functions by self time, and
by inclusive time within moto.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

BUCKETS = [
    ("moto (fake AWS backends + its request parsing)", "/moto/"),
    ("botocore/boto3 (SDK: validate, serialise, parse, sign)", "/botocore/"),
    ("botocore/boto3 (SDK: validate, serialise, parse, sign)", "/boto3/"),
    ("aws_lambda_powertools", "/aws_lambda_powertools/"),
    ("our code: functions/", "/functions/"),
    ("emulator: jobsctl/ + local/", "/jobsctl/"),
    ("emulator: jobsctl/ + local/", "/local/"),
    ("http.server / socketserver", "/http/server.py"),
    ("http.server / socketserver", "/socketserver.py"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    data = json.loads(args.profile.read_text())
    frames = data["shared"]["frames"]
    buckets: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    moto_incl: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=False):
            total += weight
            files = [frames[i].get("file", "") for i in stack]
            bucket = "other (threading, json, stdlib)"
            for name, marker in BUCKETS:
                if any(marker in f for f in files):
                    bucket = name
                    break
            buckets[bucket] += weight
            if stack:
                leaf = frames[stack[-1]]
                self_time[f"{leaf['name']} ({Path(leaf.get('file', '?')).name}:{leaf.get('line', '')})"] += weight
            seen = set()
            for i in stack:
                frame = frames[i]
                if "/moto/" in frame.get("file", ""):
                    key = f"{frame['name']} ({frame['file'].split('/moto/')[-1]})"
                    if key not in seen:
                        seen.add(key)
                        moto_incl[key] += weight
    print(f"{args.profile}: {total:.0f} samples (non-idle)")
    for name, weight in buckets.most_common():
        print(f"  {weight / total:6.1%}  {name}")
    print("\nhottest functions, self time:")
    for name, weight in self_time.most_common(args.top):
        print(f"  {weight / total:6.1%}  {name}")
    print("\ninside moto, inclusive:")
    for name, weight in moto_incl.most_common(args.top):
        print(f"  {weight / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
