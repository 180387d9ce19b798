"""Reading the synthesized template: intrinsic functions rendered as comparable strings, roles' permissions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Resources = dict[str, dict[str, Any]]


def render(value: Any) -> str:
    """``{"Fn::GetAtt": ["Jobs", "Arn"]}`` -> ``${Jobs.Arn}``, ``{"Ref": "X"}`` -> ``${X}``, joins concatenated."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Ref":
            return "${" + argument + "}"
        if function == "Fn::GetAtt":
            return "${" + ".".join(argument) + "}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(render(part) for part in parts)
    raise ValueError(f"cannot render {value!r}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def of_type(resources: Resources, resource_type: str) -> Resources:
    return {logical_id: r for logical_id, r in resources.items() if r["Type"] == resource_type}


def only(resources: Resources, resource_type: str) -> tuple[str, dict[str, Any]]:
    found = of_type(resources, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def functions_by_handler(resources: Resources) -> dict[str, tuple[str, dict[str, Any]]]:
    """handler -> (logical id, properties) of each Lambda function."""
    return {
        r["Properties"]["Handler"]: (logical_id, r["Properties"])
        for logical_id, r in of_type(resources, "AWS::Lambda::Function").items()
    }


def role_of(function_properties: dict[str, Any]) -> str:
    role = function_properties["Role"]
    assert "Fn::GetAtt" in role, f"the role should be a role of this stack, got {role!r}"
    return str(role["Fn::GetAtt"][0])


def role_permissions(resources: Resources, role_logical_id: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair the role's inline and attached policies of this stack allow."""
    documents = [p["PolicyDocument"] for p in resources[role_logical_id]["Properties"].get("Policies", [])]
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"].get("Roles", []):
            documents.append(policy["Properties"]["PolicyDocument"])
    pairs: set[tuple[str, str]] = set()
    for document in documents:
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", statement
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    pairs.add((action, render(resource)))
    return pairs


def permissions_for(pairs: set[tuple[str, str]], service: str) -> set[tuple[str, str]]:
    return {(action, resource) for action, resource in pairs if action.startswith(service + ":")}


def policy_statements(resources: Resources) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) for every identity and resource policy in the template."""
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        documents: list[dict[str, Any]] = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::IAM::Role":
            documents.append(properties["AssumeRolePolicyDocument"])
            documents.extend(p["PolicyDocument"] for p in properties.get("Policies", []))
        elif resource["Type"] in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            documents.append(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::KMS::Key":
            documents.append(properties["KeyPolicy"])
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement


def arn(logical_id: str) -> str:
    """How ``render`` shows ``{"Fn::GetAtt": [logical_id, "Arn"]}``."""
    return "${" + logical_id + ".Arn}"


def named_by_setting(resources: Resources, env_name: str) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of what a setting of the functions names, e.g. ``JOBS_STATS_TABLE`` -> the stats table.

    Every function gets the same settings; the value is a ``Ref`` to the resource."""
    values = {
        json_key(f["Properties"]["Environment"]["Variables"][env_name])
        for f in of_type(resources, "AWS::Lambda::Function").values()
        if env_name in f["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert len(values) == 1, f"{env_name}: {values}"
    value = values.pop()
    assert value.startswith("Ref:"), f"{env_name} should be a Ref, got {value}"
    logical_id = value.removeprefix("Ref:")
    return logical_id, resources[logical_id]


def json_key(value: Any) -> str:
    return "Ref:" + value["Ref"] if isinstance(value, dict) and set(value) == {"Ref"} else repr(value)


def all_functions(resources: Resources) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, properties) of every Lambda function (two consumers share a handler)."""
    return [(logical_id, r["Properties"]) for logical_id, r in of_type(resources, "AWS::Lambda::Function").items()]


def jobs_and_stats_tables(resources: Resources) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """(logical id, resource) of the jobs table (the one with indexes) and of the stats table."""
    return named_by_setting(resources, "JOBS_JOBS_TABLE"), named_by_setting(resources, "JOBS_STATS_TABLE")


def imports_table(resources: Resources) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the batch-import table."""
    return named_by_setting(resources, "JOBS_IMPORTS_TABLE")


def dependencies_table(resources: Resources) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the job dependencies' table."""
    return named_by_setting(resources, "JOBS_DEPENDENCIES_TABLE")


def object_arns(bucket_id: str, *prefixes: str) -> set[str]:
    """How ``render`` shows the ARNs of the objects under each prefix of a bucket."""
    return {"${" + bucket_id + ".Arn}/" + prefix + "*" for prefix in prefixes}


def main_queue_and_dlq(resources: Resources) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """(logical id, properties) of the main (normal lane) queue and of its DLQ."""
    return lane_queue_and_dlq(resources, "normal")


LANE_SETTINGS = {
    "normal": ("JOBS_QUEUE_URL", "JOBS_DLQ_URL"),
    "high": ("JOBS_HIGH_QUEUE_URL", "JOBS_HIGH_DLQ_URL"),
    "ordered": ("JOBS_ORDERED_QUEUE_URL", "JOBS_ORDERED_DLQ_URL"),
}


def lane_queue_and_dlq(
    resources: Resources, lane: str
) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """(logical id, properties) of a lane's queue and of its DLQ, as the functions' settings name them."""
    queue_setting, dlq_setting = LANE_SETTINGS[lane]
    queue_id, queue = named_by_setting(resources, queue_setting)
    dlq_id, dlq = named_by_setting(resources, dlq_setting)
    assert queue["Type"] == dlq["Type"] == "AWS::SQS::Queue"
    return (queue_id, queue["Properties"]), (dlq_id, dlq["Properties"])


def send_to_every_lane(resources: Resources) -> set[tuple[str, str]]:
    """The (action, resource) pairs that let a function send to each lane's queue (a job goes to its own lane)."""
    return {("sqs:SendMessage", arn(lane_queue_and_dlq(resources, lane)[0][0])) for lane in LANE_SETTINGS}
