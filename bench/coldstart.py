"""Cold-start cost of each handler: import time in a fresh interpreter, against boto3 + the clients it needs.

    .venv/bin/python bench/coldstart.py [runs]

Prints median milliseconds over N fresh interpreters and the ratio to the bare-boto3 baseline. On Lambda, the
Powertools layer and boto3 load from the runtime the same way, so the ratio is the figure that carries over.

The handlers are imported from the Lambda code asset as ``cdk synth`` stages it (``code_with_bytecode``: the
``functions`` package with its bytecode), not from the working tree, whose ``__pycache__`` may be stale or never
written (``PYTHONDONTWRITEBYTECODE``): then every run would compile our sources, as a cold start on Lambda did
before the asset carried bytecode.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = (
    "import boto3; boto3.client('dynamodb', region_name='us-east-1'); boto3.client('sqs', region_name='us-east-1')"
)
HANDLERS = {
    "api": "import functions.handlers.api",
    "consumer": "import functions.handlers.consumer",
    "sweeper": "import functions.handlers.sweeper",
}


def measure(code: str, runs: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=env.get("PYTHONPATH", ROOT), env=env)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="true")
    sys.path.insert(0, str(ROOT))
    from infra.config import AWS_CONFIG
    from infra.constructs.function import code_with_bytecode

    asset = code_with_bytecode(AWS_CONFIG.python_version)
    env["PYTHONPATH"] = str(asset)  # the handlers as Lambda has them; the venv's packages stay where they are
    empty = measure("pass", runs, env)
    baseline = measure(BASELINE, runs, env) - empty
    print(f"interpreter start            {empty:7.0f} ms (subtracted below)", flush=True)
    print(f"boto3 + dynamodb/sqs clients {baseline:7.0f} ms  1.00x", flush=True)
    for name, code in HANDLERS.items():
        # The handler's clients are created on first use, so create them here too for a fair comparison.
        full = code + "; " + BASELINE
        cost = measure(full, runs, env) - empty
        print(f"{name:<28} {cost:7.0f} ms  {cost / baseline:4.2f}x", flush=True)
    traced = measure(HANDLERS["api"] + "; from aws_lambda_powertools import Tracer; Tracer()", runs, env) - empty
    print(
        f"{'api + X-Ray Tracer':<28} {traced:7.0f} ms  {traced / baseline:4.2f}x  (POWERTOOLS_TRACE_DISABLED unset)",
        flush=True,
    )


if __name__ == "__main__":
    main()
