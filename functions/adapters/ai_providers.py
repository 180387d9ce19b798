"""AI providers behind one small interface: Amazon Bedrock on AWS, a deterministic local-only stand-in elsewhere.

``BedrockProvider`` calls ``bedrock-runtime``: embeddings with ``InvokeModel`` in the Titan Text Embeddings V2
request/response shape, text with the model-agnostic ``Converse`` API. Its SDK errors become
``RetryableJobError`` (throttling, timeouts, 5xx) or ``PermanentJobError`` (validation, access, unknown model).

``LocalProvider`` is **not a language model**. moto cannot serve Bedrock and the packaged local models need
PyTorch, so ``make run`` and the tests use a deterministic provider instead:

- embeddings: feature hashing of normalised word unigrams and bigrams into 384 signed dimensions, L2-normalised.
  Texts that share words get a higher cosine similarity than texts that do not (lexical, not semantic, similarity).
- content: a response marked ``[local provider]`` that describes and echoes the prompt, cut to ``maxTokens`` words.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters.aws_errors import SdkError
from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError
from functions.settings import Settings


@dataclass(frozen=True)
class Embedding:
    vector: list[float]
    model: str
    input_tokens: int


@dataclass(frozen=True)
class Generation:
    text: str
    model: str
    stop_reason: str
    input_tokens: int
    output_tokens: int


class AiProvider(Protocol):
    name: str

    def embed(self, text: str, model: str | None = None) -> Embedding: ...

    def generate(self, prompt: str, max_tokens: int, model: str | None = None) -> Generation: ...


# --- Amazon Bedrock ---

# Transient: back off and retry. ServiceQuotaExceeded is a tokens-per-minute quota on InvokeModel ("resubmit later").
_BEDROCK_RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelTimeoutException",
        "InternalServerException",
        "ModelNotReadyException",
        "ServiceQuotaExceededException",
    }
)
# Retrying cannot help: bad request, no access to the model (IAM or model access), no such model, the model failed
# on this input (ModelErrorException is a 424).
_BEDROCK_PERMANENT = frozenset(
    {"ValidationException", "AccessDeniedException", "ResourceNotFoundException", "ModelErrorException"}
)


def bedrock_failure(exc: ClientError | BotoCoreError, operation: str, model: str) -> JobFailure:
    """The job outcome for an SDK error of ``bedrock-runtime``."""
    if isinstance(exc, BotoCoreError):  # connection trouble, read timeout
        return RetryableJobError(f"Bedrock {operation} ({model}) did not answer: {exc}")
    error = SdkError.of(exc)
    code, message, status = error.code, error.message, error.status
    text = f"Bedrock {operation} ({model}) failed: {code or status}: {message}".rstrip(": ")
    if code in _BEDROCK_PERMANENT:
        return PermanentJobError(text)
    if code in _BEDROCK_RETRYABLE or status >= 500 or status == 429:
        return RetryableJobError(text)
    if 400 <= status < 500:
        return PermanentJobError(text)
    return RetryableJobError(text)


class BedrockProvider:
    """``bedrock-runtime``: Titan Text Embeddings (V2 shape) through InvokeModel, text through Converse."""

    name = "bedrock"

    def __init__(
        self, client: Any, embedding_model: str, text_model: str, embedding_dimensions: int | None = None
    ) -> None:
        self._client = client
        self.embedding_model = embedding_model
        self.text_model = text_model
        self.embedding_dimensions = embedding_dimensions

    def embed(self, text: str, model: str | None = None) -> Embedding:
        model_id = model or self.embedding_model
        if "titan-embed-text" not in model_id:
            raise PermanentJobError(
                f"embedding model '{model_id}' is not supported: the Bedrock provider speaks the Titan Text "
                "Embeddings request shape (amazon.titan-embed-text-*)"
            )
        request: dict[str, Any] = {"inputText": text, "normalize": True}
        if self.embedding_dimensions is not None:
            request["dimensions"] = self.embedding_dimensions
        try:
            response = self._client.invoke_model(
                modelId=model_id,
                body=json.dumps(request).encode(),
                contentType="application/json",
                accept="application/json",
            )
            raw = response["body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise bedrock_failure(exc, "InvokeModel", model_id) from exc
        try:
            data = json.loads(raw)
            vector = [float(value) for value in data["embedding"]]
            tokens = int(data.get("inputTextTokenCount", 0))
        except (ValueError, TypeError, KeyError) as exc:
            raise PermanentJobError(f"Bedrock model '{model_id}' answered with an unexpected body: {exc}") from exc
        if not vector:
            raise PermanentJobError(f"Bedrock model '{model_id}' returned an empty embedding")
        return Embedding(vector=vector, model=model_id, input_tokens=tokens)

    def generate(self, prompt: str, max_tokens: int, model: str | None = None) -> Generation:
        model_id = model or self.text_model
        try:
            response = self._client.converse(
                modelId=model_id,
                messages=[{"role": "user", "content": [{"text": prompt}]}],
                inferenceConfig={"maxTokens": max_tokens},
            )
        except (ClientError, BotoCoreError) as exc:
            raise bedrock_failure(exc, "Converse", model_id) from exc
        try:
            blocks = response["output"]["message"]["content"]
            text = "".join(str(block["text"]) for block in blocks if "text" in block)
            usage = response.get("usage", {})
            stop_reason = str(response.get("stopReason", ""))
        except (KeyError, TypeError) as exc:
            raise PermanentJobError(f"Bedrock model '{model_id}' answered with an unexpected shape: {exc}") from exc
        return Generation(
            text=text,
            model=model_id,
            stop_reason=stop_reason,
            input_tokens=int(usage.get("inputTokens", 0)),
            output_tokens=int(usage.get("outputTokens", 0)),
        )


# --- local-only, deterministic ---

LOCAL_DIMENSIONS = 384
LOCAL_EMBEDDING_MODEL = "local-feature-hashing-384"
LOCAL_TEXT_MODEL = "local-echo"
LOCAL_MARKER = "[local provider]"
_BIGRAM_WEIGHT = 0.5
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "a an and are as at be but by for from has have in is it its of on or that the this to was were will "
        "with you your i me my we our they them he she what which who how why when where can could would "
        "should do does please about into than then there these those not no"
    ).split()
)


def normalised_words(text: str) -> list[str]:
    """Unicode-normalised (NFKC), case-folded word tokens; the characters themselves when there are no words."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = _WORD.findall(folded)
    return words or [char for char in folded if not char.isspace()]


def _hashed(feature: str) -> tuple[int, float]:
    value = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return value % LOCAL_DIMENSIONS, (1.0 if value >> 63 else -1.0)


def hashing_embedding(text: str, dimensions: int = LOCAL_DIMENSIONS) -> list[float]:
    """Signed feature hashing of unigrams (weight 1) and bigrams (weight 0.5), L2-normalised."""
    if dimensions != LOCAL_DIMENSIONS:
        raise ValueError(f"the local provider has {LOCAL_DIMENSIONS} dimensions")
    words = normalised_words(text)
    vector = [0.0] * dimensions
    features = [(f"u:{word}", 1.0) for word in words]
    features += [(f"b:{first} {second}", _BIGRAM_WEIGHT) for first, second in itertools.pairwise(words)]
    for feature, weight in features:
        index, sign = _hashed(feature)
        vector[index] += sign * weight
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0:  # every feature cancelled out (vanishingly rare): fall back to the first feature alone
        index, sign = _hashed(features[0][0])
        vector[index], norm = sign, 1.0
    return [value / norm for value in vector]


def _key_terms(words: list[str], limit: int = 5) -> list[str]:
    counts = Counter(word for word in words if len(word) > 2 and word not in _STOPWORDS)
    first_seen = {word: index for index, word in reversed(list(enumerate(words)))}
    return sorted(counts, key=lambda word: (-counts[word], first_seen[word]))[:limit]


class LocalProvider:
    """Deterministic, local-only stand-in for Bedrock (``make run`` and tests). Not a language model."""

    name = "local"

    def embed(self, text: str, model: str | None = None) -> Embedding:
        return Embedding(
            vector=hashing_embedding(text), model=LOCAL_EMBEDDING_MODEL, input_tokens=len(normalised_words(text))
        )

    def generate(self, prompt: str, max_tokens: int, model: str | None = None) -> Generation:
        prompt_words = prompt.split()
        terms = _key_terms(normalised_words(prompt))
        body = (
            "Deterministic local-only response; no language model was called. "
            f"The prompt has {len(prompt_words)} words"
            + (f"; key terms: {', '.join(terms)}." if terms else ".")
            + " Echo: "
            + " ".join(prompt_words)
        ).split()
        stop_reason = "max_tokens" if len(body) > max_tokens else "end_turn"
        body = body[:max_tokens]
        return Generation(
            text=f"{LOCAL_MARKER} {' '.join(body)}",
            model=LOCAL_TEXT_MODEL,
            stop_reason=stop_reason,
            input_tokens=len(prompt_words),
            output_tokens=len(body),
        )


def provider_for(settings: Settings, client: Any) -> AiProvider:
    """The provider named by ``settings.ai_provider``; ``client(service)`` gives boto3 clients."""
    if settings.ai_provider == "local":
        return LocalProvider()
    if settings.ai_provider == "bedrock":
        return BedrockProvider(
            client("bedrock-runtime"),
            embedding_model=settings.bedrock_embedding_model,
            text_model=settings.bedrock_text_model,
        )
    raise PermanentJobError(f"unknown AI provider '{settings.ai_provider}' (expected 'bedrock' or 'local')")
