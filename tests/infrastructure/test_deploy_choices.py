"""Deploy-time choices (CDK context): runtime x architecture, SnapStart, tracing, the SES sender, the Bedrock models.

Each combination is synthesized as ``cdk synth -c ...`` does (``app.create_app``, cdk-nag included), once per module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from app import create_app
from infra.config import AWS_CONFIG, BedrockModel
from infra.constructs.api import API_HANDLER
from infra.constructs.function import service_environment
from infra.constructs.queue_consumer import CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER
from infra.constructs.stats_stream import STATS_STREAM_HANDLER
from infra.constructs.sweeper import SWEEPER_HANDLER
from infra.context import ContextError, config_from_context
from tests.infrastructure.conftest import REPO_ROOT
from tests.infrastructure.template_utils import (
    Resources,
    all_functions,
    functions_by_handler,
    of_type,
    permissions_for,
    role_of,
    role_permissions,
)

BASE_CONTEXT = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
RUNTIMES = ("python3.11", "python3.12", "python3.13")
ARCHITECTURES = ("x86_64", "arm64")
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
SENDER = "ops@mail.example.org"
PROFILE = {
    "id": "eu.amazon.nova-pro-v1:0",
    "foundationModel": "amazon.nova-pro-v1:0",
    "regions": ["eu-west-1", "eu-central-1"],
}
MODELS = ["amazon.titan-embed-text-v2:0", "amazon.nova-lite-v1:0", PROFILE]


def synth(tmp_path: Path, **context: Any) -> tuple[Resources, Path]:
    app = create_app(context={**BASE_CONTEXT, **context}, outdir=str(tmp_path))
    stack = app.node.find_child(AWS_CONFIG.stack_name)
    assert isinstance(stack, Stack)
    resources = Template.from_stack(stack).to_json()["Resources"]
    return resources, Path(app.synth().directory)


@pytest.fixture(scope="module")
def synthesized_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Resources, Path]]:
    cache: dict[str, tuple[Resources, Path]] = {}

    def get(**context: Any) -> tuple[Resources, Path]:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            cache[key] = synth(tmp_path_factory.mktemp("cdk.out"), **context)
        return cache[key]

    return get


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_runtime_and_architecture_synthesizes_with_matching_layers(
    synthesized_for: Callable[..., tuple[Resources, Path]], runtime: str, architecture: str
) -> None:
    # Given the stack synthesized with -c runtime=<runtime> -c architecture=<architecture>
    resources, assembly = synthesized_for(runtime=runtime, architecture=architecture)

    # Then every function runs that runtime on that architecture
    for _, properties in all_functions(resources):
        assert properties["Runtime"] == runtime
        assert properties["Architectures"] == [architecture]
    # And both layers are built for them: declared so, and their native code compiled for that interpreter and
    # machine (abi3 modules load in any CPython 3)
    layers = of_type(resources, "AWS::Lambda::LayerVersion")
    assert len(layers) == 2
    tag = re.compile(rf"cpython-{runtime.removeprefix('python').replace('.', '')}-{MACHINE[architecture]}-linux-gnu")
    for layer in layers.values():
        properties = layer["Properties"]
        assert properties["CompatibleRuntimes"] == [runtime]
        assert properties["CompatibleArchitectures"] == [architecture]
        asset = assembly / ("asset." + properties["Content"]["S3Key"].removesuffix(".zip"))
        native = [p.name for p in (asset / "python").rglob("*.so*") if p.name.endswith(".so")]
        compiled = [name for name in native if "cpython-" in name]
        assert compiled, f"no CPython extension in {properties['Description']}"
        assert all(tag.search(name) for name in compiled), compiled
        libraries = [p for p in (asset / "python").rglob("*.so*") if ".so" in p.name]
        other_machine = b"\x3e\x00" if architecture == "arm64" else b"\xb7\x00"  # ELF e_machine: x86-64 / AArch64
        assert all(p.read_bytes()[18:20] != other_machine for p in libraries[:20])


def test_tracing_is_off_by_default_and_the_handlers_know_it(resources: Resources) -> None:
    # Given the default synthesis (an HTTP API stage has no X-Ray tracing of its own)
    for _, properties in all_functions(resources):
        # Then no function is traced, nor may write to X-Ray, and Powertools' Tracer is off (not even imported)
        assert properties.get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}
        assert properties["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
        assert permissions_for(role_permissions(resources, role_of(properties)), "xray") == set()


def test_without_a_sender_nothing_may_send_mail(resources: Resources) -> None:
    # Given the default synthesis (no -c senderEmail)
    for _, properties in all_functions(resources):
        # Then the functions are told there is no sender, and no role may send through SES
        assert properties["Environment"]["Variables"]["JOBS_EMAIL_SENDER"] == ""
        assert permissions_for(role_permissions(resources, role_of(properties)), "ses") == set()


def test_the_bedrock_grant_is_generated_from_the_allowed_models(resources: Resources) -> None:
    # Given the default model list (two foundation models and the us. Nova Lite inference profile)
    _, consumer = functions_by_handler(resources)[CONSUMER_HANDLER]
    partition, region, account = "${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}"
    # Then the consumer may invoke each model here, the profile, and the profile's model in each region it routes to
    assert permissions_for(role_permissions(resources, role_of(consumer)), "bedrock") == {
        ("bedrock:InvokeModel", arn)
        for arn in (
            f"arn:{partition}:bedrock:{region}::foundation-model/amazon.titan-embed-text-v2:0",
            f"arn:{partition}:bedrock:{region}::foundation-model/amazon.nova-lite-v1:0",
            f"arn:{partition}:bedrock:{region}:{account}:inference-profile/us.amazon.nova-lite-v1:0",
            f"arn:{partition}:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
            f"arn:{partition}:bedrock:us-east-2::foundation-model/amazon.nova-lite-v1:0",
            f"arn:{partition}:bedrock:us-west-2::foundation-model/amazon.nova-lite-v1:0",
        )
    }
    # And the functions are told the same list, which the API enforces at enqueue
    variables = consumer["Environment"]["Variables"]
    assert variables["JOBS_BEDROCK_MODELS"] == ",".join(model.id for model in AWS_CONFIG.granted_bedrock_models)


def test_snap_start_tracing_sender_and_models_from_context(
    synthesized_for: Callable[..., tuple[Resources, Path]],
) -> None:
    # Given every optional choice made on the command line
    resources, assembly = synthesized_for(
        runtime="python3.12", snapStart="true", tracing="true", senderEmail=SENDER, bedrockModels=json.dumps(MODELS)
    )
    functions = all_functions(resources)
    aliases = of_type(resources, "AWS::Lambda::Alias")
    # Then every function starts published versions from a snapshot, and what invokes it invokes its "live" alias
    assert len(aliases) == len(functions)
    alias_ids = set(aliases)
    for _, properties in functions:
        assert properties["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    invoked = [r["Properties"]["FunctionName"] for r in of_type(resources, "AWS::Lambda::EventSourceMapping").values()]
    invoked += [r["Properties"]["FunctionName"] for r in of_type(resources, "AWS::Lambda::Permission").values()]
    assert len(invoked) >= len(functions)
    for function_name in invoked:  # {"Ref": alias} or the alias ARN's "<function>:live"
        assert any(alias_id in json.dumps(function_name) for alias_id in alias_ids), function_name
    # And every function is traced, with the SDK loaded, from its runtime layer (built with requirements-tracing.txt)
    for _, properties in functions:
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert "POWERTOOLS_TRACE_DISABLED" not in properties["Environment"]["Variables"]
        runtime_layer = resources[properties["Layers"][0]["Ref"]]["Properties"]
        asset = assembly / ("asset." + runtime_layer["Content"]["S3Key"].removesuffix(".zip"))
        assert (asset / "python" / "aws_xray_sdk").is_dir()
    # And the consumers may send as the sender (its address or its domain identity) and invoke the listed models
    partition, region, account = "${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}"
    handlers = functions_by_handler(resources)
    for handler in (CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER):
        pairs = role_permissions(resources, role_of(handlers[handler][1]))
        assert permissions_for(pairs, "ses") == {
            ("ses:SendEmail", f"arn:{partition}:ses:{region}:{account}:identity/{identity}")
            for identity in (SENDER, "mail.example.org")
        }
        assert {resource for _, resource in permissions_for(pairs, "bedrock")} == {
            f"arn:{partition}:bedrock:{region}::foundation-model/amazon.titan-embed-text-v2:0",
            f"arn:{partition}:bedrock:{region}::foundation-model/amazon.nova-lite-v1:0",
            f"arn:{partition}:bedrock:{region}:{account}:inference-profile/eu.amazon.nova-pro-v1:0",
            f"arn:{partition}:bedrock:eu-west-1::foundation-model/amazon.nova-pro-v1:0",
            f"arn:{partition}:bedrock:eu-central-1::foundation-model/amazon.nova-pro-v1:0",
        }
        variables = handlers[handler][1]["Environment"]["Variables"]
        assert variables["JOBS_EMAIL_SENDER"] == SENDER
        assert (
            variables["JOBS_BEDROCK_MODELS"]
            == "amazon.titan-embed-text-v2:0,amazon.nova-lite-v1:0,eu.amazon.nova-pro-v1:0"
        )


# --- reading the context (no synthesis) ---


def _context(**values: Any) -> Callable[[str], Any]:
    return values.get


def test_defaults_without_context() -> None:
    config = config_from_context(AWS_CONFIG, _context())
    assert (config.python_version, config.architecture) == ("python3.11", "arm64")
    assert (config.snap_start, config.tracing_enabled, config.email_sender) == (False, False, "")


def test_the_sender_may_come_from_the_environment_too() -> None:
    config = config_from_context(AWS_CONFIG, _context(), environ={"JOBS_EMAIL_SENDER": SENDER})
    assert config.email_sender == SENDER
    # And the context wins over it
    other = config_from_context(AWS_CONFIG, _context(senderEmail="a@b.example"), environ={"JOBS_EMAIL_SENDER": SENDER})
    assert other.email_sender == "a@b.example"


def test_models_as_ids_and_inference_profiles() -> None:
    config = config_from_context(AWS_CONFIG, _context(bedrockModels=json.dumps(MODELS)))
    assert config.granted_bedrock_models[2] == BedrockModel(
        "eu.amazon.nova-pro-v1:0", foundation_model="amazon.nova-pro-v1:0", regions=("eu-west-1", "eu-central-1")
    )
    # And the functions accept the same models at enqueue
    assert config.bedrock_models == "amazon.titan-embed-text-v2:0,amazon.nova-lite-v1:0,eu.amazon.nova-pro-v1:0"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"snapStart": "true"}, r"snapStart=true needs runtime python3\.12 or python3\.13"),
        ({"snapStart": "true", "runtime": "python3.11"}, "SnapStart supports Python 3.12 and later"),
        ({"runtime": "python3.10"}, r"runtime='python3\.10' is not one of: python3\.11, python3\.12, python3\.13"),
        ({"architecture": "arm"}, "architecture='arm' is not one of: x86_64, arm64"),
        ({"tracing": "yes please"}, "tracing='yes please' must be true or false"),
        ({"senderEmail": "not-an-address"}, "senderEmail='not-an-address' must be an email address"),
        ({"bedrockModels": "amazon.nova-lite-v1:0"}, "bedrockModels is not JSON"),
        ({"bedrockModels": json.dumps([{"id": "us.x", "regions": ["us-east-1"]}])}, "neither a model id nor"),
    ],
)
def test_a_bad_choice_stops_synth_naming_the_context_key(context: dict[str, str], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        config_from_context(AWS_CONFIG, _context(**context))


def test_a_model_list_without_the_default_models_stops_synth() -> None:
    config = config_from_context(AWS_CONFIG, _context(bedrockModels=json.dumps(["amazon.nova-pro-v1:0"])))
    with pytest.raises(ValueError, match=r"default Bedrock model 'amazon\.titan-embed-text-v2:0' is not in"):
        config.settings()


def test_snap_start_on_python_3_11_fails_cdk_synth(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="SnapStart"):
        synth(tmp_path, snapStart="true")


# --- what the default environment means for a cold start ---

PROBE = """
import sys
__import__(sys.argv[1])
print(sorted(name for name in sys.modules if name.startswith("aws_xray_sdk")))
"""


@pytest.mark.parametrize("handler", [API_HANDLER, CONSUMER_HANDLER, SWEEPER_HANDLER, STATS_STREAM_HANDLER])
def test_with_the_default_environment_a_cold_start_never_imports_the_xray_sdk(handler: str) -> None:
    # Given the environment the stack gives every function by default (tracing off)
    names = {"jobs_table": "j", "stats_table": "s", "queue_url": "q", "dlq_url": "d", "files_bucket": "b"}
    env = {
        **service_environment(AWS_CONFIG, imports_table="i", **names),
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    module = handler.rpartition(".")[0]
    # When the handler module is imported in a fresh interpreter, as on a cold start
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    # Then the X-Ray SDK was not loaded (~0.2 s of import saved)
    assert done.stdout.strip() == "[]"
    # And with tracing on, the probe does see them (it can fail)
    traced = {k: v for k, v in env.items() if k != "POWERTOOLS_TRACE_DISABLED"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=REPO_ROOT, env=traced, capture_output=True, text=True, check=True
    )
    assert "aws_xray_sdk" in done.stdout
