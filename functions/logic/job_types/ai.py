"""``generate-embedding`` and ``generate-content``: Amazon Bedrock on AWS, the local-only provider elsewhere.

The provider is chosen by ``Settings.ai_provider`` (see ``functions.adapters.ai_providers``). A job may name a
model: at enqueue it must be in ``Settings.bedrock_models``, the models the consumers' IAM grant covers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from functions.logic.job_types.registry import JobContext, Payload, job_type, settings_at_enqueue
from functions.models.bounds import NOT_BLANK_PATTERN

if TYPE_CHECKING:
    from functions.adapters.ai_providers import AiProvider

MAX_INPUT_CHARS = 8000
# A Bedrock model id, inference profile id or ARN.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _allowed_model(value: str | None, info: ValidationInfo) -> str | None:
    """At enqueue, a named model must be one the deployment allows: IAM would deny any other at run time."""
    settings = settings_at_enqueue(info)
    if value is None or settings is None:
        return value
    allowed = [model for model in settings.bedrock_models.split(",") if model]
    if value not in allowed:
        raise ValueError(
            f"model '{value}' is not allowed in this deployment; allowed: {', '.join(allowed) or 'none'} "
            "(cdk deploy -c bedrockModels=...)"
        )
    return value


def _provider(ctx: JobContext) -> AiProvider:
    # Imported here: every function imports the job types, and only these two jobs need the providers.
    from functions.adapters.ai_providers import provider_for

    return provider_for(ctx.settings, ctx.client)


class EmbeddingPayload(Payload):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1, max_length=MAX_INPUT_CHARS, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )  # not blank
    model: str | None = Field(default=None, min_length=1, max_length=256, pattern=MODEL_PATTERN)

    _text = field_validator("text")(_not_blank)
    _model = field_validator("model")(_allowed_model)


class ContentPayload(Payload):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(
        min_length=1, max_length=MAX_INPUT_CHARS, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )  # not blank
    model: str | None = Field(default=None, min_length=1, max_length=256, pattern=MODEL_PATTERN)
    max_tokens: int = Field(default=512, ge=1, le=4096, alias="maxTokens")

    _prompt = field_validator("prompt")(_not_blank)
    _model = field_validator("model")(_allowed_model)


@job_type("generate-embedding", payload=EmbeddingPayload)
def generate_embedding(payload: EmbeddingPayload, ctx: JobContext) -> dict[str, Any]:
    provider = _provider(ctx)
    embedding = provider.embed(payload.text, payload.model)
    return {
        "embedding": embedding.vector,
        "dimensions": len(embedding.vector),
        "model": embedding.model,
        "provider": provider.name,
        "inputTokens": embedding.input_tokens,
    }


@job_type("generate-content", payload=ContentPayload)
def generate_content(payload: ContentPayload, ctx: JobContext) -> dict[str, Any]:
    provider = _provider(ctx)
    generation = provider.generate(payload.prompt, payload.max_tokens, payload.model)
    return {
        "text": generation.text,
        "model": generation.model,
        "provider": provider.name,
        "stopReason": generation.stop_reason,
        "usage": {
            "inputTokens": generation.input_tokens,
            "outputTokens": generation.output_tokens,
            "totalTokens": generation.input_tokens + generation.output_tokens,
        },
    }
