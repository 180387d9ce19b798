"""The functions' dependency layers, built by pip without Docker (``infra/layer_build.py``):

- the runtime layer (``requirements.txt``: Powertools, pydantic, boto3/botocore) on every function, so what runs on
  AWS is the versions the tests ran with, not the runtime's boto3 or a layer AWS may not publish for a version;
- the job layer (``requirements-jobs.txt``: Pillow, ...) on the consumers only, the functions that run jobs.

Both are built for the configured runtime and architecture; the asset hash is the build's cache key, so CDK neither
walks the repository nor uploads a layer again unless its content changes.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import ServiceConfig
from infra.layer_build import REPO_ROOT, LayerTarget, build_layer

RUNTIME_REQUIREMENTS = REPO_ROOT / "requirements.txt"
JOB_REQUIREMENTS = REPO_ROOT / "requirements-jobs.txt"
# Joins the runtime layer when tracing is on: Powertools' Tracer needs the X-Ray SDK.
TRACING_REQUIREMENTS = REPO_ROOT / "requirements-tracing.txt"

ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}


def lambda_architecture(config: ServiceConfig) -> lambda_.Architecture:
    try:
        return ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {config.architecture!r}") from None


# CDK's own runtime objects: they know which runtimes support SnapStart.
RUNTIMES = {
    "python3.11": lambda_.Runtime.PYTHON_3_11,
    "python3.12": lambda_.Runtime.PYTHON_3_12,
    "python3.13": lambda_.Runtime.PYTHON_3_13,
}


def lambda_runtime(config: ServiceConfig) -> lambda_.Runtime:
    try:
        return RUNTIMES[config.python_version]
    except KeyError:
        raise ValueError(f"python_version must be one of {sorted(RUNTIMES)}, not {config.python_version!r}") from None


class DependencyLayer(Construct):
    """A layer of the requirements' wheels for the functions' runtime and architecture."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: ServiceConfig, requirements: list[Path], purpose: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = LayerTarget(config.python_version, config.architecture)
        self.directory = build_layer(requirements, self.target)
        names = " + ".join(path.name for path in requirements)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description=f"{purpose} ({names}, {self.target.platform}, {config.python_version})",
            compatible_runtimes=[lambda_runtime(config)],
            compatible_architectures=[lambda_architecture(config)],
            code=lambda_.Code.from_asset(
                str(self.directory), asset_hash_type=AssetHashType.CUSTOM, asset_hash=self.directory.name
            ),
        )


class JobDependenciesLayer(DependencyLayer):
    def __init__(self, scope: Construct, construct_id: str, *, config: ServiceConfig) -> None:
        super().__init__(
            scope, construct_id, config=config, requirements=[JOB_REQUIREMENTS], purpose="Job type dependencies"
        )
