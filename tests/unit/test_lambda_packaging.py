"""Each function imports only what its Lambda has: the runtime layer built from requirements.txt (boto3,
Powertools, pydantic; with requirements-tracing.txt when tracing is on), and — for the consumer only — the
job-dependencies layer built from requirements-jobs.txt (infra/constructs/job_layer.py). Locally every package is
installed, so only this check would notice a handler importing, say, Pillow where AWS has none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The runtime layer: boto3 and its dependencies (botocore uses certifi when it is there: the Lambda runtime has it)
RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six", "certifi"}
# ... and Powertools with pydantic, and the X-Ray SDK (these tests import with tracing on).
POWERTOOLS_LAYER = {
    "aws-lambda-powertools",
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "annotated-types",
    "typing-inspection",
    "aws-xray-sdk",
    "wrapt",
}
# ... and, in the same layer, the cron library and the IANA zones of recurring schedules (the API and the sweeper).
POWERTOOLS_LAYER |= {"croniter", "tzdata"}
JOB_LAYER = {
    line.split("==")[0].strip().lower()
    for line in (ROOT / "requirements-jobs.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}

PROBE = """
import importlib, importlib.metadata as md, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
owners = md.packages_distributions()
names = {name.split(".")[0] for name in set(sys.modules) - before} - {"functions"}
third_party = sorted({dist.lower().replace("_", "-") for name in names if name not in sys.stdlib_module_names
                      for dist in owners.get(name, [])})
print(json.dumps(third_party))
"""


def distributions_imported_by(module: str) -> set[str]:
    env = {"POWERTOOLS_TRACE_DISABLED": "false", "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("handler", "allowed"),
    [
        ("functions.handlers.api", RUNTIME | POWERTOOLS_LAYER),
        ("functions.handlers.sweeper", RUNTIME | POWERTOOLS_LAYER),
        ("functions.handlers.consumer", RUNTIME | POWERTOOLS_LAYER | JOB_LAYER),
    ],
)
def test_a_handler_imports_only_what_its_lambda_has(handler: str, allowed: set[str]) -> None:
    # When the handler module is imported in a fresh interpreter (tracing on, as deployed)
    imported = distributions_imported_by(handler)
    # Then every third-party distribution it pulled in exists on its Lambda
    assert imported - allowed == set(), f"{handler} imports packages its Lambda does not have"
    assert {"boto3", "aws-lambda-powertools"} <= imported  # the probe sees real imports
