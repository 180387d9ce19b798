"""Fixtures of the unit suite: fakes only, no AWS, no network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

# The service's parent logger, created as in Lambda (with its redacting formatter): the logic modules use child
# loggers, which Powertools refuses to use (append_keys) before their parent exists.
from functions.handlers.runtime import logger as SERVICE_LOGGER  # noqa: F401
from functions.logic.job_types import JobContext, JobType, registry
from tests.unit.fakes import EmptyPayload, FakeClock, InMemoryJobsRepository, RecordingQueue, RegisterJobType


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo() -> InMemoryJobsRepository:
    return InMemoryJobsRepository(sweep_shards=4)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def register_job_type(monkeypatch: pytest.MonkeyPatch) -> RegisterJobType:
    """Register a job type for one test only (the global registry is restored afterwards)."""

    def register(name: str, handler: Callable[[Any, JobContext], Any], payload: type[BaseModel] = EmptyPayload) -> str:
        monkeypatch.setitem(registry._REGISTRY, name, JobType(name=name, payload_model=payload, handler=handler))
        return name

    return register
