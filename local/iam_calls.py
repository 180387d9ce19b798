"""Records the AWS calls the service's functions make, as IAM sees them: one JSON line per distinct
(function entry, IAM action, resource ARN), for ``tests/iam`` to check against each function's role policy.

Switched on by ``JOBS_IAM_RECORD_DIR`` (the local stack and the test suites call ``record_from_env``): every
process writes its own file there (pytest-xdist workers and local stacks in parallel), merged when checked.

Which function makes a call is read from the call stack: the innermost frame of a handler module
(``functions.handlers.<module>``, the modules the CDK stack's ``Handler`` properties name) is the function being
invoked, and the SQS record or stream event it handles names its event source (a consumer function is the one whose
event source mapping reads that queue). Calls made outside any handler (test set-up, the local event sources'
polling, which Lambda does) are not recorded. A presigned URL acts with its signer's permissions, so presigning
records the operation it signs, exactly as a call.
"""

from __future__ import annotations

import concurrent.futures.thread
import contextvars
import json
import os
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.session

from local.aws import ACCOUNT_ID

RECORD_DIR_VARIABLE = "JOBS_IAM_RECORD_DIR"
# The modules whose functions are Lambda entry points (and their helpers of the same module, such as the consumer's
# record handler that runs on the batch's record threads, or the aggregator's ``apply_event``).
HANDLER_MODULES = frozenset(
    {
        "functions.handlers.api",
        "functions.handlers.authorizer",
        "functions.handlers.consumer",
        "functions.handlers.sweeper",
        "functions.handlers.stats_stream",
    }
)
# Secrets Manager appends six random characters to a secret's name in its ARN.
SECRET_SUFFIX = "-xxxxxx"


def record_from_env() -> None:
    """Start recording into ``$JOBS_IAM_RECORD_DIR`` if it is set (idempotent)."""
    directory = os.environ.get(RECORD_DIR_VARIABLE)
    if directory:
        install(Path(directory))


class _Recorder:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"calls-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._seen: set[tuple[tuple[str, str], ...]] = set()
        self._lock = threading.Lock()

    def write(self, entry: dict[str, str]) -> None:
        key = tuple(sorted(entry.items()))
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            with self.path.open("a") as out:
                out.write(json.dumps(entry, sort_keys=True) + "\n")


_recorder: _Recorder | None = None
_create_client = botocore.session.Session.create_client
_submit = ThreadPoolExecutor.submit
_start = threading.Thread.start
_pool_worker = concurrent.futures.thread._worker
# The invocation a pool thread works for (a listing's shard queries run on threads of their own): its stack holds
# no handler frame, so the one that submitted the work is carried over.
_submitted_by: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("submitted_by", default=None)


def install(directory: Path) -> None:
    global _recorder
    if _recorder is not None:
        return
    _recorder = _Recorder(directory)

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        made = _create_client(session, *args, **kwargs)
        # Emitted for API calls and presigned URLs alike, with the operation's parameters.
        made.meta.events.register("before-parameter-build", _hook_for(made.meta.region_name))
        return made

    botocore.session.Session.create_client = create_client

    def submit(pool: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        caller = invoking_function(sys._getframe(1))
        if caller is None:
            return _submit(pool, fn, *args, **kwargs)

        def run(*run_args: Any, **run_kwargs: Any) -> Any:
            token = _submitted_by.set(caller)
            try:
                return fn(*run_args, **run_kwargs)
            finally:
                _submitted_by.reset(token)

        return _submit(pool, run, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]

    def start(thread: threading.Thread) -> None:
        # A thread of its own (a job's attempt, run with a timeout) works for the invocation that started it. A
        # pool's worker thread is left out: what it runs is credited per submitted call (above).
        if getattr(thread, "_target", None) is not _pool_worker:
            thread._invoked_by = invoking_function(sys._getframe(1))  # type: ignore[attr-defined]
        _start(thread)

    threading.Thread.start = start  # type: ignore[method-assign,assignment]


def _hook_for(region: str) -> Any:
    def before_parameter_build(params: dict[str, Any], model: Any, **_: Any) -> None:
        caller = invoking_function(sys._getframe(1))
        if caller is None or _recorder is None:
            return
        service = model.service_model.signing_name
        operation = model.name
        for action, resource in iam_requests(service, operation, params, region):
            _recorder.write({**caller, "operation": f"{service}:{operation}", "action": action, "resource": resource})

    return before_parameter_build


def invoking_function(frame: FrameType | None) -> dict[str, str] | None:
    """The handler module running on this thread (innermost first), with the event source it was invoked for; on a
    pool thread without one, the invocation that submitted the work; on a thread of its own, the one that started it."""
    module = ""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not module and name in HANDLER_MODULES:
            module = name
        if module and name == module:
            # The event (or SQS record) is a local of the entry point or of the record handler, further out.
            source = _event_source(frame.f_locals)
            if source:
                return {"module": module, "event_source": source}
        frame = frame.f_back
    if module:
        return {"module": module}
    return _submitted_by.get() or getattr(threading.current_thread(), "_invoked_by", None)


def _event_source(local_names: dict[str, Any]) -> str:
    record = local_names.get("record")
    source = getattr(record, "event_source_arn", None)
    if isinstance(source, str):
        return source
    event = local_names.get("event")
    if isinstance(event, dict):
        records = event.get("Records") or []
        if records and isinstance(records[0], dict):
            return str(records[0].get("eventSourceARN", ""))
    return ""


def iam_requests(service: str, operation: str, params: dict[str, Any], region: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorises for one call; ``<service>:?<Operation>`` when unknown."""
    if service == "dynamodb":
        return _dynamodb(operation, params, region)
    if service == "sqs":
        return _sqs(operation, params, region)
    if service == "s3":
        return _s3(operation, params)
    if service == "secretsmanager":
        name = str(params.get("SecretId") or params.get("Name") or "")
        arn = name if name.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{name}"
        return [(f"secretsmanager:{operation}", arn if name.startswith("arn:") else arn + SECRET_SUFFIX)]
    if service == "ses" and operation in {"SendEmail", "SendRawEmail"}:
        sender = str(params.get("Source", "")).rpartition("<")[2].rstrip(">")
        return [(f"ses:{operation}", f"arn:aws:ses:{region}:{ACCOUNT_ID}:identity/{sender}")]
    if service == "bedrock" and operation in {
        "InvokeModel",
        "Converse",
        "InvokeModelWithResponseStream",
        "ConverseStream",
    }:
        action = "bedrock:InvokeModelWithResponseStream" if "Stream" in operation else "bedrock:InvokeModel"
        model = str(params.get("modelId", ""))
        arn = model if model.startswith("arn:") else f"arn:aws:bedrock:{region}::foundation-model/{model}"
        return [(action, arn)]
    if service == "apigateway" and operation == "GetApiKey":
        return [("apigateway:GET", f"arn:aws:apigateway:{region}::/apikeys/{params.get('apiKey', '')}")]
    return [(f"{service}:?{operation}", "*")]


_BEDROCK_OPERATIONS = {"InvokeModel", "Converse", "InvokeModelWithResponseStream", "ConverseStream"}
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb(operation: str, params: dict[str, Any], region: str) -> list[tuple[str, str]]:
    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"

    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return [(f"dynamodb:{operation}", table(name)) for name in params.get("RequestItems", {})]
    if operation in {"TransactWriteItems", "TransactGetItems"}:
        requests = []
        for item in params.get("TransactItems", []):
            kind, body = next(iter(item.items()))
            requests.append((f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(body["TableName"])))
        return requests
    arn = table(str(params.get("TableName", "")))
    if params.get("IndexName"):
        arn += f"/index/{params['IndexName']}"
    return [(f"dynamodb:{operation}", arn)]


_SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(operation: str, params: dict[str, Any], region: str) -> list[tuple[str, str]]:
    name = str(params.get("QueueName") or str(params.get("QueueUrl", "")).rstrip("/").rpartition("/")[2])
    return [(f"sqs:{_SQS_ACTIONS.get(operation, operation)}", f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}")]


_S3_OBJECT_ACTIONS = {
    "GetObject": "GetObject",
    "HeadObject": "GetObject",
    "PutObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "DeleteObject": "DeleteObject",
}


def _s3(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    bucket = f"arn:aws:s3:::{params.get('Bucket', '')}"
    if operation in _S3_OBJECT_ACTIONS:
        return [(f"s3:{_S3_OBJECT_ACTIONS[operation]}", f"{bucket}/{params.get('Key', '')}")]
    if operation in {"ListObjectsV2", "ListObjects", "HeadBucket"}:
        return [("s3:ListBucket", bucket)]
    if operation == "CopyObject":
        source = params.get("CopySource")
        source_arn = (
            f"arn:aws:s3:::{source['Bucket']}/{source['Key']}"
            if isinstance(source, dict)
            else f"arn:aws:s3:::{str(source).lstrip('/')}"
        )
        return [("s3:PutObject", f"{bucket}/{params.get('Key', '')}"), ("s3:GetObject", source_arn)]
    return [(f"s3:?{operation}", bucket)]
