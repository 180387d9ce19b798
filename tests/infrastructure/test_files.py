"""The files bucket (uploads, job outputs, offloaded payloads) and the job-dependencies layer on the consumer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.config import AWS_CONFIG
from infra.constructs.api import API_HANDLER
from infra.constructs.job_layer import PIP_PLATFORM, PipLocalBundling, layer_hash, pip_command
from infra.constructs.queue_consumer import CONSUMER_HANDLER
from infra.constructs.sweeper import SWEEPER_HANDLER
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.template_utils import (
    Resources,
    functions_by_handler,
    of_type,
    only,
    permissions_for,
    role_of,
    role_permissions,
)


def test_files_bucket_is_private_encrypted_ssl_only_unversioned_and_retained(resources: Resources) -> None:
    # Given the files bucket
    bucket_id, bucket = only(resources, "AWS::S3::Bucket")
    properties = bucket["Properties"]

    # Then it is S3-managed encrypted, blocks every kind of public access, keeps no versions, and outlives the stack
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "VersioningConfiguration" not in properties
    assert bucket["DeletionPolicy"] == "Retain"
    assert "BucketName" not in properties
    # And its policy refuses plain HTTP for the bucket and every object
    (_, policy) = only(resources, "AWS::S3::BucketPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}


def test_offloaded_payloads_expire_and_nothing_else_does(resources: Resources) -> None:
    # Given the bucket's lifecycle
    _, bucket = only(resources, "AWS::S3::Bucket")
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    # Then only payloads/ expires, after 30 days
    assert [(r["Prefix"], r["ExpirationInDays"], r["Status"]) for r in rules] == [("payloads/", 30, "Enabled")]


def test_browsers_may_put_and_get_with_presigned_urls_from_any_origin(resources: Resources) -> None:
    # Given the bucket's CORS rules
    _, bucket = only(resources, "AWS::S3::Bucket")
    (rule,) = bucket["Properties"]["CorsConfiguration"]["CorsRules"]
    # Then PUT (uploads) and GET (results) are allowed from any origin, with any header (Content-Type is signed)
    assert sorted(rule["AllowedMethods"]) == ["GET", "PUT"]
    assert rule["AllowedOrigins"] == ["*"]
    assert rule["AllowedHeaders"] == ["*"]


def test_functions_get_the_bucket_and_imports_table_names(synthesized: Synthesized) -> None:
    # Given the bucket and the stack's outputs
    bucket_id, _ = only(synthesized.resources, "AWS::S3::Bucket")
    # Then operators can find the bucket, and every function is told its generated name
    assert synthesized.outputs["FilesBucketName"]["Value"] == {"Ref": bucket_id}
    for _, properties in functions_by_handler(synthesized.resources).values():
        assert properties["Environment"]["Variables"]["JOBS_FILES_BUCKET"] == {"Ref": bucket_id}


def test_the_sweeper_touches_no_files_and_no_job_services(resources: Resources) -> None:
    # Given the sweeper's permissions
    _, sweeper = functions_by_handler(resources)[SWEEPER_HANDLER]
    pairs = role_permissions(resources, role_of(sweeper))
    # Then it has nothing of S3, SES, Bedrock or Secrets Manager
    for service in ("s3", "ses", "bedrock", "secretsmanager"):
        assert permissions_for(pairs, service) == set()


def test_only_the_consumer_carries_the_job_dependencies_layer(resources: Resources) -> None:
    # Given the one layer version of the stack and the functions' layers
    layer_id, layer = only(resources, "AWS::Lambda::LayerVersion")
    functions = functions_by_handler(resources)

    # Then the consumer (which runs jobs) has it after Powertools, and the API and sweeper do not
    assert functions[CONSUMER_HANDLER][1]["Layers"][1:] == [{"Ref": layer_id}]
    for handler in (API_HANDLER, SWEEPER_HANDLER):
        assert {"Ref": layer_id} not in functions[handler][1]["Layers"]
    # And it is built for the functions' runtime and architecture
    assert layer["Properties"]["CompatibleRuntimes"] == [AWS_CONFIG.python_version]
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]


def test_the_layer_bundle_holds_linux_wheels_in_the_python_folder(synthesized: Synthesized) -> None:
    # Given the layer's asset in the cloud assembly
    _, layer = only(synthesized.resources, "AWS::Lambda::LayerVersion")
    asset_dir = synthesized.assembly_dir / ("asset." + layer["Properties"]["Content"]["S3Key"].removesuffix(".zip"))

    # When its top level and its native libraries are listed
    top = {p.name for p in asset_dir.iterdir()}
    native = [p.name for p in (asset_dir / "python" / "PIL").glob("*.so")]

    # Then it is the layer layout (python/...), with Pillow compiled for Linux and CPython 3.11
    assert top == {"python"}
    assert native and all("cpython-311-x86_64-linux-gnu" in name for name in native)


def test_the_layer_asset_is_keyed_by_the_requirements_and_the_target() -> None:
    # Given the requirements file
    requirements = Path(__file__).resolve().parents[2] / "requirements-jobs.txt"
    # Then the same inputs give the same key, and another Python version another one
    assert layer_hash(requirements, "3.11") == layer_hash(requirements, "3.11")
    assert layer_hash(requirements, "3.11") != layer_hash(requirements, "3.12")


def test_pip_asks_for_linux_wheels_only_never_a_source_build(tmp_path: Path) -> None:
    # Given the pip command of the bundler
    command = pip_command(tmp_path / "req.txt", tmp_path / "out", "3.11")
    # Then it targets the Lambda platform and CPython 3.11 with binary wheels only
    assert command[command.index("--platform") + 1] == PIP_PLATFORM == "manylinux2014_x86_64"
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path / "out")


def test_a_warm_cache_bundles_without_running_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bundler whose cache already holds a build of these requirements
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==1.0\n")
    bundler = PipLocalBundling(requirements, "3.11", cache_root=tmp_path / "cache")
    (bundler.cache_dir / "python" / "pkg").mkdir(parents=True)
    (bundler.cache_dir / "python" / "pkg" / "__init__.py").write_text("")

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when the cache is warm")

    monkeypatch.setattr(subprocess, "run", no_pip)

    # When CDK asks it to bundle
    output = tmp_path / "out"
    output.mkdir()
    bundled = bundler.try_bundle(str(output), image=None)  # type: ignore[arg-type]

    # Then it did, from the cache
    assert bundled is True
    assert (output / "python" / "pkg" / "__init__.py").is_file()


def test_a_failed_pip_run_leaves_no_cache_and_lets_cdk_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bundler with a cold cache, and a pip that fails (offline, say)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==1.0\n")
    bundler = PipLocalBundling(requirements, "3.11", cache_root=tmp_path / "cache")

    def failing_pip(command: list[str], **kwargs: Any) -> None:
        Path(command[command.index("--target") + 1]).mkdir(parents=True)  # a half-written build
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(subprocess, "run", failing_pip)

    # When CDK asks it to bundle
    bundled = bundler.try_bundle(str(tmp_path / "out"), image=None)  # type: ignore[arg-type]

    # Then it says no (CDK would try Docker next), and nothing half-built is left to be mistaken for a cache
    assert bundled is False
    assert not bundler.cache_dir.exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_stack_has_one_bucket_and_four_tables(resources: Resources) -> None:
    assert len(of_type(resources, "AWS::S3::Bucket")) == 1
    # jobs, stats, imports, limits
    assert len(of_type(resources, "AWS::DynamoDB::Table")) == 4
