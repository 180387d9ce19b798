"""The HTTP API: routes, the key authorizer and its table, the stage (throttling, logs), and the API's permissions."""

from __future__ import annotations

import json
from typing import Any

from infra.config import AWS_CONFIG
from infra.constructs.api import API_HANDLER, AUTHORIZER_HANDLER
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


def _keys_table(resources: Resources) -> str:
    """The keys table's logical id: what every function's JOBS_KEYS_TABLE names."""
    return named_by_setting(resources, "JOBS_KEYS_TABLE")[0]


def _routes(resources: Resources) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, path) -> route properties."""
    routes = {}
    for route in of_type(resources, "AWS::ApiGatewayV2::Route").values():
        method, path = route["Properties"]["RouteKey"].split(" ", 1)
        routes[(method, path)] = route["Properties"]
    return routes


def test_only_health_the_dashboard_and_the_docs_are_open_and_every_other_route_has_the_key_authorizer(
    resources: Resources,
) -> None:
    # Given the API's routes and its one authorizer
    routes = _routes(resources)
    authorizer_id, _ = only(resources, "AWS::ApiGatewayV2::Authorizer")

    # When the authorizer of each route is read
    authorized = {route: properties.get("AuthorizerId") for route, properties in routes.items()}

    # Then GET of /health, the dashboard (/ and its files), the OpenAPI document and Swagger UI have none,
    # any other method of / and every other path (the catch-all) have the key authorizer
    assert authorized == {
        ("GET", "/health"): None,
        ("GET", "/"): None,
        ("GET", "/openapi.json"): None,
        ("GET", "/swagger"): None,
        ("GET", "/assets/{proxy+}"): None,
        ("ANY", "/"): {"Ref": authorizer_id},
        ("ANY", "/{proxy+}"): {"Ref": authorizer_id},
    }
    assert {p["AuthorizationType"] for p in routes.values() if "AuthorizerId" in p} == {"CUSTOM"}


def test_the_authorizer_is_a_cached_simple_lambda_authorizer_on_the_key_header(resources: Resources) -> None:
    # Given the authorizer and its function
    _, authorizer = only(resources, "AWS::ApiGatewayV2::Authorizer")
    function_id, function = functions_by_handler(resources)[AUTHORIZER_HANDLER]
    properties = authorizer["Properties"]

    # Then it is a REQUEST authorizer with simple responses, cached per x-api-key value for the configured TTL
    assert properties["AuthorizerType"] == "REQUEST"
    assert properties["EnableSimpleResponses"] is True
    assert properties["IdentitySource"] == ["$request.header.x-api-key"]
    assert properties["AuthorizerResultTtlInSeconds"] == AWS_CONFIG.authorizer_cache_seconds == 300
    assert {"Fn::GetAtt": [function_id, "Arn"]} in properties["AuthorizerUri"]["Fn::Join"][1]
    # And its function may read one key item of the keys table, and nothing else
    keys_table = arn(_keys_table(resources))
    pairs = role_permissions(resources, role_of(function))
    assert {pair for pair in pairs if not pair[0].startswith("logs:")} == {("dynamodb:GetItem", keys_table)}


def test_the_keys_table_is_kept_with_the_stack_deleted_and_recoverable(resources: Resources) -> None:
    table = resources[_keys_table(resources)]
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_the_open_routes_are_the_local_gateways(resources: Resources) -> None:
    # Given the open routes of the template and of the local gateway (a prefix there is a {proxy+} here)
    open_routes = {route for route, properties in _routes(resources).items() if "AuthorizerId" not in properties}
    local = {
        (method, path + "{proxy+}" if path.endswith("/") and path != "/" else path) for method, path in OPEN_ROUTES
    }

    # Then they are the same, so make run opens exactly what AWS opens
    assert open_routes == local


def test_every_route_is_a_lambda_proxy_to_the_api_function_with_payload_1(resources: Resources) -> None:
    # Given the API function and the one integration
    api_id, _ = functions_by_handler(resources)[API_HANDLER]
    integration_id, integration = only(resources, "AWS::ApiGatewayV2::Integration")

    # Then it proxies to the API function with the REST-shaped event, and every route uses it
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert integration["Properties"]["IntegrationUri"] == {"Fn::GetAtt": [api_id, "Arn"]}
    assert integration["Properties"]["PayloadFormatVersion"] == "1.0"
    for properties in _routes(resources).values():
        assert properties["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}


def test_no_rest_api_usage_plan_or_api_gateway_key_is_left(resources: Resources) -> None:
    for kind in ("RestApi", "UsagePlan", "UsagePlanKey", "ApiKey", "Stage", "Account"):
        assert of_type(resources, f"AWS::ApiGateway::{kind}") == {}


def test_the_default_stage_throttles_the_account_and_logs_json(resources: Resources) -> None:
    # Given the stage
    _, stage = only(resources, "AWS::ApiGatewayV2::Stage")
    properties = stage["Properties"]

    # Then it is the auto-deployed default stage (no path prefix), throttled as account protection
    assert (properties["StageName"], properties["AutoDeploy"]) == ("$default", True)
    assert properties["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": AWS_CONFIG.api_burst_limit,
        "ThrottlingRateLimit": AWS_CONFIG.api_rate_limit,
    }
    # And access logs go to a log group of the stack, as JSON that names the caller's key id and tenant
    log_group_id = properties["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(properties["AccessLogSettings"]["Format"])
    assert (fields["keyId"], fields["tenant"]) == ("$context.authorizer.keyId", "$context.authorizer.tenant")
    assert fields["requestId"] == "$context.requestId"
    # and only what a person reads there, without spaces (each line is billed, at every request)
    assert set(fields) == {
        "requestId",
        "ip",
        "keyId",
        "tenant",
        "method",
        "path",
        "status",
        "latencyMs",
        "integrationLatencyMs",
        "error",
        "authorizerError",
        "integrationError",
    }
    assert ", " not in properties["AccessLogSettings"]["Format"]


def test_api_function_permissions_are_the_ones_it_uses(resources: Resources) -> None:
    # Given the API function's role and the resources it works on
    (jobs_id, _), (stats_id, _) = jobs_and_stats_tables(resources)
    _, api = functions_by_handler(resources)[API_HANDLER]
    jobs, stats = arn(jobs_id), arn(stats_id)
    limits = arn(named_by_setting(resources, "JOBS_LIMITS_TABLE")[0])
    dependencies = arn(named_by_setting(resources, "JOBS_DEPENDENCIES_TABLE")[0])
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
        ("dynamodb:BatchGetItem", stats),
        ("dynamodb:BatchWriteItem", stats),
        ("dynamodb:BatchGetItem", limits),
        ("dynamodb:UpdateItem", limits),
        ("dynamodb:DeleteItem", limits),
        # dependsOn: markers read, edges written, a shard added to a marker
        ("dynamodb:BatchGetItem", dependencies),
        ("dynamodb:BatchWriteItem", dependencies),
        ("dynamodb:UpdateItem", dependencies),
        # and manage recurring schedules in their table (not its due-time index, which is the sweeper's)
        ("dynamodb:GetItem", schedules),
        ("dynamodb:PutItem", schedules),
        ("dynamodb:DeleteItem", schedules),
        ("dynamodb:Query", schedules),
    }
    # And send to each lane's queue (not to a DLQ); no API Gateway call (the authorizer gives the tenant), and
    # no access to the keys table
    assert permissions_for(pairs, "sqs") == send_to_every_lane(resources)
    assert permissions_for(pairs, "apigateway") == set()
    keys_table = arn(_keys_table(resources))
    assert all(resource != keys_table for _, resource in pairs)
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
    api_id, _ = only(synthesized.resources, "AWS::ApiGatewayV2::Api")
    keys_id = _keys_table(synthesized.resources)

    # Then the URL, the keys table, the queues and the jobs table are there
    assert {"ApiUrl", "KeysTableName", "QueueUrl", "DlqUrl", "JobsTableName"} <= set(outputs)
    assert outputs["ApiUrl"]["Value"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
    assert outputs["KeysTableName"]["Value"] == {"Ref": keys_id}
    assert outputs["QueueUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["DlqUrl"]["Value"] == {"Ref": dlq_id}
    assert outputs["JobsTableName"]["Value"] == {"Ref": jobs_id}
