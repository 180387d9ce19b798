"""The local stack's state kept across a graceful restart: moto's own backends, saved on stop, loaded on start.

moto stays the engine: what is saved is moto's in-memory state itself, pickled, not an export into a store of our
own. DynamoDB (tables, items, indexes, the stream not yet delivered), S3 (uploads, results, offloaded payloads),
API Gateway (keys and their tenant tags), SES (verified senders) and Secrets Manager (ingest secrets) pickle
whole. An SQS queue holds a lock, so its messages are saved one by one and put back into the queues
``create_resources`` made again: each keeps its body, attributes, receive count, group and the times it becomes
visible (a delay or a backoff still ends when it would have). A message whose invocation was still running when
the stack stopped is visible again at once, so that job is retried after the restart, as on AWS once its
visibility timeout ends.

Re-playing the state through the AWS APIs instead (scan and put, receive and send) was the other way: it loses
receive counts and in-flight messages (invisible to a receive), and re-written items would reach the stats
aggregator through the stream a second time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moto

from functions.dal.keys import ID_PREFIX
from functions.settings import Settings
from local.aws import _DYNAMODB_LOCK, _SQS_LOCK, ACCOUNT_ID, REGION

KEYS_TABLE = Settings.keys_table  # the local stack's keys table (infra.config: the default name)

FORMAT_VERSION = 1
DEFAULT_STATE_FILE = Path(__file__).resolve().parents[1] / ".local-state" / "moto.pickle"


def state_file() -> Path:
    """Where the state is kept: ``JOBS_LOCAL_STATE_FILE``, or ``.local-state/moto.pickle`` in the checkout."""
    return Path(os.environ.get("JOBS_LOCAL_STATE_FILE") or DEFAULT_STATE_FILE)


@dataclass(frozen=True)
class StateSummary:
    jobs: int
    messages: int
    in_flight: int
    files: int
    api_keys: int

    def describe(self) -> str:
        running = f" ({self.in_flight} mid-attempt, retried after the restart)" if self.in_flight else ""
        return (
            f"{self.jobs} job(s), {self.messages} queued message(s){running}, {self.files} file(s), "
            f"{self.api_keys} API key(s)"
        )


@dataclass
class _Snapshot:
    moto_version: str
    saved_at: float
    # service -> the pickled backend of this account and region (S3: its partition)
    backends: dict[str, bytes] = field(default_factory=dict)
    # queue name -> its messages; in_flight: ids of messages an invocation still held
    messages: dict[str, list[Any]] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    format_version: int = FORMAT_VERSION


def _backends() -> dict[str, tuple[Any, str]]:
    """service -> (its BackendDict, the region key) for the services pickled whole."""
    from moto.apigateway.models import apigateway_backends
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.ses.models import ses_backends

    return {
        "dynamodb": (dynamodb_backends, REGION),
        "s3": (s3_backends, "aws"),
        "apigateway": (apigateway_backends, REGION),
        "ses": (ses_backends, REGION),
        "secretsmanager": (secretsmanager_backends, REGION),
    }


def _sqs() -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[ACCOUNT_ID][REGION]


def save(path: Path, in_flight: set[str], jobs_table: str) -> StateSummary:
    """Write moto's state to ``path`` (atomically: a stop interrupted while writing leaves the previous file)."""
    snapshot = _Snapshot(moto_version=moto.__version__, saved_at=time.time(), in_flight=set(in_flight))
    with _DYNAMODB_LOCK:
        for service, (backends, region) in _backends().items():
            snapshot.backends[service] = pickle.dumps(backends[ACCOUNT_ID][region])
    with _SQS_LOCK:
        for name, queue in _sqs().queues.items():
            with queue._messages_lock:
                snapshot.messages[name] = list(queue._messages)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(snapshot, out)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return summarize(jobs_table, snapshot.in_flight)


def restore(path: Path, jobs_table: str) -> StateSummary:
    """Load the state saved at ``path`` into the running moto, whose resources ``create_resources`` just made.

    Raises ``ValueError`` when the file cannot be used (another moto version, another format, damaged)."""
    try:
        with path.open("rb") as saved:
            snapshot = pickle.load(saved)
        if not isinstance(snapshot, _Snapshot) or snapshot.format_version != FORMAT_VERSION:
            raise ValueError("written by another version of the local stack")
        if snapshot.moto_version != moto.__version__:
            raise ValueError(f"written with moto {snapshot.moto_version}, this is moto {moto.__version__}")
        loaded = {service: pickle.loads(data) for service, data in snapshot.backends.items()}
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError) as exc:
        raise ValueError(f"cannot be read: {exc}") from exc
    with _DYNAMODB_LOCK:
        for service, (backends, region) in _backends().items():
            if service in loaded:
                backends[ACCOUNT_ID][region] = loaded[service]
    now_ms = time.time() * 1000
    sqs = _sqs()
    with _SQS_LOCK:
        for name, messages in snapshot.messages.items():
            queue = sqs.queues.get(name)
            if queue is None:  # a queue the configuration no longer has
                continue
            with queue._messages_lock:
                for message in messages:
                    if message.id in snapshot.in_flight:
                        message.visible_at = now_ms  # its attempt was cut short: delivered again now
                    queue._messages.append(message)
                queue._messages_lock.notify_all()
    return summarize(jobs_table, snapshot.in_flight)


def summarize(jobs_table: str, in_flight: set[str]) -> StateSummary:
    """What the running moto holds, counted for the messages printed at start and stop."""
    backends = {service: backends[ACCOUNT_ID][region] for service, (backends, region) in _backends().items()}
    with _DYNAMODB_LOCK:
        table = backends["dynamodb"].tables.get(jobs_table)
        items = list(table.all_items()) if table is not None else []
        jobs = sum(1 for item in items if "tenantKey" in item.attrs)
        keys = backends["dynamodb"].tables.get(KEYS_TABLE)
        api_keys = sum(1 for item in keys.all_items() if item.hash_key.value.startswith(ID_PREFIX)) if keys else 0
    with _SQS_LOCK:
        messages = [m for queue in _sqs().queues.values() for m in queue._messages]
    files = sum(len(bucket.keys) for bucket in backends["s3"].buckets.values())
    return StateSummary(
        jobs=jobs,
        messages=len(messages),
        in_flight=sum(1 for m in messages if m.id in in_flight),
        files=files,
        api_keys=api_keys,
    )
