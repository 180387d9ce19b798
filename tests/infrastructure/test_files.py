"""The files bucket (uploads, job outputs, offloaded payloads); the layers are in test_layers.py."""

from __future__ import annotations

from infra.constructs.sweeper import SWEEPER_HANDLER
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.template_utils import (
    Resources,
    functions_by_handler,
    of_type,
    only,
    permissions_for,
    role_of,
    role_permissions,
)


def test_files_bucket_is_private_encrypted_ssl_only_unversioned_and_retained(resources: Resources) -> None:
    # Given the files bucket
    bucket_id, bucket = only(resources, "AWS::S3::Bucket")
    properties = bucket["Properties"]

    # Then it is S3-managed encrypted, blocks every kind of public access, keeps no versions, and outlives the stack
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "VersioningConfiguration" not in properties
    assert bucket["DeletionPolicy"] == "Retain"
    assert "BucketName" not in properties
    # And its policy refuses plain HTTP for the bucket and every object
    (_, policy) = only(resources, "AWS::S3::BucketPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}


def test_offloaded_payloads_expire_and_nothing_else_does(resources: Resources) -> None:
    # Given the bucket's lifecycle
    _, bucket = only(resources, "AWS::S3::Bucket")
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    # Then only payloads/ expires, after 30 days
    assert [(r["Prefix"], r["ExpirationInDays"], r["Status"]) for r in rules] == [("payloads/", 30, "Enabled")]


def test_browsers_may_put_and_get_with_presigned_urls_from_any_origin(resources: Resources) -> None:
    # Given the bucket's CORS rules
    _, bucket = only(resources, "AWS::S3::Bucket")
    (rule,) = bucket["Properties"]["CorsConfiguration"]["CorsRules"]
    # Then PUT (uploads) and GET (results) are allowed from any origin, with any header (Content-Type is signed)
    assert sorted(rule["AllowedMethods"]) == ["GET", "PUT"]
    assert rule["AllowedOrigins"] == ["*"]
    assert rule["AllowedHeaders"] == ["*"]


def test_functions_get_the_bucket_and_imports_table_names(synthesized: Synthesized) -> None:
    # Given the bucket and the stack's outputs
    bucket_id, _ = only(synthesized.resources, "AWS::S3::Bucket")
    # Then operators can find the bucket, and every function is told its generated name
    assert synthesized.outputs["FilesBucketName"]["Value"] == {"Ref": bucket_id}
    for _, properties in functions_by_handler(synthesized.resources).values():
        assert properties["Environment"]["Variables"]["JOBS_FILES_BUCKET"] == {"Ref": bucket_id}


def test_the_sweeper_touches_no_files_and_no_job_services(resources: Resources) -> None:
    # Given the sweeper's permissions
    _, sweeper = functions_by_handler(resources)[SWEEPER_HANDLER]
    pairs = role_permissions(resources, role_of(sweeper))
    # Then it has nothing of S3, SES, Bedrock or Secrets Manager
    for service in ("s3", "ses", "bedrock", "secretsmanager"):
        assert permissions_for(pairs, service) == set()


def test_the_stack_has_one_bucket_and_seven_tables(resources: Resources) -> None:
    assert len(of_type(resources, "AWS::S3::Bucket")) == 1
    # jobs, stats, imports, limits, keys, dependencies, schedules
    assert len(of_type(resources, "AWS::DynamoDB::Table")) == 7
