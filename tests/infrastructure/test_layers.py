"""The dependency layers: built by pip from the tests' pinned versions, for the chosen runtime and architecture."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from infra.config import AWS_CONFIG
from infra.constructs.api import API_HANDLER
from infra.constructs.job_layer import JOB_REQUIREMENTS, RUNTIME_REQUIREMENTS
from infra.constructs.queue_consumer import CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER
from infra.constructs.stats_stream import STATS_STREAM_HANDLER
from infra.constructs.sweeper import SWEEPER_HANDLER
from infra.layer_build import LayerBuildError, LayerTarget, build_layer, cache_key, pip_command, versions_under_test
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.template_utils import Resources, all_functions, functions_by_handler, of_type


def layer_ids(resources: Resources) -> dict[str, str]:
    """requirements file name -> logical id of the layer built from it (its description names the file)."""
    found = {}
    for layer_id, layer in of_type(resources, "AWS::Lambda::LayerVersion").items():
        match = re.search(r"\((requirements[\w-]*\.txt)[ ,]", layer["Properties"]["Description"])
        assert match, layer["Properties"]["Description"]
        found[match.group(1)] = layer_id
    return found


def asset_dir(synthesized: Synthesized, layer_id: str) -> Path:
    content = synthesized.resources[layer_id]["Properties"]["Content"]
    return synthesized.assembly_dir / ("asset." + content["S3Key"].removesuffix(".zip"))


def versions_in(layer_python: Path) -> dict[str, str]:
    """name -> version of each distribution in a layer's python/ folder (from its .dist-info directories)."""
    found = {}
    for info in layer_python.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.lower().replace("_", "-")] = version
    return found


def pins(requirements: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return {name.lower(): version for name, _, version in (line.partition("==") for line in lines if line)}


def test_no_function_needs_an_ssm_parameter_or_a_layer_from_elsewhere(synthesized: Synthesized) -> None:
    # Given the template's parameters and every function's layers
    ssm_parameters = [p["Default"] for p in synthesized.parameters.values() if "SSM" in p["Type"]]
    own = [{"Ref": layer_id} for layer_id in layer_ids(synthesized.resources).values()]
    # Then nothing is looked up in SSM (AWS's Powertools parameter may not exist for a version), and every layer a
    # function uses is one this stack builds
    assert ssm_parameters == ["/cdk-bootstrap/hnb659fds/version"]  # CDK's own check of the bootstrap stack
    for _, properties in all_functions(synthesized.resources):
        assert properties["Layers"] and all(layer in own for layer in properties["Layers"])


def test_every_function_has_the_runtime_layer_and_only_the_consumers_the_job_layer(resources: Resources) -> None:
    # Given the two layers and the functions
    layers = layer_ids(resources)
    runtime_layer, job_layer = {"Ref": layers[RUNTIME_REQUIREMENTS.name]}, {"Ref": layers[JOB_REQUIREMENTS.name]}
    functions = functions_by_handler(resources)
    # Then every function has the runtime layer first; the consumers (which run jobs) also the job layer
    for _, properties in all_functions(resources):
        assert properties["Layers"][0] == runtime_layer
    for handler in (CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER):
        assert functions[handler][1]["Layers"] == [runtime_layer, job_layer]
    for handler in (API_HANDLER, SWEEPER_HANDLER, STATS_STREAM_HANDLER):
        assert functions[handler][1]["Layers"] == [runtime_layer]


def test_the_runtime_layer_holds_exactly_the_pinned_versions_the_tests_run_with(synthesized: Synthesized) -> None:
    # Given the runtime layer's asset
    python = asset_dir(synthesized, layer_ids(synthesized.resources)[RUNTIME_REQUIREMENTS.name]) / "python"
    versions = versions_in(python)
    # Then it has Powertools, pydantic, boto3/botocore, and croniter and tzdata (recurring schedules) at the pins of
    # requirements.txt
    expected = pins(RUNTIME_REQUIREMENTS)
    assert set(expected) == {"aws-lambda-powertools", "pydantic", "boto3", "botocore", "croniter", "tzdata"}
    for name, version in expected.items():
        assert versions[name] == version, name
    # And not the X-Ray SDK: tracing is off, and the handlers do not import it
    assert "aws-xray-sdk" not in versions
    # And every other package in it (pydantic-core, urllib3, ...) at the version installed here, under test
    for name, version in versions.items():
        assert metadata.version(name) == version, name


@pytest.mark.parametrize("requirements", [RUNTIME_REQUIREMENTS, JOB_REQUIREMENTS])
def test_each_layer_is_built_for_the_functions_runtime_and_architecture(
    synthesized: Synthesized, requirements: Path
) -> None:
    # Given a layer and its asset
    layer_id = layer_ids(synthesized.resources)[requirements.name]
    properties = synthesized.resources[layer_id]["Properties"]
    top = {p.name for p in asset_dir(synthesized, layer_id).iterdir()}
    native = [p.name for p in (asset_dir(synthesized, layer_id) / "python").rglob("*.so")]
    # Then it declares the functions' runtime and architecture, has Lambda's layout (python/...), and its native
    # code is compiled for CPython 3.11 on AArch64 Linux (the defaults)
    assert properties["CompatibleRuntimes"] == [AWS_CONFIG.python_version] == ["python3.11"]
    assert properties["CompatibleArchitectures"] == [AWS_CONFIG.architecture] == ["arm64"]
    assert top == {"python"}
    assert native and all(re.search(r"cpython-311-aarch64-linux-gnu|abi3", name) for name in native), native


def test_the_runtime_layer_ships_the_bytecode_lambda_would_otherwise_compile_at_every_cold_start(
    synthesized: Synthesized,
) -> None:
    # Given the runtime layer's asset, built by this Python for the same Python (3.11)
    layer_python = asset_dir(synthesized, layer_ids(synthesized.resources)["requirements.txt"]) / "python"
    sources = list((layer_python / "pydantic").rglob("*.py")) + list((layer_python / "botocore").rglob("*.py"))
    # Then every module has its .pyc beside it, hash-based and unchecked (flags 0b01: a zip keeps no file times),
    # recording the path it has on Lambda
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        assert compiled.is_file(), source
    header = (layer_python / "pydantic" / "__pycache__" / "main.cpython-311.pyc").read_bytes()
    assert int.from_bytes(header[4:8], "little") == 0b01
    assert b"/opt/python/pydantic/main.py" in header


def test_the_cache_key_is_the_content_pins_constraints_platform_and_python(tmp_path: Path) -> None:
    # Given a requirements file
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==12.2.0\n")
    default = LayerTarget("python3.11", "x86_64")
    key = cache_key([requirements], "a==1\n", default)
    # Then the same inputs give the same key, and a change of any of them another key
    assert cache_key([requirements], "a==1\n", default) == key
    assert cache_key([requirements], "a==2\n", default) != key
    assert cache_key([requirements], "a==1\n", LayerTarget("python3.12", "x86_64")) != key
    assert cache_key([requirements], "a==1\n", LayerTarget("python3.11", "arm64")) != key
    requirements.write_text("# an explanation\npillow==12.2.0  # why this pin\n\n")
    assert cache_key([requirements], "a==1\n", default) == key  # comments are not content
    requirements.write_text("pillow==12.1.0\n")
    assert cache_key([requirements], "a==1\n", default) != key


@pytest.mark.parametrize(
    ("architecture", "platform"), [("x86_64", "manylinux2014_x86_64"), ("arm64", "manylinux2014_aarch64")]
)
def test_pip_asks_for_the_targets_wheels_only_never_a_source_build(
    tmp_path: Path, architecture: str, platform: str
) -> None:
    # Given the pip command for a target
    command = pip_command(
        [tmp_path / "a.txt", tmp_path / "b.txt"],
        tmp_path / "c.txt",
        tmp_path / "out",
        LayerTarget("python3.13", architecture),
    )
    # Then it asks for that platform's CPython 3.13 binary wheels, constrained to the tested versions
    assert command[command.index("--platform") + 1] == platform
    assert command[command.index("--python-version") + 1] == "3.13"
    assert command[command.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in command
    assert command[command.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert command[command.index("--target") + 1] == str(tmp_path / "out")
    # And every requirements file goes into the one install (one resolution, no package twice)
    assert [command[i + 1] for i, option in enumerate(command) if option == "--requirement"] == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
    ]


def test_the_constraints_are_the_versions_installed_here() -> None:
    constraints = dict(line.split("==") for line in versions_under_test().splitlines())
    assert constraints["pydantic-core"] == metadata.version("pydantic-core")
    assert constraints["urllib3"] == metadata.version("urllib3")


def test_a_warm_cache_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cache that already holds this build
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==12.2.0\n")
    target = LayerTarget("python3.11", "x86_64")
    cached = tmp_path / "cache" / cache_key([requirements], versions_under_test(), target)
    (cached / "python").mkdir(parents=True)

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when the cache is warm")

    monkeypatch.setattr(subprocess, "run", no_pip)
    # Then the build is the cached directory
    assert build_layer([requirements], target, cache_root=tmp_path / "cache") == cached


def test_a_missing_wheel_fails_loudly_and_leaves_no_cache(tmp_path: Path) -> None:
    # Given a requirement with no wheel for the target (this Pillow release predates wheels, let alone aarch64)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pillow==1.0\n")
    # When the layer is built: Then pip's refusal stops the build, naming the target
    with pytest.raises(LayerBuildError, match=r"python3\.12 arm64 \(manylinux2014_aarch64\)"):
        build_layer([requirements], LayerTarget("python3.12", "arm64"), cache_root=tmp_path / "cache")
    # And nothing half-built is left to be mistaken for a build
    assert list((tmp_path / "cache").iterdir()) == []
