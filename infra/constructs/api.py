"""The HTTP API: one producer function behind API Gateway (HTTP API, Lambda proxy, payload format 1.0), and a
Lambda authorizer that maps each tenant key to its tenant, scope and rate limit (cached by key)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from functions.settings import Settings
from infra.config import ServiceConfig
from infra.constructs.files import JOB_OUTPUTS, PAYLOADS, UPLOADS, FilesBucket
from infra.constructs.function import FunctionRuntime, ServiceFunction, log_retention
from infra.constructs.queue_consumer import object_finding, webhook_secrets_arn
from infra.constructs.tables import API_INDEXES, JobsTables

API_HANDLER = "functions.handlers.api.handler"
AUTHORIZER_HANDLER = "functions.handlers.authorizer.handler"
AUTHORIZER_TIMEOUT_SECONDS = 5
# The header a tenant's key travels in: the authorizer's identity source, so API Gateway caches its answer per key.
KEY_HEADER = "x-api-key"
# GET of these needs no API key (local/gateway.py's OPEN_ROUTES is the same list).
OPEN_PATHS = ("/", "/health", "/openapi.json", "/swagger", "/assets/{proxy+}")

# HTTP API access log fields (JSON, one line per request, ~250-280 B filled in); $context.authorizer.* is the
# authorizer's context. Lean, as each line is billed at every request: no request time (each log event carries its
# timestamp), no route key (the keyed routes are all ANY /{proxy+}: method and path say more), no response length.
_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "keyId": "$context.authorizer.keyId",
        "tenant": "$context.authorizer.tenant",
        "method": "$context.httpMethod",
        "path": "$context.path",
        "status": "$context.status",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "error": "$context.error.message",
        "authorizerError": "$context.authorizer.error",
        "integrationError": "$context.integrationErrorMessage",
    },
    separators=(",", ":"),  # no spaces: bytes on every line
)


INGEST_SECRET_PREFIX = Settings.ingest_secret_prefix


class JobsApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ServiceConfig,
        runtime: FunctionRuntime,
        tables: JobsTables,
        queues: Sequence[sqs.IQueue],
        files: FilesBucket,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = ServiceFunction(
            self,
            "Api",
            runtime=runtime,
            handler=API_HANDLER,
            description="The job API (API Gateway HTTP API proxy integration)",
            timeout_seconds=config.api_timeout_seconds,
            memory_mb=config.api_memory_mb,
            environment=environment,
        )
        self._grant(tables, queues, files)
        self.authorizer_function = ServiceFunction(
            self,
            "Authorizer",
            runtime=runtime,
            handler=AUTHORIZER_HANDLER,
            description="The API's Lambda authorizer: tenant, scope and rate limit of an x-api-key",
            timeout_seconds=AUTHORIZER_TIMEOUT_SECONDS,
            memory_mb=config.authorizer_memory_mb,
            environment=environment,
        )
        # One key's item by its hash: nothing else (it cannot list, write or read any other table).
        self.authorizer_function.allow(["dynamodb:GetItem"], [tables.keys.table_arn])

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention(config), removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{Stack.of(self).stack_name}-{config.service_name}",
            description="Background jobs: enqueue, inspect, cancel and retry",
            create_default_stage=False,
        )
        # The default stage ($default: no path prefix), deployed on every change; its throttling protects the account
        # (per-key limits are the service's own, functions/logic/rate_limits.py).
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
        )
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=_ACCESS_LOG_FORMAT
        )

        # Payload format 1.0: the REST-shaped event the handlers and Powertools' REST resolver already read (2.0
        # would change every request's parsing for no gain here); the authorizer's context arrives in
        # requestContext.authorizer.
        integration = integrations.HttpLambdaIntegration(
            "ApiIntegration", self.handler.target, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_1_0
        )
        # Simple responses; cached per key value (the identity source) for authorizer_cache_seconds. A request
        # without the header is answered 401 by API Gateway before the authorizer runs.
        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "KeyAuthorizer",
            self.authorizer_function.target,
            authorizer_name="tenant-key",
            identity_source=[f"$request.header.{KEY_HEADER}"],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(config.authorizer_cache_seconds),
        )
        # Without a key: GET of /health (load balancers, probes), the dashboard (/ and /assets/...: the page asks for
        # a key and sends it with its API calls), the OpenAPI document and Swagger UI. Everything else needs one:
        # any other method of / (ANY matches the methods a path does not declare), and every other path
        # (/{proxy+}; the more specific routes above win over it).
        for path in OPEN_PATHS:
            self.api.add_routes(path=path, methods=[apigwv2.HttpMethod.GET], integration=integration)
        for path in ("/", "/{proxy+}"):
            self.api.add_routes(
                path=path, methods=[apigwv2.HttpMethod.ANY], integration=integration, authorizer=self.authorizer
            )

        self._suppress_findings()

    def _grant(self, tables: JobsTables, queues: Sequence[sqs.IQueue], files: FilesBucket) -> None:
        fn = self.handler
        # Job records by key: conditional puts and updates (no transaction checks another item). Listings query
        # the indexes below, never the table.
        fn.allow(
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchGetItem",  # GET /batches/{id} reads its children, GET /jobs its page of records
            ],
            [tables.jobs.table_arn],
        )
        fn.allow(["dynamodb:Query"], [tables.jobs_index_arn(name) for name in API_INDEXES])
        # Counters: read all shards of a tenant at once (the stats aggregator writes them); a settled minute's
        # throughput shards are summed into one summary item with BatchWriteItem (its own IAM action).
        fn.allow(["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [tables.stats.table_arn])
        # Paused job types (functions/dal/pauses.py), one item per tenant and type in the limits table: pause
        # (UpdateItem), resume (DeleteItem), GET /types reads a tenant's flags at once (BatchGetItem).
        fn.allow(
            ["dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            [tables.limits.table_arn],
        )
        # dependsOn (functions/dal/dependencies.py): the dependencies' records are read at once (BatchGetItem on the
        # jobs table, above); in the dependencies table their markers are read (BatchGetItem), the edges written
        # (BatchWriteItem: puts only) and a marker lacking the new edge's shard gets it (UpdateItem ADD).
        fn.allow(
            ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"], [tables.dependencies.table_arn]
        )
        # A new job goes to its lane: normal, high priority or ordered (a group).
        fn.allow(["sqs:SendMessage"], [queue.queue_arn for queue in queues])
        # A presigned URL acts with its signer's permissions: PUT for POST /uploads, GET for results (job outputs and
        # the caller's uploads). Offloaded payloads are written at enqueue and read back for GET /jobs/{id}.
        fn.allow(["s3:PutObject"], [files.objects(UPLOADS), files.objects(PAYLOADS)])
        fn.allow(["s3:GetObject"], [files.objects(prefix) for prefix in (*JOB_OUTPUTS, UPLOADS, PAYLOADS)])
        # POST /hooks/{type} verifies a tenant's ingest signature when the tenant configured a secret (read only:
        # operators create them, `jobs hooks secret set`).
        fn.allow(["secretsmanager:GetSecretValue"], [webhook_secrets_arn(INGEST_SECRET_PREFIX)])

    def _suppress_findings(self) -> None:
        NagSuppressions.add_resource_suppressions(
            self.handler.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Each tenant's ingest verification secret is its own secret under one prefix, created by "
                    "operators after deployment; the function may only read them.",
                    applies_to=[
                        "Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
                        f"{INGEST_SECRET_PREFIX}*"
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Uploads, job outputs and offloaded payloads are objects under fixed prefixes of the files "
                    "bucket, one key per upload or job, unknown in advance; the function signs URLs for them.",
                    applies_to=[object_finding(prefix) for prefix in (UPLOADS, PAYLOADS, *JOB_OUTPUTS)],
                ),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.api,
            [
                NagPackSuppression(
                    id="AwsSolutions-APIG4",
                    reason="The open routes (GET of /health, the dashboard's page and files, /openapi.json, /swagger) "
                    "have no authorizer on purpose: probes and the dashboard's page need no key, and they read no "
                    "tenant's data. Every other route has the Lambda authorizer.",
                ),
            ],
            apply_to_children=True,
        )
