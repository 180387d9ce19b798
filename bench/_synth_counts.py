"""Print, as the last line, what the synthesized stack holds that prices depend on: alarms, dashboards, tables,
KMS keys, secrets, the SQS event-source mappings (FIFO or not), the API type and its access log format, each
function's memory, architecture, tracing and whether Lambda logs its START/END/REPORT lines, and the X-Ray sampling
rules. Used by cost.py."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for name in ("END_OF_LIFE_NODE_VERSION", "DEPRECATED_NODE_VERSION", "UNTESTED_NODE_VERSION"):
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{name}", "18,20" if name.startswith("END") else "1")


def main() -> None:
    from tests.infrastructure.conftest import synthesize

    with tempfile.TemporaryDirectory() as out:
        resources = synthesize(Path(out)).resources
    types = Counter(r["Type"] for r in resources.values())
    queues = {key: r for key, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    sqs_mappings = [0, 0]  # standard, FIFO
    for r in resources.values():
        if r["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        source = json.dumps(r["Properties"].get("EventSourceArn", ""))
        queue = next((q for key, q in queues.items() if key in source), None)
        if queue is not None:
            sqs_mappings[1 if queue["Properties"].get("FifoQueue") else 0] += 1
    functions = {
        key: {
            "memory": r["Properties"].get("MemorySize", 128),
            "architecture": (r["Properties"].get("Architectures") or ["x86_64"])[0],
            "traced": (r["Properties"].get("TracingConfig") or {}).get("Mode") == "Active",
            # Lambda's per-invocation lines are INFO system events: sent unless the system level is above INFO.
            "platform_lines": (r["Properties"].get("LoggingConfig") or {}).get("SystemLogLevel", "INFO")
            in ("DEBUG", "INFO"),
        }
        for key, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    access_log_formats = [
        (r["Properties"].get("AccessLogSettings") or {}).get("Format", "")
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Stage"
    ]
    sampling = [
        r["Properties"].get("SamplingRule", {}) for r in resources.values() if r["Type"] == "AWS::XRay::SamplingRule"
    ]
    print(
        json.dumps(
            {
                "functions": functions,
                "xray_fixed_rate": min((float(rule.get("FixedRate", 0.05)) for rule in sampling), default=0.05),
                "alarms": types["AWS::CloudWatch::Alarm"],
                "dashboards": types["AWS::CloudWatch::Dashboard"],
                "tables": types["AWS::DynamoDB::Table"],
                "kms_keys": types["AWS::KMS::Key"],
                "secrets": types["AWS::SecretsManager::Secret"],
                "sqs_mappings": sqs_mappings[0],
                "fifo_mappings": sqs_mappings[1],
                "http_api": types["AWS::ApiGatewayV2::Api"],
                "access_log_format": next((f for f in access_log_formats if f), ""),
            }
        )
    )


if __name__ == "__main__":
    main()
