"""Synthesizes the app once per test session, exactly as ``cdk synth`` does (same feature flags, cdk-nag on)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii prints a banner on every start when Node is past its end of life; the value lists the majors to accept.
# Set before aws_cdk is imported, which starts the jsii runtime.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

from aws_cdk import Stack
from aws_cdk.assertions import Template

from app import create_app
from infra.config import AWS_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Synthesized:
    stack: Stack
    template: Template
    resources: dict[str, dict[str, Any]]
    parameters: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    assembly_dir: Path
    template_file: Path


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


def synthesize(outdir: Path, **context: Any) -> Synthesized:
    """The app synthesized into ``outdir`` with cdk.json's context, plus ``context`` (as ``cdk synth -c``)."""
    base = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    app = create_app(context={**base, **context}, outdir=str(outdir))
    stack = app.node.find_child(AWS_CONFIG.stack_name)
    assert isinstance(stack, Stack)
    template = Template.from_stack(stack)  # synthesizes the app; later synth() calls return the same assembly
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    body = template.to_json()
    return Synthesized(
        stack=stack,
        template=template,
        resources=body["Resources"],
        parameters=body.get("Parameters", {}),
        outputs=body.get("Outputs", {}),
        assembly_dir=Path(assembly.directory),
        template_file=Path(artifact.template_full_path),
    )


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template


@pytest.fixture(scope="session")
def resources(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return synthesized.resources
