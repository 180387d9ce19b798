"""The REST API: routes and API keys, the usage plan, gateway responses, logging, and the API's permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import AWS_CONFIG
from infra.constructs.api import API_HANDLER
from local.gateway import OPEN_ROUTES
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.template_utils import (
    Resources,
    arn,
    functions_by_handler,
    jobs_and_stats_tables,
    main_queue_and_dlq,
    named_by_setting,
    object_arns,
    of_type,
    only,
    permissions_for,
    role_of,
    role_permissions,
    send_to_every_lane,
)


def _routes(resources: Resources) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, full path) -> method properties."""
    rest_api_id, _ = only(resources, "AWS::ApiGateway::RestApi")
    root = {"Fn::GetAtt": [rest_api_id, "RootResourceId"]}
    parts = {
        logical_id: (r["Properties"]["ParentId"], r["Properties"]["PathPart"])
        for logical_id, r in of_type(resources, "AWS::ApiGateway::Resource").items()
    }

    def path_of(resource: Any) -> str:
        if resource == root:
            return ""
        parent, part = parts[resource["Ref"]]
        return f"{path_of(parent)}/{part}"

    routes = {}
    for method in of_type(resources, "AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        routes[(properties["HttpMethod"], path_of(properties["ResourceId"]) or "/")] = properties
    return routes


def test_only_health_the_dashboard_and_the_docs_are_open_and_every_other_route_needs_an_api_key(
    resources: Resources,
) -> None:
    # Given the API's methods
    routes = _routes(resources)

    # When the key requirement of each route is read
    key_required = {route: properties["ApiKeyRequired"] for route, properties in routes.items()}

    # Then GET of /health, the dashboard (/ and its files), the OpenAPI document and Swagger UI need no key,
    # any other method of / and every other path (the catch-all) need one
    assert key_required == {
        ("GET", "/health"): False,
        ("GET", "/"): False,
        ("GET", "/openapi.json"): False,
        ("GET", "/swagger"): False,
        ("GET", "/assets/{proxy+}"): False,
        ("ANY", "/"): True,
        ("ANY", "/{proxy+}"): True,
    }


def test_the_open_routes_are_the_local_gateways(resources: Resources) -> None:
    # Given the open routes of the template and of the local gateway (a prefix there is a {proxy+} here)
    open_routes = {route for route, properties in _routes(resources).items() if not properties["ApiKeyRequired"]}
    local = {
        (method, path + "{proxy+}" if path.endswith("/") and path != "/" else path) for method, path in OPEN_ROUTES
    }

    # Then they are the same, so make run opens exactly what AWS opens
    assert open_routes == local


def test_every_route_is_a_lambda_proxy_to_the_api_function(resources: Resources) -> None:
    # Given the API function and the methods
    api_id, _ = functions_by_handler(resources)[API_HANDLER]
    for properties in _routes(resources).values():
        integration = properties["Integration"]
        # Then each method proxies to the API function
        assert integration["Type"] == "AWS_PROXY"
        assert {"Fn::GetAtt": [api_id, "Arn"]} in integration["Uri"]["Fn::Join"][1]


@pytest.mark.parametrize(
    ("response_type", "status", "code"),
    [
        ("DEFAULT_4XX", None, "BAD_REQUEST"),
        ("DEFAULT_5XX", None, "UNAVAILABLE"),
        ("INVALID_API_KEY", "403", "FORBIDDEN"),
        ("ACCESS_DENIED", "403", "FORBIDDEN"),
        ("MISSING_AUTHENTICATION_TOKEN", "403", "FORBIDDEN"),
        ("THROTTLED", "429", "THROTTLED"),
        ("QUOTA_EXCEEDED", "429", "THROTTLED"),
        ("REQUEST_TOO_LARGE", "413", "PAYLOAD_TOO_LARGE"),
    ],
)
def test_gateway_errors_use_the_api_error_shape(
    resources: Resources, response_type: str, status: str | None, code: str
) -> None:
    # Given the gateway responses of the API
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in of_type(resources, "AWS::ApiGateway::GatewayResponse").values()
    }

    # When the response of this type is rendered with a message (as API Gateway substitutes a quoted string)
    response = responses[response_type]
    body = response["ResponseTemplates"]["application/json"].replace(
        "$context.error.messageString", json.dumps("Forbidden")
    )

    # Then it is JSON of our shape, with our code, the expected status and a JSON content type
    assert json.loads(body) == {"error": "Forbidden", "code": code}
    assert response.get("StatusCode") == status
    assert response["ResponseParameters"] == {"gatewayresponse.header.Content-Type": "'application/json'"}


def test_usage_plan_throttles_the_stage_and_holds_the_tenant_tagged_key(resources: Resources) -> None:
    # Given the usage plan, its key and the deployment stage
    rest_api_id, _ = only(resources, "AWS::ApiGateway::RestApi")
    stage_id, _ = only(resources, "AWS::ApiGateway::Stage")
    plan_id, plan = only(resources, "AWS::ApiGateway::UsagePlan")
    key_id, key = only(resources, "AWS::ApiGateway::ApiKey")
    _, plan_key = only(resources, "AWS::ApiGateway::UsagePlanKey")

    # Then the plan throttles at the configured rate on this API's stage
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": AWS_CONFIG.api_rate_limit,
        "BurstLimit": AWS_CONFIG.api_burst_limit,
    }
    ((api_stage),) = plan["Properties"]["ApiStages"]
    assert api_stage["ApiId"] == {"Ref": rest_api_id}
    assert api_stage["Stage"] == {"Ref": stage_id}
    # And the bootstrap key belongs to the plan and names its tenant in a tag
    assert plan_key["Properties"] == {"KeyId": {"Ref": key_id}, "KeyType": "API_KEY", "UsagePlanId": {"Ref": plan_id}}
    assert {"Key": "tenant", "Value": AWS_CONFIG.bootstrap_tenant} in key["Properties"]["Tags"]
    assert key["Properties"]["Enabled"] is True


def test_stage_has_access_logs_error_logs_and_tracing(resources: Resources) -> None:
    # Given the stage
    _, stage = only(resources, "AWS::ApiGateway::Stage")
    properties = stage["Properties"]

    # Then access logs go to a log group of the stack, as JSON that names the caller's key
    log_group_id = properties["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    assert json.loads(properties["AccessLogSetting"]["Format"])["apiKeyId"] == "$context.identity.apiKeyId"
    # And execution errors are logged without request bodies, and requests are traced
    assert properties["MethodSettings"] == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "MetricsEnabled": True,
            "ResourcePath": "/*",
        }
    ]
    assert properties["TracingEnabled"] is AWS_CONFIG.tracing_enabled
    assert properties["StageName"] == AWS_CONFIG.api_stage_name


def test_api_function_permissions_are_the_ones_it_uses(resources: Resources) -> None:
    # Given the API function's role and the resources it works on
    (jobs_id, _), (stats_id, _) = jobs_and_stats_tables(resources)
    _, api = functions_by_handler(resources)[API_HANDLER]
    jobs, stats = arn(jobs_id), arn(stats_id)
    limits = arn(named_by_setting(resources, "JOBS_LIMITS_TABLE")[0])
    schedules = arn(named_by_setting(resources, "JOBS_SCHEDULES_TABLE")[0])

    # When its permissions are listed
    pairs = role_permissions(resources, role_of(api))

    # Then it may read and write jobs, query the tenant-facing indexes (not by-sweep), read/update counters, and
    # pause, resume and read job types' pause flags
    assert permissions_for(pairs, "dynamodb") == {
        ("dynamodb:GetItem", jobs),
        ("dynamodb:PutItem", jobs),
        ("dynamodb:UpdateItem", jobs),
        ("dynamodb:BatchGetItem", jobs),
        ("dynamodb:Query", jobs + "/index/by-tenant"),
        ("dynamodb:Query", jobs + "/index/by-status"),
        ("dynamodb:Query", jobs + "/index/by-type"),
        ("dynamodb:BatchGetItem", stats),
        ("dynamodb:BatchWriteItem", stats),
        ("dynamodb:BatchGetItem", limits),
        ("dynamodb:UpdateItem", limits),
        ("dynamodb:DeleteItem", limits),
        # and manage recurring schedules in their table (not its due-time index, which is the sweeper's)
        ("dynamodb:GetItem", schedules),
        ("dynamodb:PutItem", schedules),
        ("dynamodb:DeleteItem", schedules),
        ("dynamodb:Query", schedules),
    }
    # And send to each lane's queue (not to a DLQ), and read API keys (for their tenant tag)
    assert permissions_for(pairs, "sqs") == send_to_every_lane(resources)
    assert permissions_for(pairs, "apigateway") == {
        ("apigateway:GET", "arn:${AWS::Partition}:apigateway:${AWS::Region}::/apikeys/*")
    }
    # And sign uploads (PUT under uploads/), write offloaded payloads, and read what it presigns or loads back
    (bucket_id, _) = only(resources, "AWS::S3::Bucket")
    assert permissions_for(pairs, "s3") == {
        *(("s3:PutObject", resource) for resource in object_arns(bucket_id, "uploads/", "payloads/")),
        *(
            ("s3:GetObject", resource)
            for resource in object_arns(bucket_id, "processed/", "fetched/", "crawls/", "uploads/", "payloads/")
        ),
    }
    # And read (never create) the tenants' ingest secrets, for POST /hooks/{type}
    assert permissions_for(pairs, "secretsmanager") == {
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:jobs/ingest-signing/*",
        )
    }
    # And nothing the jobs use
    for service in ("ses", "bedrock"):
        assert permissions_for(pairs, service) == set()


def test_outputs_name_what_clients_and_operators_need(synthesized: Synthesized) -> None:
    # Given the stack outputs
    outputs = synthesized.outputs
    (queue_id, _), (dlq_id, _) = main_queue_and_dlq(synthesized.resources)
    (jobs_id, _), _ = jobs_and_stats_tables(synthesized.resources)
    key_id, _ = only(synthesized.resources, "AWS::ApiGateway::ApiKey")

    # Then the URL, the key id, the queues and the jobs table are there
    assert {"ApiUrl", "ApiKeyId", "QueueUrl", "DlqUrl", "JobsTableName"} <= set(outputs)
    assert outputs["ApiKeyId"]["Value"] == {"Ref": key_id}
    assert outputs["QueueUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["DlqUrl"]["Value"] == {"Ref": dlq_id}
    assert outputs["JobsTableName"]["Value"] == {"Ref": jobs_id}
