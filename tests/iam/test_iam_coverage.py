"""Least privilege, proven from recorded calls: every AWS call a function made in the integration and end-to-end
suites is allowed by that function's role in the synthesized template, and every action the role grants is used by
some recorded call, or carries a reason below.

The calls are recorded by ``local/iam_calls.py`` (``JOBS_IAM_RECORD_DIR``); ``make iam-check`` records and checks.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.iam_calls import HANDLER_MODULES, RECORD_DIR_VARIABLE
from tests.iam.policies import Grant, ServiceFunctionPolicy, function_policies, matches
from tests.infrastructure.conftest import Synthesized

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECORD_DIR = REPO_ROOT / ".build" / "iam-calls"


@dataclass(frozen=True)
class GrantReason:
    """Why a granted action is never seen in the recorded calls. ``function``, ``action`` and ``resource`` are
    patterns (``*``) over the function's construct path, the action and the grant's label (construct paths in <>).
    ``same_as``: the grant is explained only while that function's recorded calls use the same grant.
    ``when_present``: the grant exists in some configurations only (the reason is not stale without it)."""

    function: str
    action: str
    resource: str
    reason: str
    same_as: str = ""
    when_present: bool = False

    def covers(self, function: str, grant: Grant, used: set[tuple[str, Grant]]) -> bool:
        return (
            matches(self.function, function)
            and matches(self.action, grant.action, ignore_case=True)
            and matches(self.resource, grant.label)
            and (not self.same_as or (self.same_as, grant) in used)
        )


CONSUMERS = "JobQueue/*Consumer"
EVENT_SOURCE = (
    "Lambda's event source mapping uses the function's role to read its source (the local stack's event sources "
    "stand in for it, outside the function): "
)
REASONS: tuple[GrantReason, ...] = (
    GrantReason(
        "*", "logs:*", "<*/LogGroup>", "Lambda writes the function's own logs with its role; the code makes no call."
    ),
    GrantReason(
        "*",
        "xray:*",
        "*",
        "With tracing on, Lambda and the X-Ray SDK send trace segments with the role; the suites run without tracing.",
        when_present=True,
    ),
    GrantReason(
        CONSUMERS, "sqs:*", "<JobQueue/*Queue>", EVENT_SOURCE + "it receives, deletes and reads the queue's attributes."
    ),
    GrantReason(
        "StatsAggregator/Aggregator",
        "dynamodb:*",
        "<Tables/Jobs.StreamArn>",
        EVENT_SOURCE + "it describes the jobs table's stream and reads its shards.",
    ),
    GrantReason("StatsAggregator/Aggregator", "dynamodb:ListStreams", "*", EVENT_SOURCE + "it lists the streams."),
    GrantReason(
        CONSUMERS,
        "*",
        "*",
        "Every lane runs every job type (by priority or groupId), so the three consumers hold the same job-type and "
        "limits grants; the suites run most types on the normal lane only, whose recorded calls use this grant.",
        same_as="JobQueue/Consumer",
    ),
    GrantReason(
        CONSUMERS,
        "bedrock:InvokeModel*",
        "*",
        "moto cannot serve Bedrock, so the local stack and the suites run the `local` AI provider: no recorded call "
        "can reach these models (tests/unit/test_ai_providers.py checks the requests the Bedrock provider sends).",
    ),
    GrantReason(
        CONSUMERS,
        "ses:SendEmail",
        "*:identity/*",
        "SES authorises a send against the identity that is verified: the sender's address, or its domain when the "
        "domain is verified instead (locally the address is, so calls match that one).",
    ),
    GrantReason(
        CONSUMERS,
        "s3:PutObject",
        "<Files/Bucket>/crawls/*",
        "crawl-website stores its pages and manifest under crawls/; the suites run that job type outside a function "
        "(tests/integration/test_network_types.py calls it directly, the e2e test only checks its validation).",
    ),
    GrantReason(
        "Api/Api",
        "s3:GetObject",
        "<Files/Bucket>/crawls/*",
        "GET /jobs/{id}/result presigns a crawl-website job's manifest under crawls/; no suite runs a crawl through "
        "the stack (see the consumers' crawls/ grant).",
    ),
    *(
        GrantReason(
            "Sweeper/Sweeper",
            "sqs:SendMessage",
            f"<JobQueue/{lane}Queue>",
            "The sweeper sends a due scheduled job or a lost message to the job's own lane; the suites sweep "
            "normal-lane jobs only (the API's recorded sends reach every lane).",
        )
        for lane in ("High", "Ordered")
    ),
)


@dataclass(frozen=True)
class RecordedCall:
    module: str
    event_source: str
    operation: str
    action: str
    resource: str


def recorded_calls() -> list[RecordedCall]:
    directory = Path(os.environ.get(RECORD_DIR_VARIABLE) or DEFAULT_RECORD_DIR)
    calls = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry: dict[str, Any] = json.loads(line)
            calls.append(
                RecordedCall(
                    entry["module"],
                    entry.get("event_source", ""),
                    entry["operation"],
                    entry["action"],
                    entry["resource"],
                )
            )
    if not calls:
        pytest.fail(f"no recorded AWS calls in {directory}: run `make iam-check` (it records, then checks)")
    return calls


def function_of(call: RecordedCall, functions: list[ServiceFunctionPolicy]) -> ServiceFunctionPolicy | None:
    """The function that made ``call``: the one running its handler module, or when several do (the consumers), the
    one whose event source mapping reads the queue or stream the call's invocation came from."""
    candidates = [f for f in functions if f.handler.startswith(call.module + ".")]
    if len(candidates) > 1:
        candidates = [f for f in candidates if any(matches(s, call.event_source) for s in f.event_sources)]
    return candidates[0] if len(candidates) == 1 else None


@pytest.fixture(scope="module")
def functions(synthesized: Synthesized) -> list[ServiceFunctionPolicy]:
    return function_policies(synthesized.stack, synthesized.resources)


@pytest.fixture(scope="module")
def calls_by_function(functions: list[ServiceFunctionPolicy]) -> dict[str, list[RecordedCall]]:
    by_function: dict[str, list[RecordedCall]] = defaultdict(list)
    unattributed = []
    for call in recorded_calls():
        function = function_of(call, functions)
        if function is None:
            unattributed.append(call)
        else:
            by_function[function.path].append(call)
    assert not unattributed, "calls whose function cannot be told from the template:\n" + "\n".join(
        map(str, unattributed)
    )
    return by_function


def test_every_function_was_recorded(
    functions: list[ServiceFunctionPolicy], calls_by_function: dict[str, list[RecordedCall]]
) -> None:
    # Given the service's functions in the template and the calls recorded by the suites
    # When each function's calls are counted
    silent = [f.path for f in functions if not calls_by_function.get(f.path)]

    # Then every function made calls (the recording covered them all)
    assert len(functions) >= 6
    assert not silent, f"no recorded call of {silent}: did the suites run with {RECORD_DIR_VARIABLE} set?"


def test_every_recorded_call_is_allowed_by_its_functions_role(
    functions: list[ServiceFunctionPolicy], calls_by_function: dict[str, list[RecordedCall]]
) -> None:
    # Given each function's recorded calls (as IAM sees them: action and resource ARN)
    # When each is evaluated against the statements of that function's role
    denied = sorted(
        f"{f.path}: {call.action} on {call.resource} ({call.operation})"
        for f in functions
        for call in calls_by_function.get(f.path, [])
        if not f.allows(call.action, call.resource)
    )

    # Then the role allows every one of them
    assert not denied, "recorded calls the function's role does not allow:\n" + "\n".join(denied)


def unused_grants(
    functions: list[ServiceFunctionPolicy], calls_by_function: dict[str, list[RecordedCall]]
) -> list[tuple[str, Grant]]:
    unused = []
    for f in functions:
        calls = calls_by_function.get(f.path, [])
        for grant in f.grants:
            if not any(
                matches(grant.action, c.action, ignore_case=True) and matches(grant.resource, c.resource) for c in calls
            ):
                unused.append((f.path, grant))
    return unused


def test_every_granted_action_is_used_or_has_a_reason(
    functions: list[ServiceFunctionPolicy], calls_by_function: dict[str, list[RecordedCall]]
) -> None:
    # Given the grants no recorded call used
    unused = unused_grants(functions, calls_by_function)

    used = {(f.path, grant) for f in functions for grant in f.grants} - set(unused)

    # When the written reasons are applied to them
    unexplained = sorted(
        f"{path}: {grant.action} on {grant.label}"
        for path, grant in unused
        if not any(reason.covers(path, grant, used) for reason in REASONS)
    )
    stale = [
        reason
        for reason in REASONS
        if not reason.when_present and not any(reason.covers(path, grant, used) for path, grant in unused)
    ]

    # Then every unused grant has a reason, and every reason still explains a grant
    assert not unexplained, "granted, never used, no reason given (GrantReason):\n" + "\n".join(unexplained)
    assert not stale, "reasons that explain no unused grant any more:\n" + "\n".join(map(str, stale))


# The actions that support no resource-level permissions and that the function roles may hold on Resource '*'; the
# cdk-nag IAM5 suppressions for Resource::* (infra/constructs/function.py, stats_stream.py) rely on this list.
ANY_RESOURCE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}


def test_only_actions_without_resource_level_permissions_are_granted_on_any_resource(
    functions: list[ServiceFunctionPolicy],
) -> None:
    # Given every grant of the function roles
    # When the ones on Resource '*' are picked out
    on_anything = sorted(f"{f.path}: {g.action}" for f in functions for g in f.grants if g.resource == "*")

    # Then each is an action IAM cannot scope to a resource
    assert on_anything, "the stats aggregator's dynamodb:ListStreams should show up"
    assert [entry for entry in on_anything if entry.split(": ")[1] not in ANY_RESOURCE_ACTIONS] == []


def test_the_recorder_knows_every_handler_module_of_the_template(functions: list[ServiceFunctionPolicy]) -> None:
    # Given the handler of every function in the template
    # When their modules are listed
    modules = {f.handler.rpartition(".")[0] for f in functions}

    # Then they are the modules whose frames the recorder attributes calls to
    assert modules == HANDLER_MODULES
