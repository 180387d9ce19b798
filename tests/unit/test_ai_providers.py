"""AI job types: payloads, the local-only provider's properties, and the Bedrock path through botocore's Stubber."""

from __future__ import annotations

import io
import json
import logging
import math
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from functions.adapters.ai_providers import (
    LOCAL_DIMENSIONS,
    LOCAL_MARKER,
    BedrockProvider,
    LocalProvider,
    hashing_embedding,
    provider_for,
)
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.ai import ContentPayload, EmbeddingPayload, generate_content, generate_embedding
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError
from functions.settings import Settings

EMBED_MODEL = "amazon.titan-embed-text-v2:0"
TEXT_MODEL = "amazon.nova-lite-v1:0"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def _context(provider: str, client: Any = None) -> JobContext:
    return JobContext(
        job_id="job-1",
        tenant="acme",
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(ai_provider=provider, bedrock_embedding_model=EMBED_MODEL, bedrock_text_model=TEXT_MODEL),
        client=lambda service: client,
    )


# --- payloads ---


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("generate-embedding", {"text": ""}),
        ("generate-embedding", {"text": "   "}),
        ("generate-embedding", {"text": "x" * 8001}),
        ("generate-embedding", {"text": "hi", "model": "bad model id"}),
        ("generate-embedding", {"text": "hi", "dimensions": 3}),
        ("generate-content", {"prompt": ""}),
        ("generate-content", {"prompt": "x" * 8001}),
        ("generate-content", {"prompt": "hi", "maxTokens": 0}),
        ("generate-content", {"prompt": "hi", "maxTokens": 4097}),
        ("generate-content", {"text": "hi"}),
    ],
)
def test_invalid_payloads_are_rejected_at_enqueue(name: str, payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        get_job_type(name).parse_payload(payload)


def test_content_defaults_to_512_tokens_and_round_trips_by_alias() -> None:
    payload = get_job_type("generate-content").parse_payload({"prompt": "hi", "model": "us.amazon.nova-lite-v1:0"})
    assert isinstance(payload, ContentPayload) and payload.max_tokens == 512
    stored = payload.model_dump(mode="json", by_alias=True)
    assert stored["maxTokens"] == 512
    assert get_job_type("generate-content").parse_payload(stored) == payload


# --- the allowed models: one configured list, enforced at enqueue (IAM is generated from it) ---

DEPLOYMENT = Settings(bedrock_models=f"{EMBED_MODEL},{TEXT_MODEL},us.amazon.nova-lite-v1:0")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("generate-content", {"prompt": "hi", "model": "anthropic.claude-3-haiku-20240307-v1:0"}),
        ("generate-content", {"prompt": "hi", "model": "eu.amazon.nova-lite-v1:0"}),  # another profile, same model
        ("generate-embedding", {"text": "hi", "model": "cohere.embed-english-v3"}),
        ("generate-content", {"prompt": "hi", "model": f"arn:aws:bedrock:us-east-1::foundation-model/{TEXT_MODEL}"}),
    ],
)
def test_a_model_outside_the_allowed_list_is_invalid_payload_at_enqueue(name: str, payload: dict[str, Any]) -> None:
    # When a job names a model the deployment does not allow
    with pytest.raises(InvalidPayload) as refused:
        get_job_type(name).parse_payload(payload, DEPLOYMENT, at_enqueue=True)
    # Then it is 400 INVALID_PAYLOAD at the model field, listing what is allowed
    assert (refused.value.status_code, refused.value.code) == (400, "INVALID_PAYLOAD")
    [detail] = refused.value.details
    assert detail["field"] == "model"
    assert "us.amazon.nova-lite-v1:0" in detail["message"] and "bedrockModels" in detail["message"]


@pytest.mark.parametrize("model", [None, TEXT_MODEL, "us.amazon.nova-lite-v1:0"])
def test_the_default_or_an_allowed_model_is_accepted(model: str | None) -> None:
    payload = {"prompt": "hi"} | ({"model": model} if model else {})
    parsed = get_job_type("generate-content").parse_payload(payload, DEPLOYMENT, at_enqueue=True)
    assert isinstance(parsed, ContentPayload) and parsed.model == model


def test_a_stored_job_naming_a_model_no_longer_allowed_still_runs() -> None:
    # Given a job accepted when its model was allowed, and a deployment that no longer lists it
    payload = {"prompt": "hi", "model": "anthropic.claude-3-haiku-20240307-v1:0"}
    # When the consumer parses it under its settings (not at enqueue): Then the allowlist is not applied again
    parsed = get_job_type("generate-content").parse_payload(payload, DEPLOYMENT)
    assert isinstance(parsed, ContentPayload) and parsed.model == payload["model"]


def test_the_default_allowed_list_matches_the_infrastructure_default() -> None:
    from infra.config import AWS_CONFIG

    assert Settings().bedrock_models == AWS_CONFIG.settings().bedrock_models


# --- the local provider: deterministic, 384 unit-norm dimensions, lexical similarity ---


def test_local_embeddings_are_deterministic_unit_vectors_of_384_dimensions() -> None:
    first = hashing_embedding("The quick brown fox jumps over the lazy dog")
    assert first == hashing_embedding("The quick brown fox jumps over the lazy dog")
    assert len(first) == LOCAL_DIMENSIONS == 384
    assert math.isclose(math.hypot(*first), 1.0, rel_tol=1e-9)


def test_case_punctuation_and_unicode_forms_do_not_change_the_embedding() -> None:
    assert hashing_embedding("Café, au LAIT!") == hashing_embedding("cafe\u0301 au lait")


def test_similar_texts_are_closer_than_dissimilar_ones() -> None:
    # Given a text, a paraphrase sharing most of its words, and an unrelated text
    base = hashing_embedding("how do I reset my account password")
    similar = hashing_embedding("how can I reset the password of my account")
    unrelated = hashing_embedding("quarterly revenue grew in the european market")
    # Then the paraphrase is much closer
    assert cosine(base, similar) > 0.5
    assert cosine(base, unrelated) < 0.2
    assert cosine(base, similar) > cosine(base, unrelated) + 0.3


def test_word_order_matters_through_bigrams() -> None:
    a, b = hashing_embedding("dog bites man"), hashing_embedding("man bites dog")
    assert 0.5 < cosine(a, b) < 0.999


def test_text_without_word_characters_still_embeds() -> None:
    assert math.isclose(math.hypot(*hashing_embedding("?!")), 1.0)


def test_local_content_is_marked_deterministic_and_bounded_by_max_tokens() -> None:
    provider = LocalProvider()
    prompt = "Write a haiku about serverless queues and serverless retries"
    full = provider.generate(prompt, 512)
    assert full.text.startswith(LOCAL_MARKER)
    assert "serverless" in full.text and full.stop_reason == "end_turn"
    assert full == provider.generate(prompt, 512)
    short = provider.generate(prompt, 3)
    assert short.stop_reason == "max_tokens" and short.output_tokens == 3
    assert len(short.text.removeprefix(LOCAL_MARKER).split()) == 3


def test_the_local_handlers_return_the_documented_shapes() -> None:
    embedding = generate_embedding(EmbeddingPayload(text="hello world"), _context("local"))
    assert set(embedding) == {"embedding", "dimensions", "model", "provider", "inputTokens"}
    assert (embedding["dimensions"], embedding["provider"], embedding["inputTokens"]) == (384, "local", 2)
    content = generate_content(ContentPayload(prompt="hello world", max_tokens=50), _context("local"))
    assert set(content) == {"text", "model", "provider", "stopReason", "usage"}
    assert content["provider"] == "local" and content["text"].startswith("[local provider]")
    assert content["usage"]["totalTokens"] == content["usage"]["inputTokens"] + content["usage"]["outputTokens"]
    json.dumps([embedding, content])


def test_an_unknown_provider_setting_is_permanent() -> None:
    with pytest.raises(PermanentJobError, match="unknown AI provider"):
        provider_for(Settings(ai_provider="openai"), lambda service: None)


# --- Bedrock, against the real request/response shapes (Stubber validates them against the service model) ---


@pytest.fixture
def bedrock() -> Any:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _body(data: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_bedrock_embedding_sends_the_titan_v2_request_and_reads_its_response(bedrock: Any) -> None:
    client, stubber = bedrock
    # Given Bedrock answering with a Titan V2 body
    stubber.add_response(
        "invoke_model",
        {"body": _body({"embedding": [0.6, 0.8], "inputTextTokenCount": 3}), "contentType": "application/json"},
        expected_params={
            "modelId": EMBED_MODEL,
            "body": json.dumps({"inputText": "hello there world", "normalize": True}).encode(),
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    # When the job runs with the bedrock provider
    result = generate_embedding(EmbeddingPayload(text="hello there world"), _context("bedrock", client))
    # Then the embedding and its metadata come back
    assert result == {
        "embedding": [0.6, 0.8],
        "dimensions": 2,
        "model": EMBED_MODEL,
        "provider": "bedrock",
        "inputTokens": 3,
    }


def test_bedrock_embedding_can_ask_for_dimensions(bedrock: Any) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "invoke_model",
        {"body": _body({"embedding": [1.0] * 256, "inputTextTokenCount": 1}), "contentType": "application/json"},
        expected_params={
            "modelId": "amazon.titan-embed-text-v2:0",
            "body": json.dumps({"inputText": "hi", "normalize": True, "dimensions": 256}).encode(),
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    provider = BedrockProvider(client, EMBED_MODEL, TEXT_MODEL, embedding_dimensions=256)
    assert len(provider.embed("hi").vector) == 256


def test_a_non_titan_embedding_model_is_permanent_without_a_call(bedrock: Any) -> None:
    client, _ = bedrock
    with pytest.raises(PermanentJobError, match="not supported"):
        generate_embedding(EmbeddingPayload(text="hi", model="cohere.embed-english-v3"), _context("bedrock", client))


def test_an_unexpected_embedding_body_is_permanent(bedrock: Any) -> None:
    client, stubber = bedrock
    stubber.add_response("invoke_model", {"body": _body({"embeddings": []}), "contentType": "application/json"})
    with pytest.raises(PermanentJobError, match="unexpected body"):
        generate_embedding(EmbeddingPayload(text="hi"), _context("bedrock", client))


def test_bedrock_content_uses_converse_and_reads_text_usage_and_stop_reason(bedrock: Any) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "Queues "}, {"text": "decouple."}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
            "metrics": {"latencyMs": 120},
        },
        expected_params={
            "modelId": "us.amazon.nova-pro-v1:0",
            "messages": [{"role": "user", "content": [{"text": "Why queues?"}]}],
            "inferenceConfig": {"maxTokens": 100},
        },
    )
    payload = ContentPayload(prompt="Why queues?", model="us.amazon.nova-pro-v1:0", max_tokens=100)
    result = generate_content(payload, _context("bedrock", client))
    assert result == {
        "text": "Queues decouple.",
        "model": "us.amazon.nova-pro-v1:0",
        "provider": "bedrock",
        "stopReason": "end_turn",
        "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
    }


def test_bedrock_content_defaults_to_the_configured_model(bedrock: Any) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
            "stopReason": "max_tokens",
            "usage": {"inputTokens": 1, "outputTokens": 512, "totalTokens": 513},
            "metrics": {"latencyMs": 1},
        },
        expected_params={
            "modelId": TEXT_MODEL,
            "messages": [{"role": "user", "content": [{"text": "go"}]}],
            "inferenceConfig": {"maxTokens": 512},
        },
    )
    result = generate_content(ContentPayload(prompt="go"), _context("bedrock", client))
    assert (result["model"], result["stopReason"]) == (TEXT_MODEL, "max_tokens")


@pytest.mark.parametrize("operation", ["invoke_model", "converse"])
@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, RetryableJobError),
        ("ServiceUnavailableException", 503, RetryableJobError),
        ("ModelTimeoutException", 408, RetryableJobError),
        ("InternalServerException", 500, RetryableJobError),
        ("ModelNotReadyException", 429, RetryableJobError),
        ("ValidationException", 400, PermanentJobError),
        ("AccessDeniedException", 403, PermanentJobError),
        ("ResourceNotFoundException", 404, PermanentJobError),
        ("ModelErrorException", 424, PermanentJobError),
    ],
)
def test_bedrock_errors_are_classified(
    bedrock: Any, operation: str, code: str, status: int, error: type[Exception]
) -> None:
    client, stubber = bedrock
    stubber.add_client_error(operation, service_error_code=code, service_message="m", http_status_code=status)
    with pytest.raises(error, match=code):
        if operation == "invoke_model":
            generate_embedding(EmbeddingPayload(text="hi"), _context("bedrock", client))
        else:
            generate_content(ContentPayload(prompt="hi"), _context("bedrock", client))
