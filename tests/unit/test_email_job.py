"""``send-email``: address validation at enqueue, the SES request, and how SES errors are classified."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.logic.enqueue import parse_job_spec
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.email import EmailPayload, send_email
from functions.models.errors import InvalidPayload, InvalidType, PermanentJobError, RetryableJobError
from functions.settings import Settings

SENDER = "sender@example.com"
NOW = 1_795_000_000_000


class FakeSes:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def send_email(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        if self.error is not None:
            raise self.error
        return {"MessageId": "msg-1"}


def _context(ses: FakeSes) -> JobContext:
    return JobContext(
        job_id="job-1",
        tenant="acme",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(email_sender=SENDER),
        client=lambda service: ses,
    )


def _parse(payload: dict[str, Any]) -> EmailPayload:
    parsed = get_job_type("send-email").parse_payload(payload)
    assert isinstance(parsed, EmailPayload)
    return parsed


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "nope"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail"
    )


VALID = {"to": ["a@example.com"], "subject": "Hello", "body": "Hi there"}


# --- validation (400 INVALID_PAYLOAD at enqueue) ---


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com",
        "first.last+tag@sub.example.co.uk",
        "o'neil@example.org",
        "x@xn--bcher-kva.example",
        "A@B.IO",
        "x" * 64 + "@example.com",
        # The document's pattern has no lookaheads: two dots in a row pass it, and so pass here (SES decides).
        "a..b@example.com",
    ],
)
def test_plain_addresses_are_accepted(address: str) -> None:
    # When a payload names a well-formed address
    payload = _parse({**VALID, "to": [address]})
    # Then it is kept as given
    assert payload.to == [address]


@pytest.mark.parametrize(
    "address",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@example",
        "a@@example.com",
        "a b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example..com",
        "Name <a@example.com>",
        "a@example.com\r\nBcc: victim@example.com",
        "ä@example.com",
        "a@exämple.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "x" * 64 + "@" + ".".join(["b" * 63] * 3) + ".example",  # 255 characters
    ],
)
def test_invalid_addresses_are_rejected_at_enqueue_with_their_position(address: str) -> None:
    # When one of the recipients is not a valid address
    with pytest.raises(InvalidPayload) as caught:
        _parse({**VALID, "to": ["ok@example.com", address]})
    # Then the payload is refused, pointing at that recipient
    assert caught.value.code == "INVALID_PAYLOAD"
    assert [detail["field"] for detail in caught.value.details] == ["to.1"]


def test_a_single_address_string_becomes_a_list_and_duplicates_are_dropped() -> None:
    assert _parse({**VALID, "to": "a@example.com"}).to == ["a@example.com"]
    assert _parse({**VALID, "to": ["a@example.com", "A@Example.com", "b@example.com"]}).to == [
        "a@example.com",
        "b@example.com",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": []}, "to"),
        ({"to": [f"u{i}@example.com" for i in range(51)]}, "to"),
        ({"subject": ""}, "subject"),
        ({"subject": "   "}, "subject"),
        ({"subject": "x" * 999}, "subject"),
        ({"subject": "line one\nBcc: someone@example.com"}, "subject"),
        ({"body": ""}, "body"),
        ({"html": ""}, "html"),
        ({"cc": ["a@example.com"]}, "cc"),
    ],
)
def test_other_payload_errors_are_rejected(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        _parse({**VALID, **change})
    assert field in [detail["field"] for detail in caught.value.details]


@pytest.mark.parametrize(
    "change",
    [{"to": "a@example.com\n"}, {"subject": "Hello\n"}, {"subject": "\x1e\u3000"}],
)
def test_a_final_line_break_or_a_subject_of_spaces_only_is_refused(change: dict[str, Any]) -> None:
    # Given "$" is the end of the text and "not blank" names the characters str.strip() removes, as in the document
    with pytest.raises(InvalidPayload):
        _parse({**VALID, **change})


def test_fifty_recipients_and_a_998_character_subject_are_the_limits() -> None:
    payload = _parse({**VALID, "to": [f"u{i}@example.com" for i in range(50)], "subject": "s" * 998})
    assert len(payload.to) == 50


def test_the_payload_survives_the_round_trip_through_the_job_record() -> None:
    # Given a payload as enqueue stores it (validated, dumped by alias)
    stored = _parse({**VALID, "to": "a@example.com"}).model_dump(mode="json", by_alias=True)
    # Then the consumer can parse it again to the same thing
    assert _parse(stored).model_dump() == _parse(VALID).model_dump()


# --- the SES request ---


def test_sends_a_text_message_from_the_configured_sender() -> None:
    # Given SES that accepts the message
    ses = FakeSes()
    # When the job runs
    result = send_email(_parse({**VALID, "to": ["a@example.com", "b@example.com"]}), _context(ses))
    # Then one SendEmail went out from the configured sender to the recipients, text only
    assert ses.calls == [
        {
            "Source": SENDER,
            "Destination": {"ToAddresses": ["a@example.com", "b@example.com"]},
            "Message": {
                "Subject": {"Data": "Hello", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "Hi there", "Charset": "UTF-8"}},
            },
        }
    ]
    assert result == {"messageId": "msg-1", "recipients": 2}


def test_html_is_sent_alongside_the_text() -> None:
    ses = FakeSes()
    send_email(_parse({**VALID, "html": "<p>Hi</p>"}), _context(ses))
    assert ses.calls[0]["Message"]["Body"]["Html"] == {"Data": "<p>Hi</p>", "Charset": "UTF-8"}


# --- classification of SES errors ---


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("MessageRejected", 400),
        ("InvalidParameterValue", 400),
        ("MailFromDomainNotVerifiedException", 400),
        ("ConfigurationSetDoesNotExist", 400),
        ("AccountSendingPausedException", 400),
        ("AccessDenied", 403),
        ("SomethingNew", 400),
    ],
)
def test_ses_refusals_are_permanent(code: str, status: int) -> None:
    with pytest.raises(PermanentJobError, match=code):
        send_email(_parse(VALID), _context(FakeSes(_client_error(code, status))))


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttling", 400), ("ServiceUnavailable", 503), ("InternalFailure", 500), ("SomethingNew", 502)],
)
def test_ses_throttling_and_outages_are_retryable(code: str, status: int) -> None:
    with pytest.raises(RetryableJobError, match=code):
        send_email(_parse(VALID), _context(FakeSes(_client_error(code, status))))


def test_a_connection_failure_is_retryable() -> None:
    error = EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com")
    with pytest.raises(RetryableJobError, match="did not answer"):
        send_email(_parse(VALID), _context(FakeSes(error)))


# --- the sender is deploy-time configuration: without one, refused at enqueue ---


def test_without_a_sender_send_email_is_refused_at_enqueue_naming_the_setting() -> None:
    # Given a deployment with no sender configured
    without_a_sender = Settings(email_sender="")
    # When a send-email job is submitted
    with pytest.raises(InvalidType) as refused:
        parse_job_spec({"type": "send-email", "payload": VALID}, NOW, settings=without_a_sender)
    # Then it is a 400 with a stable code that names the setting and the deploy option
    assert (refused.value.status_code, refused.value.code) == (400, "INVALID_TYPE")
    assert "JOBS_EMAIL_SENDER" in refused.value.message
    assert "-c senderEmail=" in refused.value.message


def test_with_a_sender_send_email_is_accepted() -> None:
    spec = parse_job_spec({"type": "send-email", "payload": VALID}, NOW, settings=Settings(email_sender=SENDER))
    assert spec.type == "send-email" and spec.payload["to"] == VALID["to"]


def test_the_default_settings_have_no_sender() -> None:
    # Nothing sends mail from a placeholder address: AWS deployments name their sender, make run configures one
    assert Settings().email_sender == ""


def test_a_job_accepted_before_is_still_parsed_to_run() -> None:
    # Given a deployment that has no sender (any more)
    without_a_sender = Settings(email_sender="")
    # When the consumer parses a stored job under its settings (not at enqueue)
    parsed = get_job_type("send-email").parse_payload(VALID, without_a_sender)
    # Then it is not judged again by the enqueue-only rules: it runs (and SES says what it says)
    assert parsed.subject == "Hello"
