"""The SQS side: send job messages, defer a received one, and move one to the dead-letter queue."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol, cast

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError
from functions.models.job import JobMessage

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit
# SQS caps visibility at 12 h counted from when the message was received; a received message may have waited for
# up to a Lambda timeout (15 min at most) before it is deferred, so stay that far below the cap.
MAX_VISIBILITY_SECONDS = 43_200 - 900


class JobQueue(Protocol):
    def send(self, message: JobMessage, delay_seconds: int = 0) -> None: ...
    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None: ...
    def dead_letter(self, body: str, reason: str) -> None: ...


class SqsJobQueue:
    def __init__(self, client: Any, queue_url: str, dlq_url: str = "") -> None:
        self._sqs = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    def send(self, message: JobMessage, delay_seconds: int = 0) -> None:
        delay = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        self._call("SendMessage", QueueUrl=self._queue_url, MessageBody=message.to_body(), DelaySeconds=delay)

    def defer(self, source_arn: str, receipt_handle: str, seconds: int) -> None:
        """Make a received message visible again after ``seconds`` (the record's failure is reported separately)."""
        self._call(
            "ChangeMessageVisibility",
            QueueUrl=self._url_of(source_arn),
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(MAX_VISIBILITY_SECONDS, int(seconds))),
        )

    def dead_letter(self, body: str, reason: str) -> None:
        self._call(
            "SendMessage",
            QueueUrl=self._dlq_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:256] or "unknown"}},
        )

    def _url_of(self, source_arn: str) -> str:
        if not source_arn:
            return self._queue_url
        return _queue_url_for_arn(self._sqs, source_arn)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = {
            "SendMessage": self._sqs.send_message,
            "ChangeMessageVisibility": self._sqs.change_message_visibility,
        }[operation]
        try:
            return cast(dict[str, Any], method(**kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"SQS {operation} failed: {exc}") from exc


@lru_cache(maxsize=16)
def _queue_url_for_arn(client: Any, arn: str) -> str:
    # arn:aws:sqs:<region>:<account>:<name>; asked once per container, so it holds for any endpoint (AWS or moto).
    _, _, _, _, account, name = arn.split(":", 5)
    try:
        return str(client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"SQS GetQueueUrl failed: {exc}") from exc
