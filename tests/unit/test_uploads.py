"""POST /uploads and GET /jobs/{id}/result as use cases: validation, tenant-scoped keys, what may be presigned."""

from __future__ import annotations

import re
from typing import Any

import pytest

from functions.logic.results import job_result, result_file_key
from functions.logic.uploads import create_upload, is_tenant_upload, parse_upload_request
from functions.models.errors import InvalidState, InvalidUpload, NotFound
from functions.models.job import JobStatus
from tests.unit.fake_files import InMemoryFileStore
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, make_job

MAX = 10 * 1024 * 1024
EXPIRY = 900
TENANT = "tenant-a"


@pytest.fixture
def files() -> InMemoryFileStore:
    return InMemoryFileStore()


# --- POST /uploads ---


@pytest.mark.parametrize(
    ("content_type", "extension"), [("image/png", "png"), ("image/jpeg", "jpg"), (" Image/PNG ", "png")]
)
def test_an_image_upload_gets_a_key_in_the_tenants_prefix_and_a_presigned_put(
    files: InMemoryFileStore, clock: FakeClock, content_type: str, extension: str
) -> None:
    # Given a valid request
    request = parse_upload_request({"contentType": content_type, "size": 1234}, MAX)
    # When the upload is created
    upload = create_upload(request, TENANT, files, clock, EXPIRY)
    # Then the key is the service's choice, under uploads/<tenant>/, with the type's extension
    assert re.fullmatch(rf"uploads/{TENANT}/[0-9a-f-]{{36}}\.{extension}", upload["key"])
    # And the URL is a PUT of that key, valid for the expiry, with the type and size the client must send
    assert files.presigned == [("PUT", upload["key"], EXPIRY)]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": content_type.strip().lower(), "Content-Length": "1234"}
    assert upload["uploadUrl"].startswith("https://s3.example/jobs-files/uploads/")
    assert upload["expiresAt"] == clock.iso(EXPIRY)


def test_two_uploads_never_share_a_key(files: InMemoryFileStore, clock: FakeClock) -> None:
    request = parse_upload_request({"contentType": "image/png", "size": 1}, MAX)
    keys = {create_upload(request, TENANT, files, clock, EXPIRY)["key"] for _ in range(50)}
    assert len(keys) == 50


@pytest.mark.parametrize("size", [1, MAX])
def test_sizes_from_one_byte_to_the_limit_are_accepted(size: int) -> None:
    assert parse_upload_request({"contentType": "image/jpeg", "size": size}, MAX).size == size


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"contentType": "image/gif", "size": 10}, id="gif"),
        pytest.param({"contentType": "text/html", "size": 10}, id="html"),
        pytest.param({"contentType": "image/svg+xml", "size": 10}, id="svg"),
        pytest.param({"contentType": None, "size": 10}, id="null-type"),
        pytest.param({"size": 10}, id="no-type"),
        pytest.param({"contentType": "image/png"}, id="no-size"),
        pytest.param({"contentType": "image/png", "size": 0}, id="empty"),
        pytest.param({"contentType": "image/png", "size": -1}, id="negative"),
        pytest.param({"contentType": "image/png", "size": MAX + 1}, id="over-10-mb"),
        pytest.param({"contentType": "image/png", "size": 10**100}, id="huge"),
        pytest.param({"contentType": "image/png", "size": 1.5}, id="fraction"),
        pytest.param({"contentType": "image/png", "size": "10"}, id="string-size"),
        pytest.param({"contentType": "image/png", "size": True}, id="bool-size"),
        pytest.param({"contentType": "image/png", "size": 10, "key": "uploads/other/x.png"}, id="chosen-key"),
        pytest.param(["image/png", 10], id="list"),
        pytest.param("image/png", id="string"),
    ],
)
def test_anything_but_a_png_or_jpeg_of_1_byte_to_10_mb_is_invalid_upload(body: Any) -> None:
    with pytest.raises(InvalidUpload) as caught:
        parse_upload_request(body, MAX)
    # And the error says what is allowed
    assert caught.value.code == "INVALID_UPLOAD" and caught.value.status_code == 400
    assert caught.value.details == {"contentTypes": ["image/jpeg", "image/png"], "maxBytes": MAX}


@pytest.mark.parametrize(
    ("key", "mine"),
    [
        ("uploads/tenant-a/x.png", True),
        ("uploads/tenant-a/", False),
        ("uploads/tenant-ab/x.png", False),
        ("uploads/tenant-b/x.png", False),
        ("uploads/tenant-a/../tenant-b/x.png", False),
        ("uploads/tenant-a//x.png", False),
        ("processed/x.png", False),
    ],
)
def test_an_upload_belongs_to_a_tenant_only_under_its_own_prefix(key: str, mine: bool) -> None:
    assert is_tenant_upload(key, TENANT) is mine


# --- GET /jobs/{id}/result ---


@pytest.mark.parametrize(
    ("result", "key"),
    [
        ({"key": "processed/j.png", "contentType": "image/png"}, "processed/j.png"),
        ({"key": "fetched/j"}, "fetched/j"),
        ({"key": "crawls/j/index.json"}, "crawls/j/index.json"),
        ({"key": "uploads/tenant-a/u.png"}, "uploads/tenant-a/u.png"),
        ({"key": "uploads/tenant-b/u.png"}, None),
        ({"key": "payloads/tenant-a/j.json"}, None),
        ({"key": "secret/thing"}, None),
        ({"key": "processed/../uploads/tenant-b/u.png"}, None),
        ({"key": 5}, None),
        ({"written": 3}, None),
        ("Resized cat.png", None),
        (None, None),
    ],
)
def test_only_job_outputs_and_the_callers_own_uploads_are_downloadable(result: Any, key: str | None) -> None:
    assert result_file_key(result, TENANT) == key


def test_a_completed_job_naming_a_file_gets_a_presigned_get(
    repo: InMemoryJobsRepository, files: InMemoryFileStore, clock: FakeClock
) -> None:
    # Given a completed job whose result names its output
    result = {"key": "processed/j1.png", "contentType": "image/png", "width": 10}
    repo.create(make_job(clock, job_id="j1", status=JobStatus.COMPLETED, result=result))
    # When its result is asked for
    body = job_result(repo, files, TENANT, "j1", clock, EXPIRY)
    # Then it is a download URL of that key, with its expiry and type
    assert body == {
        "url": "https://s3.example/jobs-files/processed/j1.png?signed=GET&expires=900",
        "key": "processed/j1.png",
        "expiresAt": clock.iso(EXPIRY),
        "contentType": "image/png",
    }
    assert files.presigned == [("GET", "processed/j1.png", EXPIRY)]


@pytest.mark.parametrize("result", ["hello", {"written": 3}, {"key": "uploads/tenant-b/theirs.png"}, None])
def test_a_completed_job_naming_no_file_it_may_share_answers_with_its_result(
    repo: InMemoryJobsRepository, files: InMemoryFileStore, clock: FakeClock, result: Any
) -> None:
    repo.create(make_job(clock, job_id="j1", status=JobStatus.COMPLETED, result=result))
    assert job_result(repo, files, TENANT, "j1", clock, EXPIRY) == {"result": result}
    assert files.presigned == []


@pytest.mark.parametrize(
    "status",
    [
        JobStatus.SCHEDULED,
        JobStatus.PENDING,
        JobStatus.PROCESSING,
        JobStatus.RETRYING,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    ],
)
def test_a_job_that_is_not_completed_has_no_result_yet(
    repo: InMemoryJobsRepository, files: InMemoryFileStore, clock: FakeClock, status: JobStatus
) -> None:
    repo.create(make_job(clock, job_id="j1", status=status, result={"key": "processed/j1.png"}))
    with pytest.raises(InvalidState) as caught:
        job_result(repo, files, TENANT, "j1", clock, EXPIRY)
    assert caught.value.status_code == 409 and status.value in caught.value.message


def test_another_tenants_job_is_not_found(
    repo: InMemoryJobsRepository, files: InMemoryFileStore, clock: FakeClock
) -> None:
    repo.create(make_job(clock, job_id="j1", tenant="tenant-b", status=JobStatus.COMPLETED, result={"key": "p"}))
    with pytest.raises(NotFound):
        job_result(repo, files, TENANT, "j1", clock, EXPIRY)
    with pytest.raises(NotFound):
        job_result(repo, files, TENANT, "nope", clock, EXPIRY)
