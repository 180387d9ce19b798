"""``image-grayscale`` and ``image-resize``: read an upload from S3, process it with Pillow, write the result.

Input: ``uploads/<tenant>/...`` of the job's own tenant in ``Settings.files_bucket``, PNG or JPEG (magic bytes), at
most ``Settings.upload_max_bytes`` and ``Settings.image_max_pixels`` (checked from the header, before decoding).
Output: ``processed/<job id>.<png|jpg>`` in the same format and bucket, with its Content-Type; a re-run overwrites it.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any, Self

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from functions.adapters.aws_errors import SdkError
from functions.logic.job_types.registry import TENANT_CONTEXT_KEY, JobContext, Payload, job_type
from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported where images are processed, not at module import: every function loads the job-type registry
# (the API validates payloads with it), but only the consumer has the job-dependencies layer with Pillow in it.

MAX_SIDE = 10_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# format -> (extension, content type)
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg")}
JPEG_QUALITY = 90
_PILLOW_GUARD = threading.Lock()
# A batch's records run at once (handlers/concurrent_batch.py), but a decoded image is the consumer's memory peak
# (up to image_max_pixels, ~120 MB as RGB plus its converted copy): one image at a time per execution environment.
_ONE_IMAGE_AT_A_TIME = threading.Lock()


class ImagePayload(Payload):
    """``image-grayscale``: optional width/height also resize."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=1024, pattern=r"^uploads/[^/]+/.+")
    width: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=1, le=MAX_SIDE)

    @field_validator("key")
    @classmethod
    def _the_callers_upload(cls, key: str, info: ValidationInfo) -> str:
        # At enqueue the caller's tenant is known (the validation context): another tenant's upload is refused
        # there, not left to fail at run time (read_upload checks again, for payloads stored before this check).
        tenant = (info.context or {}).get(TENANT_CONTEXT_KEY)
        if tenant and not key.startswith(f"uploads/{tenant}/"):
            raise ValueError(f"not your upload: the key must be under uploads/{tenant}/")
        return key


class ResizePayload(ImagePayload):
    # What ``_a_size`` checks, for the document: a width or a height (an integer, not null).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": [side], "properties": {side: {"type": "integer"}}} for side in ("width", "height")]
        }
    )

    @model_validator(mode="after")
    def _a_size(self) -> Self:
        if self.width is None and self.height is None:
            raise ValueError("give 'width', 'height' or both")
        return self


def sniff_format(data: bytes) -> str:
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    raise PermanentJobError("not a PNG or JPEG (magic bytes)")


def target_size(width: int, height: int, new_width: int | None, new_height: int | None) -> tuple[int, int]:
    """Both given: exactly that. One given: the other follows the aspect ratio. None: unchanged."""
    if new_width is not None and new_height is not None:
        return new_width, new_height
    if new_width is not None:
        return new_width, max(1, round(height * new_width / width))
    if new_height is not None:
        return max(1, round(width * new_height / height)), new_height
    return width, height


def _s3_failure(exc: ClientError | BotoCoreError, action: str, key: str) -> JobFailure:
    if isinstance(exc, BotoCoreError):
        return RetryableJobError(f"S3 did not answer ({action} {key}): {exc}")
    error = SdkError.of(exc)
    code, status = error.code, error.status
    if code in ("NoSuchKey", "404", "NotFound"):
        return PermanentJobError(f"upload {key} does not exist")
    if code in ("AccessDenied", "403"):
        # Without s3:ListBucket a missing key is also a 403.
        return PermanentJobError(f"upload {key} does not exist or cannot be read ({code})")
    if code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable") or status >= 500:
        return RetryableJobError(f"S3 {action} {key} failed: {code}")
    if 400 <= status < 500:
        return PermanentJobError(f"S3 {action} {key} failed: {code}")
    return RetryableJobError(f"S3 {action} {key} failed: {code}")


def read_upload(ctx: JobContext, key: str) -> bytes:
    if not key.startswith(f"uploads/{ctx.tenant}/"):
        raise PermanentJobError(f"not your upload: {key} is not under uploads/{ctx.tenant}/")
    limit = ctx.settings.upload_max_bytes
    try:
        obj = ctx.client("s3").get_object(Bucket=ctx.settings.files_bucket, Key=key)
        if int(obj.get("ContentLength", 0)) > limit:
            raise PermanentJobError(f"upload {key} is {obj['ContentLength']} bytes; at most {limit}")
        data: bytes = obj["Body"].read(limit + 1)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_failure(exc, "GetObject", key) from exc
    if len(data) > limit:
        raise PermanentJobError(f"upload {key} is over {limit} bytes")
    return data


def open_image(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Open (header only), refuse over ``max_pixels``, then decode. Returns the image and its format."""
    from PIL import Image, UnidentifiedImageError

    fmt = sniff_format(data)
    try:
        with _PILLOW_GUARD:
            # Pillow's own decompression-bomb guard, at the same limit while the header is read (it warns above the
            # limit and raises above twice the limit). Restored after, so the process-wide value never leaks.
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                image = Image.open(io.BytesIO(data), formats=[fmt])
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        width, height = image.size
        if width * height > max_pixels:
            raise PermanentJobError(f"image is {width}x{height} = {width * height} pixels; at most {max_pixels}")
        image.load()
    except Image.DecompressionBombError as exc:
        raise PermanentJobError(f"image is over the pixel limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PermanentJobError(f"not a valid {fmt} image: {exc}") from exc
    return image, fmt


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)


def process(
    image: Image.Image, fmt: str, *, grayscale: bool, width: int | None, height: int | None, max_pixels: int
) -> Image.Image:
    from PIL import Image, ImageOps

    # Respect the camera's orientation (EXIF), so "width" means what the viewer sees.
    image = ImageOps.exif_transpose(image) or image
    alpha = fmt == "PNG" and _has_alpha(image)
    if grayscale:
        image = image.convert("LA" if alpha else "L")
    elif image.mode not in ("L", "LA", "RGB", "RGBA") or (fmt == "JPEG" and image.mode not in ("L", "RGB")):
        image = image.convert("RGBA" if alpha else ("L" if image.mode in ("1", "I", "I;16", "F") else "RGB"))
    size = target_size(image.width, image.height, width, height)
    if size[0] * size[1] > max_pixels:
        raise PermanentJobError(f"result would be {size[0]}x{size[1]} pixels; at most {max_pixels}")
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def run(payload: ImagePayload, ctx: JobContext, *, grayscale: bool) -> dict[str, Any]:
    max_pixels = ctx.settings.image_max_pixels
    data = read_upload(ctx, payload.key)
    with _ONE_IMAGE_AT_A_TIME:
        image, fmt = open_image(data, max_pixels)
        with image:
            result = process(
                image, fmt, grayscale=grayscale, width=payload.width, height=payload.height, max_pixels=max_pixels
            )
            output = encode(result, fmt)
            width, height, mode = result.width, result.height, result.mode
        del image, result  # freed before the next image is decoded
    extension, content_type = FORMATS[fmt]
    key = f"processed/{ctx.job_id}.{extension}"
    try:
        ctx.client("s3").put_object(Bucket=ctx.settings.files_bucket, Key=key, Body=output, ContentType=content_type)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_failure(exc, "PutObject", key) from exc
    return {
        "key": key,
        "contentType": content_type,
        "width": width,
        "height": height,
        "size": len(output),
        "mode": mode,
        "source": payload.key,
    }


@job_type("image-grayscale", payload=ImagePayload)
def image_grayscale(payload: ImagePayload, ctx: JobContext) -> dict[str, Any]:
    return run(payload, ctx, grayscale=True)


@job_type("image-resize", payload=ResizePayload)
def image_resize(payload: ResizePayload, ctx: JobContext) -> dict[str, Any]:
    return run(payload, ctx, grayscale=False)
