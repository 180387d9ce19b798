"""A job's result, and the file it names: ``GET /jobs/{id}/result``.

The convention shared with the job types: a result that is a dict with a string ``key`` names an object in the files
bucket (``contentType`` optional). Only keys the service itself writes (``processed/``, ``fetched/``, ``crawls/``)
or the caller's own uploads are ever presigned; anything else is answered as a plain result.
"""

from __future__ import annotations

from typing import Any

from functions.dal.files import FileStore
from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock, iso
from functions.logic.manage import get_job
from functions.logic.uploads import is_plain_key, is_tenant_upload
from functions.models.errors import InvalidState
from functions.models.job import JobStatus

RESULT_PREFIXES = ("processed/", "fetched/", "crawls/")


def result_file_key(result: Any, tenant: str) -> str | None:
    """The files-bucket key ``result`` names, if it names one this tenant may download."""
    key = result.get("key") if isinstance(result, dict) else None
    if not isinstance(key, str) or not is_plain_key(key):
        return None
    if key.startswith(RESULT_PREFIXES) or is_tenant_upload(key, tenant):
        return key
    return None


def job_result(
    repo: JobsRepository, files: FileStore, tenant: str, job_id: str, clock: Clock, expires_in: int
) -> dict[str, Any]:
    """``{url, key, expiresAt[, contentType]}`` for a completed job whose result names a file, else ``{result}``."""
    job = get_job(repo, tenant, job_id)
    if job.status != JobStatus.COMPLETED:
        raise InvalidState(f"the job is {job.status.value}; its result exists once it is completed")
    key = result_file_key(job.result, tenant)
    if key is None:
        return {"result": job.result}
    body: dict[str, Any] = {
        "url": files.presign_get(key, expires_in),
        "key": key,
        "expiresAt": iso(clock() + expires_in * 1000),
    }
    content_type = job.result.get("contentType")
    if isinstance(content_type, str):
        body["contentType"] = content_type
    return body
