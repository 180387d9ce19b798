"""``send-email``: one message through Amazon SES (moto's SES locally), from ``Settings.email_sender``.

The sender is deploy-time configuration (``JOBS_EMAIL_SENDER``; ``cdk deploy -c senderEmail=...``): a deployment
without one refuses send-email jobs at enqueue, naming the setting, rather than failing them after acceptance.

Addresses are checked at enqueue by the pattern the API document states (ASCII ``local@domain``, at most 64
characters before the @ and 254 in all), so a bad address is a 400 and never a job. SES refusing the message is
permanent; throttling and SES outages are retried.
"""

from __future__ import annotations

from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict, Field, field_validator

from functions.adapters.aws_errors import SdkError
from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.bounds import NOT_BLANK_PATTERN
from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError
from functions.settings import Settings

MAX_RECIPIENTS = 50  # SES's limit per message
MAX_BODY_CHARS = 1_000_000  # SES allows 10 MB per message after encoding
MAX_ADDRESS_CHARS = 254  # RFC 5321: 64 characters before the @, 254 in all
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
# Bounded repetitions only (no lookaheads), so the document and the validator are the same rule: the local part is
# 1-64 characters that neither start nor end with a dot, the domain two or more DNS labels.
_LOCAL_PART = rf"{_ATEXT}(?:[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{0,62}}{_ATEXT})?"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS_PATTERN = rf"^{_LOCAL_PART}@{_LABEL}(?:\.{_LABEL})+$"
# One line (no CR or LF), not blank.
_ONE_LINE = rf"^[^\r\n]*{NOT_BLANK_PATTERN}[^\r\n]*$"

Address = Annotated[str, Field(max_length=MAX_ADDRESS_CHARS, pattern=ADDRESS_PATTERN)]


def _one_or_many_schema(schema: dict[str, Any]) -> None:
    """``_one_or_many``: a single address, or an array of them."""
    array = dict(schema)
    schema.clear()
    schema["anyOf"] = [dict(array["items"]), array]


class EmailPayload(Payload):
    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=MAX_RECIPIENTS, json_schema_extra=_one_or_many_schema)
    subject: str = Field(min_length=1, max_length=998, pattern=_ONE_LINE)
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
