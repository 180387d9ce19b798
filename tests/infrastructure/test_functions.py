"""What every function shares: handler modules, code asset, environment, roles and logs (layers: test_layers.py)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from functions.settings import Settings
from infra.config import AWS_CONFIG
from infra.constructs.api import API_HANDLER, AUTHORIZER_HANDLER
from infra.constructs.function import code_with_bytecode, service_environment
from infra.constructs.queue_consumer import CONSUMER_HANDLER, ORDERED_CONSUMER_HANDLER
from infra.constructs.stats_stream import STATS_STREAM_HANDLER
from infra.constructs.sweeper import SWEEPER_HANDLER
from tests.infrastructure.conftest import REPO_ROOT, Synthesized
from tests.infrastructure.template_utils import (
    LANE_SETTINGS,
    Resources,
    all_functions,
    functions_by_handler,
    imports_table,
    jobs_and_stats_tables,
    lane_queue_and_dlq,
    main_queue_and_dlq,
    named_by_setting,
    of_type,
    only,
    policy_statements,
    render,
    role_of,
    role_permissions,
)

HANDLERS = (
    API_HANDLER,
    AUTHORIZER_HANDLER,
    CONSUMER_HANDLER,
    ORDERED_CONSUMER_HANDLER,
    SWEEPER_HANDLER,
    STATS_STREAM_HANDLER,
)
# The API and its authorizer, the sweeper, the stats aggregator and one consumer per lane (normal, high, ordered: the
# first two share a handler).
FUNCTION_COUNT = 7


def test_the_stack_has_exactly_the_api_the_sweeper_the_aggregator_and_a_consumer_per_lane(
    resources: Resources,
) -> None:
    # Given the synthesized functions
    # Then they are the API, the consumers, the sweeper and the stats aggregator
    assert set(functions_by_handler(resources)) == set(HANDLERS)
    assert len(all_functions(resources)) == FUNCTION_COUNT


@pytest.mark.parametrize("handler", HANDLERS)
def test_handler_points_at_a_module_with_that_function(handler: str) -> None:
    # Given a handler path "functions.handlers.<name>.handler"
    module, _, function = handler.rpartition(".")
    source = REPO_ROOT / Path(*module.split(".")).with_suffix(".py")

    # When the module's source is parsed (not imported: no AWS set-up needed)
    assert source.is_file(), f"{source} is missing"
    tree = ast.parse(source.read_text())

    # Then it defines that function at module level
    assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_each_function_has_its_own_role_without_managed_policies(resources: Resources) -> None:
    # Given the functions' roles
    roles = [role_of(properties) for _, properties in all_functions(resources)]

    # Then no two functions share a role, and none carries an AWS-managed policy
    assert len(set(roles)) == len(roles) == FUNCTION_COUNT
    for role in roles:
        properties = resources[role]["Properties"]
        assert "ManagedPolicyArns" not in properties
        assert properties["AssumeRolePolicyDocument"]["Statement"] == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
        ]


def test_each_function_logs_to_its_own_log_group_with_retention(resources: Resources) -> None:
    # Given each function
    seen = set()
    for _, properties in all_functions(resources):
        log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        seen.add(log_group)
        # Then its log group has the configured retention, and its role may write there (and only there)
        assert resources[log_group]["Properties"]["RetentionInDays"] == AWS_CONFIG.log_retention_days
        logs = {pair for pair in role_permissions(resources, role_of(properties)) if pair[0].startswith("logs:")}
        assert logs == {
            ("logs:CreateLogStream", "${" + log_group + ".Arn}"),
            ("logs:PutLogEvents", "${" + log_group + ".Arn}"),
        }
    assert len(seen) == FUNCTION_COUNT


def test_functions_log_json_without_lambdas_per_invocation_lines(resources: Resources) -> None:
    # Given each function
    for _, properties in all_functions(resources):
        logging = properties["LoggingConfig"]
        # Then it logs in JSON, so levels apply: Lambda's own lines only from WARN (no START/END/REPORT per
        # invocation), the handlers' from the level Powertools logs at, so none of theirs is dropped
        assert logging["LogFormat"] == "JSON"
        assert logging["SystemLogLevel"] == "WARN"
        assert logging["ApplicationLogLevel"] == AWS_CONFIG.lambda_environment()["LOG_LEVEL"] == "INFO"


def test_functions_run_the_configured_runtime_untraced(resources: Resources) -> None:
    for _, properties in all_functions(resources):
        # Then each runs the configured Python (by default, what the tests run) on arm64 (Graviton, the cheaper
        # GB-second), without X-Ray (-c tracing=true turns it on)
        assert properties["Runtime"] == AWS_CONFIG.python_version == "python3.11"
        assert properties["Architectures"] == [AWS_CONFIG.architecture] == ["arm64"]
        assert "TracingConfig" not in properties


def test_each_function_has_the_memory_its_work_needs(resources: Resources) -> None:
    # Given the synthesized functions by handler
    by_handler = functions_by_handler(resources)
    memory = {handler: properties["MemorySize"] for handler, (_, properties) in by_handler.items()}
    # Then each has its configured size: the consumers room for an image job, the API a CPU share for its cold
    # start, the sweeper and the aggregator (off the request path, waiting on DynamoDB) the least
    assert memory == {
        API_HANDLER: AWS_CONFIG.api_memory_mb,
        AUTHORIZER_HANDLER: AWS_CONFIG.authorizer_memory_mb,
        CONSUMER_HANDLER: AWS_CONFIG.consumer.memory_mb,
        ORDERED_CONSUMER_HANDLER: AWS_CONFIG.consumer.memory_mb,
        SWEEPER_HANDLER: AWS_CONFIG.sweeper_memory_mb,
        STATS_STREAM_HANDLER: AWS_CONFIG.stats_stream.memory_mb,
    }
    assert (AWS_CONFIG.api_memory_mb, AWS_CONFIG.consumer.memory_mb, AWS_CONFIG.sweeper_memory_mb) == (512, 1024, 256)


def test_every_function_gets_the_settings_and_powertools_environment(resources: Resources) -> None:
    # Given the resources the settings name
    (jobs_id, _), (stats_id, _) = jobs_and_stats_tables(resources)
    (queue_id, _), (dlq_id, _) = main_queue_and_dlq(resources)
    imports_id, _ = imports_table(resources)
    bucket_id, _ = only(resources, "AWS::S3::Bucket")
    expected = {
        **AWS_CONFIG.settings().to_env(),
        "JOBS_JOBS_TABLE": {"Ref": jobs_id},
        "JOBS_STATS_TABLE": {"Ref": stats_id},
        "JOBS_IMPORTS_TABLE": {"Ref": imports_id},
        "JOBS_FILES_BUCKET": {"Ref": bucket_id},
        "JOBS_QUEUE_URL": {"Ref": queue_id},
        "JOBS_DLQ_URL": {"Ref": dlq_id},
        "JOBS_LIMITS_TABLE": {"Ref": named_by_setting(resources, "JOBS_LIMITS_TABLE")[0]},
        "JOBS_KEYS_TABLE": {"Ref": named_by_setting(resources, "JOBS_KEYS_TABLE")[0]},
        "JOBS_DEPENDENCIES_TABLE": {"Ref": named_by_setting(resources, "JOBS_DEPENDENCIES_TABLE")[0]},
        "JOBS_SCHEDULES_TABLE": {"Ref": named_by_setting(resources, "JOBS_SCHEDULES_TABLE")[0]},
        **{
            setting: {"Ref": logical_id}
            for lane in ("high", "ordered")
            for setting, (logical_id, _) in zip(LANE_SETTINGS[lane], lane_queue_and_dlq(resources, lane), strict=True)
        },
        "POWERTOOLS_SERVICE_NAME": AWS_CONFIG.service_name,
        "POWERTOOLS_METRICS_NAMESPACE": AWS_CONFIG.metrics_namespace,
        "LOG_LEVEL": "INFO",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for _, properties in all_functions(resources):
        # Then each function's environment is exactly that
        assert properties["Environment"]["Variables"] == expected


def test_environment_round_trips_through_settings() -> None:
    # Given the environment built for the functions (with plain names instead of tokens)
    names = {"jobs_table": "j", "stats_table": "s", "files_bucket": "b", "imports_table": "i"}
    env = service_environment(AWS_CONFIG, queue_url="q", dlq_url="d", **names)

    # When the functions read it
    settings = Settings.from_env(env)

    # Then they see the configured values and the generated names
    assert settings == replace(AWS_CONFIG.settings(queue_url="q", dlq_url="d"), **names)


def test_tracing_is_off_unless_switched_on_and_the_handlers_are_told() -> None:
    # Given the default config, and tracing switched on
    names = {"jobs_table": "j", "stats_table": "s", "queue_url": "q", "dlq_url": "d", "files_bucket": "b"}
    default = service_environment(AWS_CONFIG, imports_table="i", **names)
    traced = service_environment(replace(AWS_CONFIG, tracing_enabled=True), imports_table="i", **names)
    # Then by default Powertools' tracer is disabled (the handlers then never import the X-Ray SDK), and on when
    # switched on
    assert default["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "POWERTOOLS_TRACE_DISABLED" not in traced


def test_switching_tracing_off_tells_the_handlers() -> None:
    # Given tracing switched off in the config
    env = service_environment(
        replace(AWS_CONFIG, tracing_enabled=False),
        jobs_table="j",
        stats_table="s",
        queue_url="q",
        dlq_url="d",
        files_bucket="b",
        imports_table="i",
    )
    # Then Powertools' tracer is disabled too
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"


def _sources() -> set[str]:
    return {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "functions").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _bytecode_of(sources: set[str]) -> set[str]:
    """Where Python looks for each module's bytecode: functions/x/__pycache__/y.cpython-311.pyc."""
    return {Path(importlib.util.cache_from_source(f)).as_posix() for f in sources if f.endswith(".py")}


def test_code_asset_holds_the_functions_package_and_its_bytecode_only(synthesized: Synthesized) -> None:
    # Given the one code asset all functions share
    keys = {p["Code"]["S3Key"] for _, p in all_functions(synthesized.resources)}
    assert len(keys) == 1
    asset_dir = synthesized.assembly_dir / ("asset." + keys.pop().removesuffix(".zip"))

    # When its files are listed
    files = {p.relative_to(asset_dir).as_posix() for p in asset_dir.rglob("*") if p.is_file()}

    # Then it is exactly the functions package, each module with its bytecode (this is Lambda's Python 3.11)
    assert f"python{sys.version_info.major}.{sys.version_info.minor}" == AWS_CONFIG.python_version
    assert files == _sources() | _bytecode_of(_sources())
    assert {"functions/handlers/api.py", "functions/handlers/consumer.py", "functions/handlers/sweeper.py"} <= files


def test_the_bytecode_is_hash_based_and_the_same_for_the_same_sources() -> None:
    # Given the package staged twice
    first, second = code_with_bytecode(AWS_CONFIG.python_version), code_with_bytecode(AWS_CONFIG.python_version)
    compiled = sorted(p.relative_to(first) for p in first.rglob("*.pyc"))
    assert compiled

    # Then every .pyc is hash-based and unchecked (PEP 552 flags 0b01: no timestamps, which the zip drops), and
    # the two stagings are byte for byte the same (a redeploy of unchanged code changes nothing)
    for relative in compiled:
        data = (first / relative).read_bytes()
        assert int.from_bytes(data[4:8], "little") == 0b01, relative
        assert data == (second / relative).read_bytes(), relative


def test_with_another_python_only_the_sources_are_staged() -> None:
    # When the runtime is a Python other than this one, Then its bytecode would never load: none is shipped
    staged = code_with_bytecode("python3.99")
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert files == _sources()


def test_no_statement_allows_a_wildcard_action(resources: Resources) -> None:
    # Given every statement of every identity and resource policy
    offending = []
    for logical_id, statement in policy_statements(resources):
        # Deny statements are exempt: the SSL-only queue policies deny "sqs:*", the safe direction.
        if statement["Effect"] == "Deny":
            continue
        # The KMS default key statement (the account root, "kms:*") only delegates access to IAM policies,
        # which are checked here; it grants nothing by itself.
        if resources[logical_id]["Type"] == "AWS::KMS::Key" and "AWS" in statement.get("Principal", {}):
            assert render(statement["Principal"]["AWS"]).endswith(":root")
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        offending += [(logical_id, action) for action in actions if "*" in action]

    # Then no Allow names "*" or a service-wide wildcard such as "dynamodb:*"
    assert offending == []


def test_function_roles_are_not_shared_with_other_resources(resources: Resources) -> None:
    # Given the functions' roles and every role-using policy
    roles = {role_of(p) for _, p in all_functions(resources)}
    # Then each function role has exactly one policy, its own default policy
    for role in roles:
        attached = [
            logical_id
            for logical_id, policy in of_type(resources, "AWS::IAM::Policy").items()
            if {"Ref": role} in policy["Properties"]["Roles"]
        ]
        assert len(attached) == 1
        assert resources[attached[0]]["Properties"]["Roles"] == [{"Ref": role}]
