"""The job-dependencies layer: ``requirements-jobs.txt`` (Pillow, ...) as manylinux wheels, built without Docker.

CDK asks the local bundler first; it runs ``pip install --platform manylinux2014_x86_64 --only-binary=:all:`` for
the functions' Python, which downloads the Linux wheels whatever this machine is. The result is cached under
``.build/`` keyed by the requirements and the target, so repeated synths (and the infrastructure tests) copy it
instead of asking PyPI. Docker (the SAM build image) is only the fallback CDK would use if pip failed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import ServiceConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements-jobs.txt"
CACHE_ROOT = REPO_ROOT / ".build" / "layers"
PIP_PLATFORM = "manylinux2014_x86_64"


def pip_command(requirements: Path, target: Path, python_version: str) -> list[str]:
    """``pip install`` of Linux wheels for ``python_version`` (``3.11``) into ``target``: no source builds."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "-r",
        str(requirements),
    ]


def layer_hash(requirements: Path, python_version: str) -> str:
    """Changes when the requirements or the target change, and only then."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"|{PIP_PLATFORM}|cp|{python_version}".encode())
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Bundles ``<output>/python/...`` (the layer layout) with pip, from the cache when it is there."""

    def __init__(self, requirements: Path, python_version: str, cache_root: Path = CACHE_ROOT) -> None:
        self.requirements = requirements
        self.python_version = python_version
        self.cache_dir = cache_root / layer_hash(requirements, python_version)

    def try_bundle(self, output_dir: str, *, image: DockerImage, **options: Any) -> bool:
        try:
            built = self.build()
        except (OSError, subprocess.CalledProcessError) as exc:
            # Returning False lets CDK fall back to Docker, which says clearly if it is missing too.
            print(f"job layer: local pip bundling failed ({exc}); falling back to Docker", file=sys.stderr)
            return False
        shutil.copytree(built, Path(output_dir), dirs_exist_ok=True)
        return True

    def build(self) -> Path:
        """The cached bundle, built first if needed (in a temporary folder, then renamed: never half-written)."""
        if self.cache_dir.is_dir():
            return self.cache_dir
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="building-", dir=self.cache_dir.parent))
        try:
            subprocess.run(
                pip_command(self.requirements, staging / "python", self.python_version),
                check=True,
                timeout=600,
            )
            try:
                staging.rename(self.cache_dir)
            except OSError:
                if not self.cache_dir.is_dir():  # another synth finished first: theirs is as good
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.cache_dir


class JobDependenciesLayer(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: ServiceConfig) -> None:
        super().__init__(scope, construct_id)
        python_version = config.python_version.removeprefix("python")
        runtime = lambda_.Runtime(config.python_version, lambda_.RuntimeFamily.PYTHON)
        self.bundler = PipLocalBundling(REQUIREMENTS, python_version)
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            description=f"Job dependencies ({REQUIREMENTS.name}, {PIP_PLATFORM}, Python {python_version})",
            compatible_runtimes=[runtime],
            compatible_architectures=[lambda_.Architecture.X86_64],
            code=lambda_.Code.from_asset(
                str(REQUIREMENTS.parent),
                # The hash of the requirements, not of the folder: CDK neither walks the repository nor re-bundles
                # unless the requirements change.
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=self.bundler.cache_dir.name,
                bundling=BundlingOptions(
                    image=runtime.bundling_image,
                    command=["bash", "-c", f"pip install -r {REQUIREMENTS.name} -t /asset-output/python"],
                    local=self.bundler,
                ),
            ),
        )
