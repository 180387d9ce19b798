"""The operator commands (``jobs dlq ...``, ``jobs keys create``) against moto in-process, through the CLI."""

from __future__ import annotations

import json
from typing import Any

import boto3
from typer.testing import CliRunner

from functions.handlers import authorizer
from jobsctl.cli import app
from jobsctl.ops import resolve_queues
from local.gateway import authorize
from tests.integration.harness import Service

runner = CliRunner()


def dead_letter(service: Service, job_id: str, tenant: str = "tenant-a", reason: str = "boom") -> None:
    """A message as the consumer moves it to the DLQ: the job pointer, with the reason as an attribute."""
    service.sqs.send_message(
        QueueUrl=service.dlq_url,
        MessageBody=json.dumps({"v": 1, "tenant": tenant, "jobId": job_id}),
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason}},
    )


def bodies(service: Service, url: str) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(4):
        response = service.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"]
        )
        for message in response.get("Messages", []):
            seen[message["MessageId"]] = {**json.loads(message["Body"]), "attributes": message.get("MessageAttributes")}
    return sorted(seen.values(), key=lambda body: body["jobId"])


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_dlq_list_shows_job_tenant_reason_and_receive_count_and_consumes_nothing(service: Service) -> None:
    # Given twelve dead-lettered messages (more than one receive returns)
    for i in range(12):
        dead_letter(service, f"job-{i:02d}", reason=f"attempt failed {i}")

    # When they are listed
    result = run("dlq", "list", "--limit", "50", "--json")

    # Then every one is shown with its job id, tenant, reason and receive count
    assert result.exit_code == 0, result.output
    letters = json.loads(result.stdout)
    assert sorted(letter["jobId"] for letter in letters) == [f"job-{i:02d}" for i in range(12)]
    first = next(letter for letter in letters if letter["jobId"] == "job-03")
    assert (first["tenant"], first["reason"], first["receiveCount"]) == ("tenant-a", "attempt failed 3", 1)
    # and they are all still in the DLQ, visible right away
    assert service.queue_counts(service.dlq_url)["visible"] == 12


def test_dlq_list_as_a_table_names_the_job_and_the_reason(service: Service) -> None:
    dead_letter(service, "job-table", reason="out of attempts")
    result = run("dlq", "list")
    assert result.exit_code == 0, result.output
    assert "job-table" in result.stdout
    assert "out of attempts" in result.stdout


def test_dlq_redrive_all_moves_every_message_back_when_move_tasks_are_unavailable(service: Service) -> None:
    # Given three dead-lettered messages, and moto, which has no StartMessageMoveTask
    for i in range(3):
        dead_letter(service, f"job-{i}")

    # When all are redriven
    result = run("dlq", "redrive", "--all")

    # Then they were received, sent to the job queue with their attributes, and deleted from the DLQ
    assert result.exit_code == 0, result.output
    assert "Moved 3 message(s)" in result.stdout
    assert service.queue_counts(service.dlq_url) == {"visible": 0, "notvisible": 0, "delayed": 0}
    moved = bodies(service, service.queue_url)
    assert [body["jobId"] for body in moved] == ["job-0", "job-1", "job-2"]
    assert moved[0]["attributes"]["reason"]["StringValue"] == "boom"


def test_dlq_redrive_by_job_id_or_message_id_moves_only_those(service: Service) -> None:
    # Given three dead-lettered messages
    for i in range(3):
        dead_letter(service, f"job-{i}")
    listed = json.loads(run("dlq", "list", "--json").stdout)
    message_id_of_2 = next(letter["messageId"] for letter in listed if letter["jobId"] == "job-2")

    # When job-0 (by job id) and job-2 (by SQS message id) are redriven
    result = run("dlq", "redrive", "job-0", message_id_of_2)

    # Then those two are back in the job queue and job-1 is still in the DLQ, visible
    assert result.exit_code == 0, result.output
    assert [body["jobId"] for body in bodies(service, service.queue_url)] == ["job-0", "job-2"]
    assert [body["jobId"] for body in bodies(service, service.dlq_url)] == ["job-1"]


def test_dlq_redrive_of_an_unknown_id_says_not_found_and_exits_1(service: Service) -> None:
    dead_letter(service, "job-0")
    result = run("dlq", "redrive", "no-such-job")
    assert result.exit_code == 1
    assert "NOT_FOUND" in result.stderr
    assert "no-such-job" in result.stderr
    assert [body["jobId"] for body in bodies(service, service.dlq_url)] == ["job-0"]


def test_dlq_redrive_needs_all_or_ids_and_exits_2(service: Service) -> None:
    assert run("dlq", "redrive").exit_code == 2
    assert run("dlq", "redrive", "--all", "job-1").exit_code == 2


def test_explicit_queue_urls_win_and_an_unknown_queue_is_an_aws_error(service: Service) -> None:
    dead_letter(service, "job-x")
    ok = run("dlq", "list", "--json", "--dlq-url", service.dlq_url, "--queue-url", service.queue_url)
    assert [letter["jobId"] for letter in json.loads(ok.stdout)] == ["job-x"]
    service.sqs.delete_queue(QueueUrl=service.dlq_url)
    missing = run("dlq", "list")
    assert missing.exit_code == 1
    assert "NonExistentQueue" in missing.stderr or "queue 'jobs-dlq' not found" in missing.stderr


def test_queue_urls_can_come_from_the_stack_outputs(service: Service) -> None:
    # Given a CloudFormation stack whose outputs name the queues (as the CDK stack's QueueUrl / DlqUrl do)
    cloudformation = boto3.client("cloudformation")
    template = {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}, "D": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"QueueUrl": {"Value": {"Ref": "Q"}}, "DlqUrl": {"Value": {"Ref": "D"}}},
    }
    cloudformation.create_stack(StackName="JobsTest", TemplateBody=json.dumps(template))
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName="JobsTest")["Stacks"][0]["Outputs"]
    }

    # When the queues are resolved with --stack
    queues = resolve_queues(service.sqs, stack="JobsTest", cloudformation=cloudformation)

    # Then they are the stack's, not the ones named in infra/config.py
    assert (queues.queue_url, queues.dlq_url) == (outputs["QueueUrl"], outputs["DlqUrl"])
    assert queues.queue_url != service.queue_url


def keys(service: Service, *args: str) -> Any:
    return run("keys", *args, "--table", service.settings.keys_table)


def test_keys_create_stores_a_hashed_key_of_the_tenant_and_prints_its_value_once(service: Service) -> None:
    # When a read key is created for tenant acme
    result = keys(service, "create", "--tenant", "acme", "--scope", "read", "--rate-limit", "5", "--json")

    # Then the printed value is accepted by the authorizer as acme's read key, and only its hash is stored
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["tenant"], printed["scope"], printed["rateLimit"]) == ("acme", "read", 5)
    context = authorize(printed["value"])
    assert (context["tenant"], context["keyId"], context["scope"]) == ("acme", printed["id"], "read")
    assert printed["value"] not in str(service.dynamodb.scan(TableName=service.settings.keys_table)["Items"])


def test_keys_create_prints_the_value_once_for_humans(service: Service) -> None:
    result = keys(service, "create", "beta")
    assert result.exit_code == 0, result.output
    assert "Value: " in result.stdout
    assert "tenant beta" in result.stdout


def test_keys_list_rotate_revoke_and_import(service: Service) -> None:
    # Given a key of acme
    created = json.loads(keys(service, "create", "--tenant", "acme", "--json").stdout)

    # When it is rotated, then revoked, and an old value is imported for tenant legacy
    rotated = keys(service, "rotate", created["id"], "--json")
    revoked = keys(service, "revoke", created["id"])
    imported = keys(service, "import", "--tenant", "legacy", "--value", "old-gateway-key-0123456789")
    authorizer.reset()

    # Then the rotation printed a new value, the revoked key works no more, the imported one does
    assert rotated.exit_code == revoked.exit_code == imported.exit_code == 0, rotated.output + revoked.output
    assert json.loads(rotated.stdout)["value"] != created["value"]
    assert f"Revoked key {created['id']} of tenant acme" in revoked.stdout
    assert authorize(json.loads(rotated.stdout)["value"])["tenant"] == ""
    assert authorize("old-gateway-key-0123456789")["tenant"] == "legacy"
    # And the listing shows both, the revoked one with its time, and filters by tenant
    listed = json.loads(keys(service, "list", "--json").stdout)
    by_tenant = {key["tenant"]: key for key in listed}
    assert by_tenant["acme"]["revokedAt"] and by_tenant["legacy"]["revokedAt"] is None
    legacy = json.loads(keys(service, "list", "--tenant", "legacy", "--json").stdout)
    assert [key["tenant"] for key in legacy] == ["legacy"]
    assert "1 key(s)" in keys(service, "list", "--tenant", "acme").stdout


def test_keys_commands_explain_a_bad_request(service: Service) -> None:
    assert keys(service, "create", "--tenant", "acme", "--scope", "write").exit_code == 1
    unknown = keys(service, "revoke", "nope")
    assert unknown.exit_code == 1
    assert "no key 'nope'" in unknown.output
