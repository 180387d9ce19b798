"""Settings from/to the environment, and the shared config module's local and AWS flavours."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from functions.settings import Settings
from infra.config import AWS_CONFIG, LOCAL_EMAIL_SENDER, ServiceConfig, local_config


def test_settings_round_trip_through_the_environment() -> None:
    # Given settings that differ from every default
    custom = Settings(
        jobs_table="t1",
        stats_table="t2",
        queue_url="https://sqs/q",
        dlq_url="https://sqs/dlq",
        stats_shards=3,
        sweep_shards=7,
        listing_shards=5,
        throughput_shards=6,
        backoff_base_seconds=0.5,
        backoff_cap_seconds=12.5,
        pending_grace_seconds=9,
        in_flight_grace_seconds=11,
        orphan_give_up_seconds=13,
        release_ahead_seconds=30,
        default_lease_seconds=15,
        record_concurrency=3,
        files_bucket="files",
        imports_table="imports",
        email_sender="ops@example.org",
        s3_public_endpoint="http://127.0.0.1:4566",
        ai_provider="local",
        **{
            "outbound_allowlist": "127.0.0.0/8",
            "http_timeout_seconds": 3.0,
            "fetch_max_bytes": 1,
            "crawl_delay_seconds": 0.0,
            "crawl_max_page_bytes": 2,
            "webhook_secret_prefix": "p/",
            "high_queue_url": "https://sqs/high",
            "high_dlq_url": "https://sqs/high-dlq",
            "ordered_queue_url": "https://sqs/ordered.fifo",
            "ordered_dlq_url": "https://sqs/ordered-dlq.fifo",
            "high_priority_threshold": 9,
            "type_limits": '{"fetch": {"ratePerSecond": 2}}',
            "limits_table": "limits",
            "progress_interval_seconds": 0.25,
            "callback_max_attempts": 2,
            "idempotency_ttl_seconds": 60,
            "ingest_secret_prefix": "i/",
            "job_retention_days": 7,
            "upload_max_bytes": 3,
            "presign_expiry_seconds": 60,
            "payload_inline_max_bytes": 4,
            "payload_retention_days": 3,
            "payload_max_bytes": 5,
            "image_max_pixels": 6,
            "bedrock_embedding_model": "m1",
            "bedrock_text_model": "m2",
            "bedrock_models": "m1,m2",
            "sdk_parameter_validation": False,
        },
    )
    assert all(getattr(custom, f.name) != f.default for f in dataclasses.fields(Settings))
    # When they are written to the environment and read back
    env = custom.to_env()
    # Then they are equal, with every value a string under the JOBS_ prefix
    assert Settings.from_env(env) == custom
    assert all(name.startswith("JOBS_") and isinstance(value, str) for name, value in env.items())
    assert env["JOBS_SWEEP_SHARDS"] == "7"


def test_from_env_converts_each_value_to_its_field_type() -> None:
    settings = Settings.from_env({"JOBS_STATS_SHARDS": "16", "JOBS_BACKOFF_BASE_SECONDS": "3", "JOBS_QUEUE_URL": "u"})
    assert settings.stats_shards == 16 and isinstance(settings.stats_shards, int)
    assert settings.backoff_base_seconds == 3.0 and isinstance(settings.backoff_base_seconds, float)
    assert settings.queue_url == "u"


def test_from_env_uses_defaults_for_missing_variables_and_ignores_others() -> None:
    assert Settings.from_env({"UNRELATED": "x", "JOBS_NOT_A_FIELD": "1"}) == Settings()


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_JOBS_TABLE", "from-os")
    assert Settings.from_env().jobs_table == "from-os"


def test_from_env_rejects_a_non_numeric_number() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"JOBS_STATS_SHARDS": "many"})


@pytest.fixture
def clean_local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CONSUMER_TIMEOUT",
        "CONSUMERS",
        "SWEEP_SECONDS",
        "BACKOFF_BASE",
        "BACKOFF_CAP",
        "PENDING_GRACE",
        "AWS_SHARDS",
    ):
        monkeypatch.delenv(f"JOBS_LOCAL_{name}", raising=False)


@pytest.mark.usefixtures("clean_local_env")
def test_the_local_config_has_short_backoffs_and_quick_sweeps() -> None:
    config = local_config()
    assert (config.backoff_base_seconds, config.backoff_cap_seconds) == (1.0, 4.0)
    assert config.sweeper_interval_seconds == 2
    assert config.pending_grace_seconds == 30
    assert config.consumer.timeout_seconds == AWS_CONFIG.consumer.timeout_seconds  # honest leases locally
    # And the resources are the same as on AWS
    assert (config.jobs_table, config.stats_table, config.queue.name) == (
        AWS_CONFIG.jobs_table,
        AWS_CONFIG.stats_table,
        AWS_CONFIG.queue.name,
    )


SHARD_FIELDS = ("stats_shards", "throughput_shards", "sweep_shards", "listing_shards")


@pytest.mark.usefixtures("clean_local_env")
def test_the_local_config_has_a_few_shards_of_each_kind_and_the_aws_counts_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the local config as make run builds it: more than one shard each (the merges run), fewer than on AWS
    local = {name: getattr(local_config(), name) for name in SHARD_FIELDS}
    assert all(1 < local[name] < getattr(AWS_CONFIG, name) for name in SHARD_FIELDS)
    # When the AWS counts are asked for (the hot-key bench does)
    monkeypatch.setenv("JOBS_LOCAL_AWS_SHARDS", "1")
    # Then they are AWS's, and every shard count reaches the functions' settings
    config = local_config()
    settings = config.settings()
    assert all(getattr(config, name) == getattr(AWS_CONFIG, name) == getattr(settings, name) for name in SHARD_FIELDS)


@pytest.mark.usefixtures("clean_local_env")
def test_local_config_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_LOCAL_BACKOFF_CAP", "9")
    monkeypatch.setenv("JOBS_LOCAL_CONSUMERS", "2")
    config = local_config()
    assert config.backoff_cap_seconds == 9.0
    assert config.consumer.max_concurrency == 2


@pytest.mark.usefixtures("clean_local_env")
def test_config_settings_carry_the_queue_urls_and_tunables() -> None:
    config = local_config()
    settings = config.settings(queue_url="http://q", dlq_url="http://dlq")
    assert (settings.queue_url, settings.dlq_url) == ("http://q", "http://dlq")
    assert (settings.backoff_base_seconds, settings.backoff_cap_seconds) == (1.0, 4.0)
    assert settings.pending_grace_seconds == 30
    assert settings.release_ahead_seconds == config.release_ahead_seconds == 4
    assert settings.default_lease_seconds == config.consumer.timeout_seconds
    # And they survive the trip through the functions' environment
    assert Settings.from_env(settings.to_env()) == settings


def test_aws_config_keeps_the_sqs_limits() -> None:
    assert AWS_CONFIG.queue_visibility_timeout_seconds >= 6 * AWS_CONFIG.consumer.timeout_seconds
    assert AWS_CONFIG.release_ahead_seconds <= 900
    assert AWS_CONFIG.queue.max_receive_count > 25


def test_each_runtime_tunable_is_declared_once_and_reads_through_the_config() -> None:
    # Given the config's own fields and the functions' settings
    config_fields = {field.name for field in dataclasses.fields(ServiceConfig)}
    settings_fields = {field.name for field in dataclasses.fields(Settings)}
    # Then no tunable is declared in both, and each setting reads as the config's own
    assert not config_fields & settings_fields
    tuned = dataclasses.replace(AWS_CONFIG, runtime=dataclasses.replace(AWS_CONFIG.runtime, stats_shards=7))
    assert (tuned.stats_shards, tuned.jobs_table) == (7, AWS_CONFIG.runtime.jobs_table)
    assert tuned.settings().stats_shards == 7
    # And a name that is neither the config's nor a setting is still an error
    with pytest.raises(AttributeError, match="no_such_setting"):
        _ = AWS_CONFIG.no_such_setting


def test_the_aws_config_turns_off_client_side_request_checks_and_the_local_one_keeps_them() -> None:
    assert Settings().sdk_parameter_validation is True
    assert AWS_CONFIG.settings().sdk_parameter_validation is False
    assert local_config().settings().sdk_parameter_validation is True


def test_the_config_survives_a_deep_copy() -> None:
    copied = copy.deepcopy(local_config())
    assert copied == local_config()
    assert copied.settings() == local_config().settings()


@pytest.mark.usefixtures("clean_local_env")
def test_the_models_accepted_at_enqueue_must_be_ones_iam_lets_the_consumers_invoke() -> None:
    # Given a runtime list naming a model outside the IAM grant's list
    widened = dataclasses.replace(
        AWS_CONFIG,
        runtime=dataclasses.replace(AWS_CONFIG.runtime, bedrock_models=AWS_CONFIG.bedrock_models + ",cohere.embed-v4"),
    )
    # Then the functions' settings are refused, naming the model (cdk synth and make run stop there)
    with pytest.raises(ValueError, match=r"'cohere\.embed-v4' in bedrock_models is not in granted_bedrock_models"):
        widened.settings()
    # And the defaults agree, with the local stack sending mail from its verified sender
    assert AWS_CONFIG.settings().bedrock_models == ",".join(model.id for model in AWS_CONFIG.granted_bedrock_models)
    assert (AWS_CONFIG.email_sender, local_config().email_sender) == ("", LOCAL_EMAIL_SENDER)
