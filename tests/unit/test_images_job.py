"""``image-grayscale`` / ``image-resize``: payloads, sizes, magic bytes, the pixel limit, and S3 error classes."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from functions.logic.batches import parse_batch_request
from functions.logic.enqueue import parse_job_spec
from functions.logic.ingest import parse_hook
from functions.logic.job_types import JobContext, get_job_type
from functions.logic.job_types.images import (
    ImagePayload,
    ResizePayload,
    image_grayscale,
    image_resize,
    open_image,
    sniff_format,
    target_size,
)
from functions.models.errors import InvalidPayload, PermanentJobError, RetryableJobError
from functions.settings import Settings

TENANT = "acme"
DEFAULT_PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS
KEY = f"uploads/{TENANT}/photo.png"


def image_bytes(fmt: str, size: tuple[int, int] = (40, 20), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    color: Any = (200, 30, 60, 128) if mode == "RGBA" else (200, 30, 60)
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but carries no pixel data (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


class FakeS3:
    def __init__(self, objects: dict[str, bytes] | None = None, error: Exception | None = None) -> None:
        self.objects = dict(objects or {})
        self.error = error
        self.gets: list[str] = []
        self.puts: dict[str, dict[str, Any]] = {}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.gets.append(Key)
        if self.error is not None:
            raise self.error
        if Key not in self.objects:
            raise ClientError(
                {"Error": {"Code": "NoSuchKey", "Message": "gone"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                "GetObject",
            )
        data = self.objects[Key]
        return {"ContentLength": len(data), "Body": io.BytesIO(data)}

    def put_object(self, **params: Any) -> dict[str, Any]:
        self.puts[params["Key"]] = params
        return {}


def _context(s3: FakeS3, **settings: Any) -> JobContext:
    return JobContext(
        job_id="job-1",
        tenant=TENANT,
        attempt=1,
        max_attempts=3,
        logger=logging.getLogger("test"),
        settings=Settings(files_bucket="files", **settings),
        client=lambda service: s3,
    )


# --- payloads ---


@pytest.mark.parametrize(
    "payload",
    [
        {"key": "uploads/acme/a.png"},  # no size
        {"key": "uploads/acme/a.png", "width": 0},
        {"key": "uploads/acme/a.png", "height": 10_001},
        {"key": "other/acme/a.png", "width": 10},
        {"key": "uploads//a.png", "width": 10},
        {"key": "", "width": 10},
        {"key": "uploads/acme/a.png", "width": 10, "colour": "red"},
    ],
)
def test_invalid_resize_payloads_are_rejected_at_enqueue(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        get_job_type("image-resize").parse_payload(payload)


def test_another_tenants_upload_is_refused_at_enqueue() -> None:
    # Given a caller of tenant "other" naming tenant acme's upload
    body = {"type": "image-grayscale", "payload": {"key": "uploads/acme/a.png"}}
    # When the request is validated for that caller: refused with INVALID_PAYLOAD, saying whose uploads it may name
    with pytest.raises(InvalidPayload, match="payload is not valid") as refused:
        parse_job_spec(body, 0, tenant="other")
    assert refused.value.code == "INVALID_PAYLOAD"
    assert "uploads/other/" in str(refused.value.details)
    # And the owner's own request passes
    assert parse_job_spec(body, 0, tenant="acme").payload["key"] == "uploads/acme/a.png"


def test_another_tenants_upload_is_refused_in_a_batch_and_in_a_webhook() -> None:
    # Given tenant "other" naming tenant acme's upload in a batch child, a batch's onComplete and a webhook body
    spec = {"type": "image-grayscale", "payload": {"key": "uploads/acme/a.png"}}
    message = {"type": "message", "payload": {"message": "m"}}
    # When each is validated for that caller: refused with INVALID_PAYLOAD at enqueue, as POST /jobs is
    with pytest.raises(InvalidPayload, match=r"jobs\[0\]"):
        parse_batch_request({"jobs": [spec]}, 0, "batch-1", tenant="other")
    with pytest.raises(InvalidPayload, match="onComplete"):
        parse_batch_request({"jobs": [message], "onComplete": spec}, 0, "batch-1", tenant="other")
    with pytest.raises(InvalidPayload):
        parse_hook("image-grayscale", b'{"key": "uploads/acme/a.png"}', {}, tenant="other")
    # And the owner's own requests pass
    assert parse_batch_request({"jobs": [spec]}, 0, "batch-1", tenant="acme").specs[0].payload["key"]
    assert parse_hook("image-grayscale", b'{"key": "uploads/acme/a.png"}', {}, tenant="acme").payload["key"]


def test_grayscale_needs_only_a_key_and_resize_one_side() -> None:
    assert isinstance(get_job_type("image-grayscale").parse_payload({"key": KEY}), ImagePayload)
    assert isinstance(get_job_type("image-resize").parse_payload({"key": KEY, "height": 5}), ResizePayload)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ((None, None), (400, 200)),
        ((100, None), (100, 50)),
        ((None, 50), (100, 50)),
        ((30, 70), (30, 70)),
        ((1, None), (1, 1)),  # never 0 pixels
        ((None, 1), (2, 1)),
    ],
)
def test_target_size_keeps_the_aspect_ratio_when_one_side_is_missing(
    given: tuple[int | None, int | None], expected: tuple[int, int]
) -> None:
    assert target_size(400, 200, *given) == expected


# --- magic bytes and the pixel limit ---


def test_formats_are_told_by_their_magic_bytes() -> None:
    assert sniff_format(image_bytes("PNG")) == "PNG"
    assert sniff_format(image_bytes("JPEG")) == "JPEG"
    for data in (b"GIF89a....", b"<html>", b"", image_bytes("GIF"), image_bytes("BMP")):
        with pytest.raises(PermanentJobError, match="not a PNG or JPEG"):
            sniff_format(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_over_the_pixel_limit_is_refused_from_its_header() -> None:
    # Given a PNG whose header claims 7000x7000 (49 MP) with no pixel data behind it
    data = png_header_only(7000, 7000)
    # Then it is refused on the header alone (decoding would fail differently: the data is empty)
    with pytest.raises(PermanentJobError, match="pixels; at most 40000000"):
        open_image(data, 40_000_000)


def test_a_decompression_bomb_is_refused_by_pillows_guard_at_the_configured_limit() -> None:
    # Given a header of 9000x9000 (81 MP): over twice the limit, so Pillow's guard raises while opening
    with pytest.raises(PermanentJobError, match="pixel limit"):
        open_image(png_header_only(9000, 9000), 40_000_000)
    # Then Pillow's process-wide guard is back to what it was
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_PILLOW_LIMIT


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_permanent(fmt: str) -> None:
    data = image_bytes(fmt, (200, 200))
    with pytest.raises(PermanentJobError, match=f"not a valid {fmt}"):
        open_image(data[: len(data) // 3], 40_000_000)


# --- the handlers against a fake S3 ---


def test_grayscale_writes_an_L_png_under_processed_with_its_content_type() -> None:
    s3 = FakeS3({KEY: image_bytes("PNG")})
    result = image_grayscale(ImagePayload(key=KEY), _context(s3))
    assert result["key"] == "processed/job-1.png"
    put = s3.puts["processed/job-1.png"]
    assert put["ContentType"] == "image/png" and put["Bucket"] == "files"
    with Image.open(io.BytesIO(put["Body"])) as out:
        assert (out.format, out.mode, out.size) == ("PNG", "L", (40, 20))
    assert result == {
        "key": "processed/job-1.png",
        "contentType": "image/png",
        "width": 40,
        "height": 20,
        "size": len(put["Body"]),
        "mode": "L",
        "source": KEY,
    }


def test_grayscale_keeps_a_pngs_transparency() -> None:
    s3 = FakeS3({KEY: image_bytes("PNG", mode="RGBA")})
    assert image_grayscale(ImagePayload(key=KEY), _context(s3))["mode"] == "LA"


def test_resize_of_a_jpeg_writes_a_jpeg_of_the_asked_size() -> None:
    key = f"uploads/{TENANT}/photo.jpg"
    s3 = FakeS3({key: image_bytes("JPEG", (300, 200))})
    result = image_resize(ResizePayload(key=key, width=150), _context(s3))
    with Image.open(io.BytesIO(s3.puts["processed/job-1.jpg"]["Body"])) as out:
        assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (150, 100))
    assert (result["contentType"], result["width"], result["height"]) == ("image/jpeg", 150, 100)


def test_another_tenants_upload_is_refused_without_reading_it() -> None:
    s3 = FakeS3({"uploads/other/photo.png": image_bytes("PNG")})
    with pytest.raises(PermanentJobError, match="not your upload"):
        image_grayscale(ImagePayload(key="uploads/other/photo.png"), _context(s3))
    assert s3.gets == []


def test_a_tenant_whose_name_prefixes_another_cannot_read_its_uploads() -> None:
    s3 = FakeS3({"uploads/acme-corp/photo.png": image_bytes("PNG")})
    with pytest.raises(PermanentJobError, match="not your upload"):
        image_grayscale(ImagePayload(key="uploads/acme-corp/photo.png"), _context(s3))


def test_a_missing_upload_is_permanent() -> None:
    with pytest.raises(PermanentJobError, match="does not exist"):
        image_grayscale(ImagePayload(key=KEY), _context(FakeS3()))


def test_an_upload_over_the_size_limit_is_permanent() -> None:
    s3 = FakeS3({KEY: image_bytes("PNG", (300, 300))})
    with pytest.raises(PermanentJobError, match="bytes; at most 100"):
        image_grayscale(ImagePayload(key=KEY), _context(s3, upload_max_bytes=100))


def test_a_result_over_the_pixel_limit_is_permanent() -> None:
    s3 = FakeS3({KEY: image_bytes("PNG")})
    with pytest.raises(PermanentJobError, match="result would be"):
        image_resize(ResizePayload(key=KEY, width=10_000), _context(s3, image_max_pixels=1_000_000))
    assert s3.puts == {}


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("AccessDenied", 403, PermanentJobError),
        ("SlowDown", 503, RetryableJobError),
        ("InternalError", 500, RetryableJobError),
        ("InvalidObjectState", 403, PermanentJobError),
    ],
)
def test_s3_errors_are_classified(code: str, status: int, error: type[Exception]) -> None:
    failure = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )
    with pytest.raises(error):
        image_grayscale(ImagePayload(key=KEY), _context(FakeS3(error=failure)))
