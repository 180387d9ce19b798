"""Cold-start cost of each handler: import time in a fresh interpreter, against boto3 + the clients it needs.

    .venv/bin/python bench/coldstart.py [rounds]

Each round starts one fresh interpreter per case (empty, the bare-boto3 baseline, each handler) in a shuffled
order; a case's cost is its CPU time (user + system) minus the round's empty interpreter's, and its figure is the
median over rounds of its cost over the baseline's cost *in the same round*. Measured one case after another, a
slow spell of this shared machine fell on whichever case ran then: the same code measured 1.41x and 1.80x in two
runs an hour apart. CPU time, not wall time: an import is CPU work, and the wall time here also counts the waits
for a core that other processes hold (baselines of 530 and 1,090 ms within minutes). On Lambda, the Powertools
layer and boto3 load from the runtime the same way, so the ratio is the figure that carries over. Two more cases
import only the libraries the API and the consumer use (no code of ours): the floor under their figures, so the
part our code adds can be read off.

The handlers are imported from the Lambda code asset as ``cdk synth`` stages it (``code_with_bytecode``: the
``functions`` package with its bytecode), and the libraries, boto3 included, from the runtime layer as synth builds
it (``infra/layer_build.py``, for this machine's architecture: the bytecode is the same for both), not from the
working tree and the venv, whose ``__pycache__`` may be stale or never written. Nothing is written while measuring
(``PYTHONDONTWRITEBYTECODE``): Lambda mounts both read-only, so what ships without bytecode is compiled at every
cold start, and so it is here.

Every case runs in the functions' environment as the stack deploys it by default
(``ServiceConfig.lambda_environment``: tracing off, the log level, no pydantic plugin discovery), except the one
case that shows what switching X-Ray on costs. The last line is the API's and the consumer's figures as deployed.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import statistics
import subprocess
import sys
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
# The floor under the handlers' figures: the libraries each one imports (Powertools' parts, pydantic with its first
# model class, which loads the rest of pydantic), and none of our code. They are imported as the handlers import them:
# after ``functions.handlers``, which only sets up two of Powertools' packages to load the modules asked for
# (handlers/lean_imports.py).
_MODEL = "import pydantic; type('M', (pydantic.BaseModel,), {'__annotations__': {'x': int}})"
_AS_THE_HANDLERS = "import functions.handlers; "
LIBRARIES = {
    "api: its libraries alone": (
        f"{_AS_THE_HANDLERS}from aws_lambda_powertools import Logger, Metrics; "
        "from aws_lambda_powertools.event_handler import APIGatewayRestResolver; "
        f"from aws_lambda_powertools.event_handler.openapi.params import Path; {_MODEL}"
    ),
    "consumer: its libraries alone": (
        f"{_AS_THE_HANDLERS}from aws_lambda_powertools import Logger, Metrics; "
        f"from aws_lambda_powertools.utilities.batch import BatchProcessor, process_partial_response; {_MODEL}"
    ),
}


def run_once(code: str, env: dict[str, str]) -> float:
    """The CPU time (user + system) of one fresh interpreter running ``code``, in ms."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=env["PYTHONPATH"].split(os.pathsep)[0], env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    sys.path.insert(0, str(ROOT))
    from dataclasses import replace

    from infra.config import AWS_CONFIG
    from infra.constructs.function import code_with_bytecode
    from infra.constructs.job_layer import RUNTIME_REQUIREMENTS
    from infra.layer_build import LayerTarget, build_layer

    common = {"AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"}
    env = dict(os.environ, **common, **AWS_CONFIG.lambda_environment())
    traced_env = dict(os.environ, **common, **replace(AWS_CONFIG, tracing_enabled=True).lambda_environment())

    asset = code_with_bytecode(AWS_CONFIG.python_version)
    machine = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    layer = build_layer([RUNTIME_REQUIREMENTS], LayerTarget(AWS_CONFIG.python_version, machine)) / "python"
    # The handlers and the libraries as Lambda has them (the X-Ray SDK, in the layer only when tracing is on, and
    # whatever else the venv has come after them).
    env["PYTHONPATH"] = traced_env["PYTHONPATH"] = f"{asset}{os.pathsep}{layer}"
    # The handlers' clients are created on first use, so the baseline's clients are created with them too.
    cases = {"empty": "pass", "baseline": BASELINE} | {name: f"{code}; {BASELINE}" for name, code in HANDLERS.items()}
    cases["api + X-Ray Tracer"] = f"{HANDLERS['api']}; from aws_lambda_powertools import Tracer; Tracer(); {BASELINE}"
    cases |= {name: f"{code}; {BASELINE}" for name, code in LIBRARIES.items()}
    costs: dict[str, list[float]] = {name: [] for name in cases if name != "empty"}
    ratios: dict[str, list[float]] = {name: [] for name in costs if name != "baseline"}
    order = list(cases)
    shuffler = random.Random(6)
    for _ in range(rounds):
        shuffler.shuffle(order)
        times = {name: run_once(cases[name], traced_env if "Tracer" in name else env) for name in order}
        for name in costs:
            costs[name].append(times[name] - times["empty"])
        for name in ratios:
            ratios[name].append(costs[name][-1] / costs["baseline"][-1])
    print(f"cold start: {rounds} rounds, median of each; a ratio is to the baseline of the same round", flush=True)
    print(f"{'boto3 + dynamodb/sqs clients':<30} {statistics.median(costs['baseline']):7.0f} ms  1.00x", flush=True)
    for name, values in ratios.items():
        ratio = statistics.median(values)
        if "Tracer" in name:
            note = "(tracing switched on: -c tracing=true)"
        elif name in LIBRARIES:
            note = "(no code of ours: the floor under its figure)"
        else:
            note = f"target <= 1.5x: {verdict(ratio)}"
        print(f"{name:<30} {statistics.median(costs[name]):7.0f} ms  {ratio:4.2f}x  {note}", flush=True)
    api, consumer = (statistics.median(ratios[name]) for name in ("api", "consumer"))
    print(f"coldstart: api {api:.2f}x consumer {consumer:.2f}x (as deployed)", flush=True)


def verdict(ratio: float) -> str:
    return "PASS" if ratio <= 1.5 else "FAIL"


if __name__ == "__main__":
    main()
