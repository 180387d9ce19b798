"""The files bucket: tenants' uploads, job outputs, and payloads too large for a job record.

Key layout (the functions' permissions are granted per prefix):
``uploads/<tenant>/`` presigned PUTs from clients; ``processed/``, ``fetched/``, ``crawls/`` written by jobs;
``payloads/<tenant>/`` large job payloads, kept only as long as a job may still be retried.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from functions.settings import Settings

UPLOADS = "uploads/"
PAYLOADS = "payloads/"
# Written by jobs; presigned for download by GET /jobs/{id}/result.
JOB_OUTPUTS = ("processed/", "fetched/", "crawls/")
# Enqueue refuses to schedule an offloaded payload's job further ahead than this allows (logic/payloads.py).
PAYLOAD_RETENTION_DAYS = Settings.payload_retention_days


class FilesBucket(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.RETAIN):
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # Objects are written once per job (a re-run overwrites its own output); no history to keep.
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-offloaded-payloads",
                    prefix=PAYLOADS,
                    expiration=Duration.days(PAYLOAD_RETENTION_DAYS),
                )
            ],
            # Browsers upload straight to S3 with the presigned URL, and download results with one: any origin,
            # since the URL itself is the credential (short-lived, one key, one method).
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.PUT, s3.HttpMethods.GET],
                    allowed_origins=["*"],
                    allowed_headers=["*"],
                    exposed_headers=["ETag"],
                    max_age=3000,
                )
            ],
            # Tenants' files and results are data, like the job records: kept unless deleted on purpose.
            removal_policy=removal_policy,
        )
        NagSuppressions.add_resource_suppressions(
            self.bucket,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="No server access logs (and the stack enables no CloudTrail data events): reads and writes "
                    "of objects, by the functions or by anyone holding a presigned URL until it expires, are not "
                    "recorded. Logs need a second bucket (or paid data events); enable CloudTrail S3 data events for "
                    "this bucket when an audit trail of tenants' files is needed.",
                )
            ],
        )

    def objects(self, prefix: str) -> str:
        """The ARN of every object under ``prefix`` (``uploads/`` -> ``<bucket arn>/uploads/*``)."""
        return self.bucket.arn_for_objects(prefix + "*")
