"""The functions' role policies read from the synthesized template, resolved to ARN patterns of the local stack.

The local stack creates the same resources under the names ``infra.config`` gives them, so a ``Fn::GetAtt`` of the
jobs table's ``Arn`` becomes ``arn:aws:dynamodb:us-east-1:123456789012:table/jobs``: recorded calls (local ARNs) can
then be matched against the statements as IAM would, with ``*`` and ``?`` wildcards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_cdk import CfnResource, Stack

from infra.config import ServiceConfig, local_config
from local.aws import ACCOUNT_ID, REGION

PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::URLSuffix": "amazonaws.com",
}


def local_names(config: ServiceConfig) -> dict[str, str]:
    """Construct path (under the stack) -> the name the local stack gives that resource (local/aws.py)."""
    queues = config.queue
    return {
        "Tables/Jobs": config.jobs_table,
        "Tables/Stats": config.stats_table,
        "Tables/Imports": config.imports_table,
        "Tables/Limits": config.limits_table,
        "Tables/Keys": config.keys_table,
        "Tables/Dependencies": config.dependencies_table,
        "Schedules/Table": config.schedules_table,
        "Files/Bucket": config.files_bucket,
        "JobQueue/Queue": queues.name,
        "JobQueue/DeadLetterQueue": queues.dlq_name,
        "JobQueue/HighQueue": queues.high_name,
        "JobQueue/HighDeadLetterQueue": queues.high_dlq_name,
        "JobQueue/OrderedQueue": queues.ordered_name,
        "JobQueue/OrderedDeadLetterQueue": queues.ordered_dlq_name,
    }


@dataclass(frozen=True)
class Grant:
    """One action on one resource pattern, as a statement of a function's role grants it."""

    action: str
    resource: str  # the ARN pattern, resolved for the local stack
    label: str  # the same with construct paths in <...> instead of names: what reasons and messages name


@dataclass(frozen=True)
class ServiceFunctionPolicy:
    path: str  # construct path under the stack, e.g. "JobQueue/Consumer"
    handler: str
    event_sources: tuple[str, ...]  # resolved ARNs of its event source mappings
    grants: tuple[Grant, ...]

    def allows(self, action: str, resource: str) -> bool:
        return any(matches(g.action, action, ignore_case=True) and matches(g.resource, resource) for g in self.grants)


class Resolver:
    """Resolves CloudFormation intrinsics of this stack's template to ARN patterns (or to labels)."""

    def __init__(self, stack: Stack, resources: dict[str, dict[str, Any]]) -> None:
        self.resources = resources
        self.paths: dict[str, str] = {}
        for construct in stack.node.find_all():
            if isinstance(construct, CfnResource):
                logical_id = stack.resolve(stack.get_logical_id(construct))
                self.paths[logical_id] = _short_path(construct.node.path, stack.node.id)
        self.names = local_names(local_config())

    def path(self, logical_id: str) -> str:
        return self.paths.get(logical_id, logical_id)

    def resolve(self, value: Any, *, symbolic: bool = False) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            (function, argument), *_ = value.items()
            if function == "Ref":
                if argument in PSEUDO_PARAMETERS:
                    return PSEUDO_PARAMETERS[argument]
                return self._name(argument, symbolic)
            if function == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self._attribute(logical_id, attribute, symbolic)
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(self.resolve(part, symbolic=symbolic) for part in parts)
            if function == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), symbolic), text)
        raise ValueError(f"cannot resolve {value!r}")

    def _sub(self, reference: str, symbolic: bool) -> str:
        if reference in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[reference]
        if "." in reference:
            logical_id, attribute = reference.split(".", 1)
            return self._attribute(logical_id, attribute, symbolic)
        return self._name(reference, symbolic)

    def _name(self, logical_id: str, symbolic: bool) -> str:
        path = self.path(logical_id)
        if symbolic or path not in self.names:
            return f"<{path}>"
        return self.names[path]

    def _attribute(self, logical_id: str, attribute: str, symbolic: bool) -> str:
        kind = self.resources.get(logical_id, {}).get("Type", "")
        name = self._name(logical_id, symbolic)
        if symbolic:
            return f"<{self.path(logical_id)}>" if attribute == "Arn" else f"<{self.path(logical_id)}.{attribute}>"
        account = f"{REGION}:{ACCOUNT_ID}"
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{account}:table/{name}"
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return f"arn:aws:dynamodb:{account}:table/{name}/stream/*"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{account}:{name}"
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{account}:log-group:{name}:*"
        # Nothing the local stack has: a pattern no recorded call can match.
        return f"<{self.path(logical_id)}.{attribute}>"


def _short_path(path: str, stack_id: str) -> str:
    parts = path.split("/")
    if parts and parts[0] == stack_id:
        parts = parts[1:]
    if parts and parts[-1] in {"Resource", "Default"}:
        parts = parts[:-1]
    return "/".join(parts)


def function_policies(stack: Stack, resources: dict[str, dict[str, Any]]) -> list[ServiceFunctionPolicy]:
    """Every function of the service (a handler under ``functions.handlers``) with what its role allows."""
    resolver = Resolver(stack, resources)
    policies_of_role: dict[str, list[dict[str, Any]]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy":
            for role in resource["Properties"].get("Roles", []):
                policies_of_role.setdefault(role["Ref"], []).append(resource["Properties"]["PolicyDocument"])
    sources: dict[str, list[str]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = resource["Properties"]
            target = _function_behind(properties["FunctionName"], resources)
            sources.setdefault(target, []).append(resolver.resolve(properties["EventSourceArn"]))

    found = []
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::Lambda::Function" or not str(properties.get("Handler", "")).startswith(
            "functions.handlers."
        ):
            continue
        role_id = properties["Role"]["Fn::GetAtt"][0]
        role = resources[role_id]["Properties"]
        if role.get("ManagedPolicyArns"):
            raise AssertionError(f"{resolver.path(logical_id)}: managed policies cannot be checked here")
        documents = policies_of_role.get(role_id, []) + [p["PolicyDocument"] for p in role.get("Policies", [])]
        grants = [grant for document in documents for grant in _grants(document, resolver)]
        found.append(
            ServiceFunctionPolicy(
                path=resolver.path(logical_id).removesuffix("/Function"),
                handler=properties["Handler"],
                event_sources=tuple(sources.get(logical_id, [])),
                grants=tuple(dict.fromkeys(grants)),
            )
        )
    return found


def _function_behind(reference: Any, resources: dict[str, dict[str, Any]]) -> str:
    """The logical id of the function an event source mapping invokes, through an alias or a version if any."""
    while True:
        logical_id = reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]
        resource = resources[logical_id]
        if resource["Type"] == "AWS::Lambda::Function":
            return str(logical_id)
        # An alias names its function and a version; a version names its function.
        reference = resource["Properties"]["FunctionName"]


def _grants(document: dict[str, Any], resolver: Resolver) -> list[Grant]:
    grants = []
    for statement in document["Statement"]:
        if statement.get("Effect") != "Allow" or "Condition" in statement or "NotAction" in statement:
            # Evaluating these is not implemented: refuse rather than guess what they allow.
            raise AssertionError(f"statement not checkable here (Deny, Condition or NotAction): {statement}")
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            for resource in resources:
                grants.append(Grant(action, resolver.resolve(resource), resolver.resolve(resource, symbolic=True)))
    return grants


@cache
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: ``*`` any run of characters (``/`` included), ``?`` one character."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None
