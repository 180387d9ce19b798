"""The IAM call recorder (local/iam_calls.py): calls as IAM authorises them, and which function made them."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
import pytest

from local import iam_calls
from local.aws import ACCOUNT_ID

REGION = "us-east-1"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table"


def test_a_transaction_is_authorised_item_by_item_on_each_table() -> None:
    # Given a transaction of a conditional put, an update and a condition check on two tables
    params = {
        "TransactItems": [
            {"Put": {"TableName": "stats", "Item": {}}},
            {"Update": {"TableName": "stats", "Key": {}}},
            {"ConditionCheck": {"TableName": "jobs", "Key": {}}},
        ]
    }
    # When it is translated
    requests = iam_calls.iam_requests("dynamodb", "TransactWriteItems", params, REGION)
    # Then each item is its own action on its own table
    assert requests == [
        ("dynamodb:PutItem", f"{TABLE}/stats"),
        ("dynamodb:UpdateItem", f"{TABLE}/stats"),
        ("dynamodb:ConditionCheckItem", f"{TABLE}/jobs"),
    ]


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        (
            "dynamodb",
            "Query",
            {"TableName": "jobs", "IndexName": "by-type"},
            ("dynamodb:Query", f"{TABLE}/jobs/index/by-type"),
        ),
        (
            "sqs",
            "DeleteMessageBatch",
            {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/jobs-queue"},
            ("sqs:DeleteMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:jobs-queue"),
        ),
        ("s3", "HeadObject", {"Bucket": "b", "Key": "uploads/t/x"}, ("s3:GetObject", "arn:aws:s3:::b/uploads/t/x")),
        ("s3", "ListObjectsV2", {"Bucket": "b"}, ("s3:ListBucket", "arn:aws:s3:::b")),
        (
            "secretsmanager",
            "GetSecretValue",
            {"SecretId": "jobs/webhook-signing/t"},
            (
                "secretsmanager:GetSecretValue",
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:jobs/webhook-signing/t-xxxxxx",
            ),
        ),
        (
            "apigateway",
            "GetApiKey",
            {"apiKey": "abc"},
            ("apigateway:GET", f"arn:aws:apigateway:{REGION}::/apikeys/abc"),
        ),
        (
            "bedrock",
            "Converse",
            {"modelId": "m"},
            ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}::foundation-model/m"),
        ),
        (
            "ses",
            "SendEmail",
            {"Source": "Jobs <jobs@example.com>"},
            ("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:identity/jobs@example.com"),
        ),
    ],
)
def test_calls_translate_to_the_action_and_resource_iam_checks(
    service: str, operation: str, params: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert iam_calls.iam_requests(service, operation, params, REGION) == [expected]


def test_an_operation_the_recorder_does_not_know_is_marked_so_the_check_fails_on_it() -> None:
    assert iam_calls.iam_requests("sqs", "PurgeQueue", {"QueueUrl": "https://x/1/q"}, REGION)[0][0] == "sqs:PurgeQueue"
    assert iam_calls.iam_requests("s3", "PutBucketPolicy", {"Bucket": "b"}, REGION) == [
        ("s3:?PutBucketPolicy", "arn:aws:s3:::b")
    ]


def _frame_of_a_handler(module: str, event: dict[str, Any]) -> FrameType:
    namespace: dict[str, Any] = {"__name__": module, "sys": sys}
    exec("def handler(event, context):\n    return sys._getframe()", namespace)  # a frame of that module
    frame: FrameType = namespace["handler"](event, None)
    return frame


def test_the_function_is_the_innermost_handler_module_with_its_event_source() -> None:
    # Given a frame of the consumer's handler invoked for a record of the high lane's queue
    source = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:jobs-high"
    frame = _frame_of_a_handler("functions.handlers.consumer", {"Records": [{"eventSourceARN": source}]})
    # When the invoking function is read from it
    # Then it names the module and the queue the invocation came from
    assert iam_calls.invoking_function(frame) == {"module": "functions.handlers.consumer", "event_source": source}


def test_a_call_outside_any_handler_is_not_attributed() -> None:
    assert iam_calls.invoking_function(sys._getframe()) is None


def test_recording_writes_each_distinct_call_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the recorder installed in a fresh state, and a client made afterwards
    monkeypatch.setattr(iam_calls, "_recorder", None)
    monkeypatch.setattr("botocore.session.Session.create_client", iam_calls._create_client)
    monkeypatch.setattr("concurrent.futures.ThreadPoolExecutor.submit", iam_calls._submit)
    iam_calls.install(tmp_path)
    sqs = boto3.client("sqs", region_name=REGION)
    namespace: dict[str, Any] = {"__name__": "functions.handlers.sweeper", "sqs": sqs}
    exec(  # the call made from a frame of the sweeper's module
        "def handler(event, context):\n"
        "    for _ in range(2):\n"
        "        params = {'QueueUrl': 'https://q/1/jobs-queue', 'MessageBody': 'x'}\n"
        "        sqs.generate_presigned_url('send_message', Params=params)\n",
        namespace,
    )
    # When the sweeper signs the same request twice
    namespace["handler"]({}, None)
    # Then one line records it, attributed to the sweeper's module
    (path,) = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {
            "module": "functions.handlers.sweeper",
            "operation": "sqs:SendMessage",
            "action": "sqs:SendMessage",
            "resource": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:jobs-queue",
        }
    ]


def test_a_thread_a_handler_starts_records_for_that_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the recorder installed in a fresh state (a job's attempt runs on a thread of its own, for its timeout)
    monkeypatch.setattr(iam_calls, "_recorder", None)
    monkeypatch.setattr("botocore.session.Session.create_client", iam_calls._create_client)
    monkeypatch.setattr("concurrent.futures.ThreadPoolExecutor.submit", iam_calls._submit)
    monkeypatch.setattr("threading.Thread.start", iam_calls._start)
    iam_calls.install(tmp_path)
    sqs = boto3.client("sqs", region_name=REGION)
    namespace: dict[str, Any] = {"__name__": "functions.handlers.consumer", "sqs": sqs, "threading": threading}
    exec(  # the consumer's handler starts a thread whose stack holds no frame of the handler's module
        "def handler(event, context):\n"
        "    params = {'QueueUrl': 'https://q/1/jobs-queue', 'MessageBody': 'x'}\n"
        "    worker = threading.Thread(target=sqs.generate_presigned_url, args=('send_message',), "
        "kwargs={'Params': params})\n"
        "    worker.start()\n"
        "    worker.join()\n",
        namespace,
    )
    # When that thread makes a call
    namespace["handler"]({}, None)
    # Then it is recorded for the consumer, which started the thread
    (path,) = tmp_path.glob("*.jsonl")
    assert [json.loads(line)["module"] for line in path.read_text().splitlines()] == ["functions.handlers.consumer"]
