"""``send-email``: one message through Amazon SES (moto's SES locally), from ``Settings.email_sender``.

The sender is deploy-time configuration (``JOBS_EMAIL_SENDER``; ``cdk deploy -c senderEmail=...``): a deployment
without one refuses send-email jobs at enqueue, naming the setting, rather than failing them after acceptance.

Addresses are checked at enqueue (plain ``local@domain`` addresses, ASCII, RFC 5321 lengths), so a bad address is a
400 and never a job. SES refusing the message is permanent; throttling and SES outages are retried.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, ConfigDict, Field, field_validator

from functions.adapters.aws_errors import SdkError
from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError
from functions.settings import Settings

MAX_RECIPIENTS = 50  # SES's limit per message
MAX_BODY_CHARS = 1_000_000  # SES allows 10 MB per message after encoding
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_ADDRESS = re.compile(rf"{_LOCAL_PART}@(?:{_LABEL}\.)+{_TLD}")


def valid_address(value: str) -> str:
    address = value.strip()
    local = address.rpartition("@")[0]
    if len(address) > 254 or len(local) > 64 or not _ADDRESS.fullmatch(address):
        raise ValueError(f"'{value[:100]}' is not a valid email address (expected local@domain.tld)")
    return address


# The pattern states ``valid_address``'s rule for the document (not its length limits: 64 before the @, 254 in all).
Address = Annotated[
    str,
    Field(json_schema_extra={"pattern": rf"^\s*{_LOCAL_PART}@(?:{_LABEL}\.)+{_TLD}\s*$"}),
    AfterValidator(valid_address),
]


class EmailPayload(Payload):
    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    html: str | None = Field(default=None, min_length=1, max_length=MAX_BODY_CHARS)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        unique = []
        for address in value:
            if address.lower() not in seen:
                seen.add(address.lower())
                unique.append(address)
        return unique

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if "\r" in value or "\n" in value:
            raise ValueError("must be a single line")
        return value


# SES refuses this message or this sender: sending it again cannot help.
_SES_PERMANENT = frozenset(
    {
        "MessageRejected",
        "InvalidParameterValue",
        "MailFromDomainNotVerifiedException",
        "ConfigurationSetDoesNotExist",
        "ConfigurationSetSendingPausedException",
        "AccountSendingPausedException",
        "AccessDenied",
        "AccessDeniedException",
        "ValidationError",
    }
)
_SES_RETRYABLE = frozenset({"Throttling", "ThrottlingException", "ServiceUnavailable", "InternalFailure"})


def ses_failure(exc: ClientError | BotoCoreError) -> JobFailure:
    if isinstance(exc, BotoCoreError):
        return RetryableJobError(f"SES did not answer: {exc}")
    error = SdkError.of(exc)
    code, message, status = error.code, error.message, error.status
    text = f"SES refused the message: {code}: {message}"
    if code in _SES_PERMANENT:
        return PermanentJobError(text)
    if code in _SES_RETRYABLE or status >= 500 or status == 429:
        return RetryableJobError(f"SES is unavailable: {code}: {message}")
    if 400 <= status < 500:
        return PermanentJobError(text)
    return RetryableJobError(f"SES failed: {code}: {message}")


def sender_configured(settings: Settings) -> str | None:
    if settings.email_sender:
        return None
    return (
        "no sender is configured; set JOBS_EMAIL_SENDER in the functions' environment (on AWS: cdk deploy "
        "-c senderEmail=<an address or domain verified in SES>)"
    )


@job_type("send-email", payload=EmailPayload, requires=sender_configured)
def send_email(payload: EmailPayload, ctx: JobContext) -> dict[str, Any]:
    body: dict[str, Any] = {"Text": {"Data": payload.body, "Charset": "UTF-8"}}
    if payload.html is not None:
        body["Html"] = {"Data": payload.html, "Charset": "UTF-8"}
    try:
        response = ctx.client("ses").send_email(
            Source=ctx.settings.email_sender,
            Destination={"ToAddresses": list(payload.to)},
            Message={"Subject": {"Data": payload.subject, "Charset": "UTF-8"}, "Body": body},
        )
    except (ClientError, BotoCoreError) as exc:
        raise ses_failure(exc) from exc
    return {"messageId": response["MessageId"], "recipients": len(payload.to)}
