"""The SDK clients: requests validated where tests and the local stack run; on Lambda the services check them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ParamValidationError

from functions.dal import clients
from infra.config import AWS_CONFIG, ServiceConfig, local_config


@pytest.fixture(autouse=True)
def fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("JOBS_SDK_PARAMETER_VALIDATION", raising=False)
    clients.client.cache_clear()
    yield
    clients.client.cache_clear()


class Sent(Exception):
    """Raised where the request would go on the wire."""


def malformed_send_is_refused_client_side() -> bool:
    """Whether the functions' SQS client refuses a request that breaks the service model before sending it (the
    request never leaves the process either way: a before-send hook stops it)."""
    sqs = clients.client("sqs")

    def stop(request: AWSPreparedRequest, **_: object) -> None:
        raise Sent(request.url)

    sqs.meta.events.register("before-send.sqs.SendMessage", stop)
    try:
        sqs.send_message(QueueUrl="https://sqs.us-east-1.amazonaws.com/1/q", MessageBody=5)
    except ParamValidationError:
        return True
    except Sent:
        return False
    raise AssertionError("the request neither failed validation nor reached the wire")


def test_by_default_a_malformed_request_is_refused_before_it_is_sent() -> None:
    # Given a client built without the setting (tests, scripts), Then a request that breaks the model is refused
    assert malformed_send_is_refused_client_side()


@pytest.mark.parametrize(("config", "validated"), [(AWS_CONFIG, False), (local_config(), True)])
def test_the_functions_validate_requests_locally_and_leave_it_to_aws_on_lambda(
    monkeypatch: pytest.MonkeyPatch, config: ServiceConfig, validated: bool
) -> None:
    # Given the functions' environment on Lambda or in the local stack
    env = config.settings().to_env()
    monkeypatch.setenv("JOBS_SDK_PARAMETER_VALIDATION", env["JOBS_SDK_PARAMETER_VALIDATION"])
    # When they send a malformed request, Then it is refused client-side only locally (AWS refuses it on Lambda)
    assert malformed_send_is_refused_client_side() is validated


def test_the_user_agent_is_fixed_rather_than_rebuilt_per_request() -> None:
    assert clients.client("dynamodb").meta.config.user_agent.startswith("serverless-jobs botocore/")
