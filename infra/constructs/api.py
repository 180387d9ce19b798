"""The REST API: one producer function behind API Gateway, API keys per tenant, a usage plan, our error shape."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy, Stack, Tags
from aws_cdk import aws_apigateway as apigateway
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
# The function maps the caller's API key id to a tenant by reading this tag of the key.
TENANT_TAG = "tenant"
# GET of these needs no API key (local/gateway.py's OPEN_ROUTES is the same list).
OPEN_PATHS = ("/", "/health", "/openapi.json", "/swagger", "/assets/{proxy+}")

# API Gateway's own errors (bad key, throttling, ...) in the body shape the function uses: {"error", "code"}.
# (response type, status code or None to keep API Gateway's, our code)
GATEWAY_RESPONSES: tuple[tuple[apigateway.ResponseType, str | None, str], ...] = (
    (apigateway.ResponseType.DEFAULT_4_XX, None, "BAD_REQUEST"),
    (apigateway.ResponseType.DEFAULT_5_XX, None, "UNAVAILABLE"),
    # A missing or unknown x-api-key surfaces as any of these three, depending on the route.
    (apigateway.ResponseType.INVALID_API_KEY, "403", "FORBIDDEN"),
    (apigateway.ResponseType.ACCESS_DENIED, "403", "FORBIDDEN"),
    (apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, "403", "FORBIDDEN"),
    (apigateway.ResponseType.THROTTLED, "429", "THROTTLED"),
    (apigateway.ResponseType.QUOTA_EXCEEDED, "429", "THROTTLED"),
    (apigateway.ResponseType.REQUEST_TOO_LARGE, "413", "PAYLOAD_TOO_LARGE"),
    (apigateway.ResponseType.RESOURCE_NOT_FOUND, "404", "NOT_FOUND"),
    (apigateway.ResponseType.UNSUPPORTED_MEDIA_TYPE, "415", "UNSUPPORTED_MEDIA_TYPE"),
)

_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": apigateway.AccessLogField.context_request_id(),
        "time": apigateway.AccessLogField.context_request_time(),
        "ip": apigateway.AccessLogField.context_identity_source_ip(),
        "apiKeyId": apigateway.AccessLogField.context_identity_api_key_id(),
        "method": apigateway.AccessLogField.context_http_method(),
        "resource": apigateway.AccessLogField.context_resource_path(),
        "status": apigateway.AccessLogField.context_status(),
        "latencyMs": apigateway.AccessLogField.context_response_latency(),
        "integrationLatencyMs": apigateway.AccessLogField.context_integration_latency(),
        "responseLength": apigateway.AccessLogField.context_response_length(),
        "errorType": apigateway.AccessLogField.context_error_response_type(),
        "xrayTraceId": apigateway.AccessLogField.context_xray_trace_id(),
    }
)


def error_template(code: str) -> str:
    # $context.error.messageString is already a quoted JSON string; gateway responses do no VTL processing.
    return '{"error": $context.error.messageString, "code": "' + code + '"}'


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
            description="The job API (API Gateway proxy integration)",
            timeout_seconds=config.api_timeout_seconds,
            memory_mb=config.api_memory_mb,
            environment=environment,
        )
        self._grant(tables, queues, files)

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention(config), removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{Stack.of(self).stack_name}-{config.service_name}",
            description="Background jobs: enqueue, inspect, cancel and retry",
            # Callers are services in a region, not browsers around the world: no CloudFront in front.
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            api_key_source_type=apigateway.ApiKeySourceType.HEADER,
            # Stage logging needs the account-wide API Gateway CloudWatch role; retained, since other APIs in the
            # account may rely on that setting once it exists.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=config.api_stage_name,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(_ACCESS_LOG_FORMAT),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies are tenants' data; keep them out of the logs
                metrics_enabled=True,
                tracing_enabled=config.tracing_enabled,
            ),
        )

        integration = apigateway.LambdaIntegration(self.handler.target, proxy=True, allow_test_invoke=False)
        root = self.api.root
        # Without a key: GET of /health (load balancers, probes), the dashboard (/ and /assets/...: the page asks for
        # a key and sends it with its API calls), the OpenAPI document and Swagger UI. Everything else needs one
        # (the usage plan's): any other method of / (a method beats ANY on the same resource), and every other path
        # (/{proxy+}; the more specific resources above win over it).
        for path in OPEN_PATHS:
            resource = root.resource_for_path(path)
            resource.add_method("GET", integration, api_key_required=False)
        root.add_method("ANY", integration, api_key_required=True)
        root.add_resource("{proxy+}").add_method("ANY", integration, api_key_required=True)

        for response_type, status_code, code in GATEWAY_RESPONSES:
            self.api.add_gateway_response(
                f"GatewayResponse{response_type.response_type}",
                type=response_type,
                status_code=status_code,
                response_headers={"Content-Type": "'application/json'"},
                templates={"application/json": error_template(code)},
            )

        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            description="Per-key throttling of the job API",
            throttle=apigateway.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            api_stages=[apigateway.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        # The first tenant's key; more tenants are more keys with their own tag, added to this plan.
        self.api_key = apigateway.ApiKey(self, "BootstrapKey", description=f"Tenant {config.bootstrap_tenant}")
        Tags.of(self.api_key).add(TENANT_TAG, config.bootstrap_tenant)
        self.usage_plan.add_api_key(self.api_key)

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
        # GetApiKey (without its value) to read the caller's tenant tag.
        fn.allow(["apigateway:GET"], [self.api_keys_arn()])
        # A presigned URL acts with its signer's permissions: PUT for POST /uploads, GET for results (job outputs and
        # the caller's uploads). Offloaded payloads are written at enqueue and read back for GET /jobs/{id}.
        fn.allow(["s3:PutObject"], [files.objects(UPLOADS), files.objects(PAYLOADS)])
        fn.allow(["s3:GetObject"], [files.objects(prefix) for prefix in (*JOB_OUTPUTS, UPLOADS, PAYLOADS)])
        # POST /hooks/{type} verifies a tenant's ingest signature when the tenant configured a secret (read only:
        # operators create them, `jobs hooks secret set`).
        fn.allow(["secretsmanager:GetSecretValue"], [webhook_secrets_arn(INGEST_SECRET_PREFIX)])

    @staticmethod
    def api_keys_arn() -> str:
        return f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::/apikeys/*"

    def _suppress_findings(self) -> None:
        NagSuppressions.add_resource_suppressions(
            self.handler.role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="apigateway:GET on /apikeys/* lets this role read every API key of the account in this "
                    "region, other APIs' keys and their values included (GetApiKey with includeValue=true): IAM has no "
                    "condition on includeValue, and tenants' keys are created after deployment, so their ids cannot be "
                    "listed here. Listing keys (/apikeys itself) is not granted. Accepted: the function must read the "
                    "tenant tag of whichever key API Gateway accepted (docs/deploy.md, 'What the roles allow').",
                    applies_to=["Resource::arn:<AWS::Partition>:apigateway:<AWS::Region>::/apikeys/*"],
                ),
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
                    id="AwsSolutions-IAM4",
                    reason="The account-level API Gateway logging role uses the AWS-managed "
                    "AmazonAPIGatewayPushToCloudWatchLogs policy, which AWS documents for exactly this role.",
                    applies_to=[
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-APIG2",
                    reason="No request validator: API Gateway passes every request, whatever its body or query, to "
                    "the function, which is invoked (and billed) for malformed ones too and answers them 4xx itself.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-APIG3",
                    reason="No AWS WAF web ACL: nothing filters requests before API Gateway's own checks. Requests "
                    "with a key of the usage plan are throttled per key; the key-less GETs (/health, the dashboard, "
                    "/openapi.json, /swagger) and requests with unknown keys are limited only by the stage's and the "
                    "account's default throttling. A web ACL costs a monthly fee plus a per-request charge; add one "
                    "(a rate-based rule) for an internet-facing deployment.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-APIG4",
                    reason="No API Gateway authorizer: API Gateway only checks that a request carries a key of the "
                    "usage plan (a key identifies a tenant, it does not authenticate anyone: whoever holds it acts as "
                    "that tenant), and the function maps the key to its tenant. GET of /health, the dashboard's page "
                    "and files, /openapi.json and /swagger are not checked at all and invoke the function for anyone.",
                ),
                NagPackSuppression(
                    id="AwsSolutions-COG4",
                    reason="Callers are services with per-tenant API keys, not Cognito users.",
                ),
            ],
            apply_to_children=True,
        )
