"""The "Adding a job type" example of docs/job-types.md works as written: it registers, validates at enqueue, and
runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from functions.logic import enqueue
from functions.logic.consume import ConsumerSettings, MessageConsumer, Outcome
from functions.logic.enqueue import EnqueueSettings
from functions.logic.job_types import registry
from functions.models.errors import InvalidPayload
from functions.models.job import JobStatus
from tests.unit.fakes import FakeClock, InMemoryJobsRepository, RecordingQueue, message_body

JOB_TYPES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "job-types.md"


def documented_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", JOB_TYPES_PAGE.read_text(), flags=re.S)
    found = [block for block in blocks if '@job_type("thumbnail"' in block]
    assert len(found) == 1, "docs/job-types.md: the thumbnail example is gone"
    return found[0]


@pytest.fixture
def thumbnail_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example registers into the global registry; give it a copy so other tests never see "thumbnail" (with
    # every built-in type in it first: one loaded into the copy would be missing from the registry afterwards).
    registry.load_all_types()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    exec(compile(documented_example(), "docs/job-types.md", "exec"), {"__name__": "documented_example"})


@pytest.mark.usefixtures("thumbnail_registered")
def test_the_documented_type_registers_validates_and_runs() -> None:
    # Given the documented example module, loaded as a user would add it
    clock, repo, queue = FakeClock(), InMemoryJobsRepository(), RecordingQueue()
    assert "thumbnail" in registry.registered_types()
    # When a client enqueues it (defaults filled in) and the consumer delivers it
    spec = enqueue.parse_job_spec({"type": "thumbnail", "payload": {"key": "uploads/acme/cat.png"}}, clock())
    job = enqueue.submit(spec, "acme", repo, queue, clock, EnqueueSettings(10, 120)).job
    consumer = MessageConsumer(repo=repo, queue=queue, clock=clock, settings=ConsumerSettings(1, 4))
    outcome = consumer.handle(message_body(job), "", "receipt", 30_000)
    # Then it completed with the handler's result
    stored = repo.get("acme", job.id)
    assert outcome is Outcome.COMPLETED and stored is not None
    assert stored.status == JobStatus.COMPLETED
    assert stored.result == {"key": "uploads/acme/cat.png", "width": 128, "attempt": 1}


@pytest.mark.usefixtures("thumbnail_registered")
def test_the_documented_type_rejects_a_bad_payload_at_enqueue() -> None:
    with pytest.raises(InvalidPayload) as caught:
        enqueue.parse_job_spec({"type": "thumbnail", "payload": {"key": "k", "width": 0}}, FakeClock()())
    assert caught.value.details and caught.value.details[0]["field"] == "width"
