"""`make synth` works offline: the pinned CDK CLI runs cdk.json's app and writes a template, with no credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK.exists(), reason="the CDK CLI is installed by `make test` (npm ci)")
def test_the_pinned_cli_synthesizes_without_aws_credentials(tmp_path: Path) -> None:
    # Given an environment with no AWS credentials or account at all
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_DEFAULT_"))}
    # When
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--output", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then
    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "ServerlessJobs.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::ApiGatewayV2::Api", "AWS::SQS::Queue", "AWS::Lambda::EventSourceMapping"} <= types
    assert {"AWS::DynamoDB::Table", "AWS::Events::Rule"} <= types
    version = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert version == "2.1148.1"  # `latest` (3.x) cannot read this aws-cdk-lib's cloud assembly
