"""``jobs``: the command line for the jobs service.

API commands (enqueue, get, watch, list, stats, retry, cancel, pause, resume, enqueue-file) use the Python client
with a base URL and an API key (``--url``/``--key`` or ``JOBS_URL``/``JOBS_API_KEY``; without them, those of the
running ``make run``, found through the file it writes, see jobsctl/discovery.py). Operator commands (``dlq``, ``keys``,
``hooks``, ``worker``) use AWS credentials through boto3, which honours ``AWS_ENDPOINT_URL`` (``make run``'s moto
server).

Exit codes: 0 success, 1 an API/AWS error (its code and message are printed to stderr) or a job that did not
complete (``--wait``, ``watch``), 2 a usage error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from functions.models.bounds import (
    MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX,
    MAX_ATTEMPTS_MIN,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_SECONDS_MAX,
    TIMEOUT_SECONDS_MIN,
)
from jobsctl import discovery
from jobsctl.client import JobsClient
from jobsctl.errors import JobsApiError, JobsConnectionError
from jobsctl.models import STATUSES, Job, Schedule, Stats
from jobsctl.stopping import StopSignals, end_process

DEFAULT_URL = "http://localhost:3000"
DEFAULT_KEY = "local-dev-key"
STATUS_STYLES = {
    "scheduled": "blue",
    "waiting": "blue",
    "pending": "cyan",
    "processing": "yellow",
    "retrying": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "dim",
}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="jobs",
    help="Enqueue, inspect and operate background jobs (API commands need a base URL and an API key).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="The dead-letter queue (AWS credentials).", no_args_is_help=True)
keys_app = typer.Typer(
    help="Tenant API keys: create, import, list, rotate, revoke (the keys table, AWS credentials).",
    no_args_is_help=True,
)
hooks_app = typer.Typer(help="Inbound webhooks, POST /hooks/{type} (AWS credentials).", no_args_is_help=True)
hooks_secret_app = typer.Typer(
    help="A tenant's ingest secret: when set, webhooks must carry a valid X-Jobs-Signature.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(keys_app, name="keys")
app.add_typer(hooks_app, name="hooks")
schedules_app = typer.Typer(help="Recurring schedules: a job at each time of a cron expression.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
hooks_app.add_typer(hooks_secret_app, name="secret")


@dataclass
class Options:
    url: str
    key: str
    timeout: float

    def client(self, pool_size: int = 10) -> JobsClient:
        return JobsClient(self.url, self.key, timeout=self.timeout, pool_size=pool_size)


@app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="JOBS_URL", help=f"API base URL [default: make run's, else {DEFAULT_URL}]"),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", envvar="JOBS_API_KEY", help="API key [default: make run's first key]")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="HTTP timeout, seconds.")] = 30.0,
) -> None:
    # No URL given: the running local stack's, from the file make run writes (jobsctl/discovery.py); its key only
    # goes with its URL, never to an API named some other way.
    local = discovery.find() if url is None else None
    ctx.obj = Options(
        url=url or (local.url if local else DEFAULT_URL),
        key=key or (local.api_key if local else DEFAULT_KEY),
        timeout=timeout,
    )


@contextmanager
def _api_errors() -> Iterator[None]:
    try:
        yield
    except JobsApiError as exc:
        err.print(Text.assemble(("Error ", "bold red"), (exc.code, "bold"), f" ({exc.status}): {exc.message}"))
        if exc.details is not None:
            err.print(Text(json.dumps(exc.details, indent=2, default=str)))
        raise typer.Exit(1) from exc
    except JobsConnectionError as exc:
        err.print(Text.assemble(("Error ", "bold red"), ("CONNECTION", "bold"), f": {exc}"))
        raise typer.Exit(1) from exc


def _usage(message: str) -> typer.Exit:
    err.print(Text.assemble(("Usage error: ", "bold red"), message))
    return typer.Exit(2)


def _parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


def _dump(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", by_alias=True)


# --- rendering ---


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _clock(value: str | None) -> str:
    at = _parse_time(value)
    return at.strftime("%H:%M:%S.%f")[:-3] if at else (value or "")


def _gap(seconds: float) -> str:
    if seconds < 60:
        return f"+{seconds:.2f}s" if seconds < 10 else f"+{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"+{minutes}m{rest:02d}s" if minutes < 60 else f"+{minutes // 60}h{minutes % 60:02d}m"


def timeline(job: Job) -> Table:
    """Every history entry with its time, the gap since the previous one (backoff waits show here), attempt, error."""
    table = Table(title="Timeline", title_justify="left", expand=False, show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("at")
    table.add_column("gap", justify="right")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("error", overflow="fold")
    previous: datetime | None = None
    for index, entry in enumerate(job.history, 1):
        at = _parse_time(entry.at)
        gap = _gap((at - previous).total_seconds()) if at and previous else ""
        table.add_row(
            str(index),
            _clock(entry.at),
            gap,
            _status(entry.status),
            str(entry.attempt) if entry.attempt is not None else "",
            Text(entry.error or "", style="red"),
        )
        previous = at or previous
    return table


def job_view(job: Job) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("id", job.id)
    head.add_row("type", job.type)
    head.add_row("status", _status(job.status))
    head.add_row("attempts", f"{job.attempts} of {job.max_attempts}")
    head.add_row("priority", str(job.priority))
    if job.timeout_seconds is not None:
        head.add_row("timeout", f"{job.timeout_seconds} s per attempt")
    head.add_row("created", job.created_at)
    if job.run_at:
        head.add_row("run at", job.run_at)
    if job.depends_on:
        head.add_row("depends on", ", ".join(job.depends_on))
        head.add_row("waiting on", f"{job.waiting_on or 0} of {len(job.depends_on)}")
    if job.completed_at:
        head.add_row("finished", job.completed_at)
    if job.error:
        head.add_row("error", Text(job.error, style="red"))
    parts: list[Any] = [Panel(head, title=f"Job {job.id}", expand=False), timeline(job)]
    parts.append(Panel(json.dumps(job.payload, indent=2, default=str), title="payload", expand=False))
    if job.result is not None:
        parts.append(Panel(json.dumps(job.result, indent=2, default=str), title="result", expand=False))
    return Group(*parts)


def _summary_line(job: Job) -> Text:
    text = Text.assemble(job.id, " ", _status(job.status), f"  ({job.type}, attempt {job.attempts}/{job.max_attempts})")
    if job.error and job.status in ("failed", "retrying"):
        text.append(f"  {job.error}", style="red")
    return text


# --- API commands ---


@app.command()
def enqueue(
    ctx: typer.Context,
    type: Annotated[str, typer.Argument(help="The job type, e.g. simulate.")],
    payload: Annotated[str | None, typer.Option("--payload", "-p", help="The payload, a JSON object.")] = None,
    priority: Annotated[int | None, typer.Option(help=f"{PRIORITY_MIN}-{PRIORITY_MAX} ({PRIORITY_DEFAULT}).")] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option("--max-attempts", help=f"{MAX_ATTEMPTS_MIN}-{MAX_ATTEMPTS_MAX} ({MAX_ATTEMPTS_DEFAULT})."),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help=f"How long one attempt may run, {TIMEOUT_SECONDS_MIN}-{TIMEOUT_SECONDS_MAX} (the consumer's time).",
        ),
    ] = None,
    delay: Annotated[int | None, typer.Option("--delay", help="Delay in seconds.")] = None,
    run_at: Annotated[str | None, typer.Option("--run-at", help="ISO-8601 time with offset.")] = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on",
            metavar="ID",
            help="A job this one waits for (repeat for more): it runs once all are completed.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job is final; exit 1 unless completed.")] = False,
    wait_timeout: Annotated[float, typer.Option("--wait-timeout", help="Seconds --wait waits.")] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Enqueue a job."""
    body = _parse_json_object(payload, "--payload") if payload is not None else None
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        job = client.enqueue(
            type,
            body,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=timeout,
            delay_seconds=delay,
            run_at=run_at,
            depends_on=depends_on or None,
        )
        if not wait:
            _print_json(_dump(job)) if as_json else out.print(Text.assemble("Enqueued ", _summary_line(job)))
            return
        if not as_json:
            err.print(Text.assemble("Enqueued ", _summary_line(job)))
        try:
            with err.status(f"waiting for {job.id}…"):
                job = client.wait(job.id, timeout=wait_timeout)
        except TimeoutError as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(1) from exc
    _print_json(_dump(job)) if as_json else out.print(_summary_line(job))
    if job.status != "completed":
        raise typer.Exit(1)


@app.command()
def get(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Show a job: its fields, its timeline, payload and result."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        job = client.get(job_id)
    _print_json(_dump(job)) if as_json else out.print(job_view(job))


@app.command()
def watch(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    timeout: Annotated[float, typer.Option("--for", help="Give up after this many seconds.")] = 600.0,
) -> None:
    """Follow a job live until it is final; exit 1 unless it completed."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        job = client.get(job_id)
        with Live(job_view(job), console=out, refresh_per_second=8, transient=False) as live:
            try:
                job = client.wait(job_id, timeout=timeout, on_update=lambda j: live.update(job_view(j)))
            except TimeoutError as exc:
                err.print(Text(str(exc), style="red"))
                raise typer.Exit(1) from exc
    if job.status != "completed":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="|".join(STATUSES))] = None,
    type: Annotated[str | None, typer.Option("--type", help="Job type.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs (pages are followed).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List jobs, newest first."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        jobs = list(islice(client.list(status=status, type=type, page_size=min(limit, 100)), limit))
    if as_json:
        _print_json([_dump(job) for job in jobs])
        return
    if not out.is_terminal:  # piped: one plain tab-separated line per job, for cut, awk or a spreadsheet
        for job in jobs:
            fields = (job.id, job.type, job.status, f"{job.attempts}/{job.max_attempts}", str(job.priority))
            line = "\t".join((*fields, job.created_at, (job.error or "").replace("\t", " ").replace("\n", " ")))
            print(line)
        return
    table = Table(title=f"{len(jobs)} job(s)", title_justify="left")
    for name in ("id", "type", "status", "attempts", "priority", "created", "error"):
        table.add_column(name, overflow="fold", no_wrap=name == "id")
    for job in jobs:
        table.add_row(
            job.id,
            job.type,
            _status(job.status),
            f"{job.attempts}/{job.max_attempts}",
            str(job.priority),
            job.created_at,
            Text(job.error or "", style="red"),
        )
    out.print(table)


@app.command()
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Counts by status for your tenant, with completion and failure rates."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        result: Stats = client.stats()
    if as_json:
        _print_json(result.model_dump(mode="json", by_alias=True))
        return
    table = Table(title="Stats", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    for name in STATUSES:
        table.add_row(_status(name), str(getattr(result, name)))
    table.add_row("total", str(result.total))
    table.add_row("enqueued", str(result.enqueued))
    table.add_row("processed", str(result.processed))
    table.add_row("completion rate", f"{result.completion_rate:.1%}")
    table.add_row("failure rate", f"{result.failure_rate:.1%}")
    out.print(table)


@app.command()
def retry(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Run a failed or cancelled job again (attempts reset, history kept)."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        job = client.retry(job_id)
    out.print(Text.assemble("Retrying ", _summary_line(job)))


@app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="One job; or filter with --status/--type")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Cancel every job in this status (scheduled, pending, retrying, waiting)"),
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Cancel every cancellable job of this type")] = None,
) -> None:
    """Cancel a scheduled, pending, retrying or waiting job, or every one matching --status and/or --type."""
    options: Options = ctx.obj
    if job_id is not None and (status or job_type):
        raise _usage("give a job ID, or --status/--type to cancel every matching job, not both")
    if job_id is None and not (status or job_type):
        raise _usage("give a job ID, or --status and/or --type to cancel every matching job")
    with _api_errors(), options.client() as client:
        if job_id is None:
            count = client.cancel_matching(status=status, type=job_type)
            out.print(f"Cancelled {count} job{'' if count == 1 else 's'}")
            return
        job = client.cancel(job_id)
    out.print(Text.assemble("Cancelled ", _summary_line(job)))


@app.command()
def pause(ctx: typer.Context, job_type: Annotated[str, typer.Argument(metavar="TYPE")]) -> None:
    """Pause a job type for your tenant: its jobs are still accepted, and wait without using attempts."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        client.pause(job_type)
    out.print(f"Paused {job_type}: its jobs wait until `jobs resume {job_type}`")


@app.command()
def resume(ctx: typer.Context, job_type: Annotated[str, typer.Argument(metavar="TYPE")]) -> None:
    """Resume a paused job type: its waiting jobs start within seconds."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        client.resume(job_type)
    out.print(f"Resumed {job_type}")


@dataclass(frozen=True)
class LineOutcome:
    line: int
    job_id: str | None = None
    code: str | None = None
    message: str | None = None


def _enqueue_line(client: JobsClient, number: int, text: str) -> LineOutcome:
    try:
        spec = json.loads(text)
    except ValueError as exc:
        return LineOutcome(number, code="INVALID_JSON", message=str(exc))
    if not isinstance(spec, dict):
        return LineOutcome(number, code="INVALID_LINE", message="a line must be a JSON object with a type")
    try:
        job = client.enqueue_spec(spec)
    except JobsApiError as exc:
        return LineOutcome(number, code=exc.code, message=exc.message)
    except JobsConnectionError as exc:
        return LineOutcome(number, code="CONNECTION", message=str(exc))
    return LineOutcome(number, job_id=job.id)


@app.command("enqueue-file")
def enqueue_file(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON Lines: one job a line.")
    ],
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print accepted and failed lines as JSON.")] = False,
) -> None:
    """Enqueue one job per line ({"type", "payload", "priority", "maxAttempts", "delaySeconds", "runAt"}).

    Prints a summary of accepted and failed lines; exits 1 if any line failed.
    """
    lines = [
        (number, text) for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), 1) if text.strip()
    ]
    options: Options = ctx.obj
    outcomes: list[LineOutcome] = []
    progress = Progress(
        TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )
    with options.client(pool_size=concurrency) as client, progress, ThreadPoolExecutor(concurrency) as pool:
        task = progress.add_task("enqueue", total=len(lines))
        futures = [pool.submit(_enqueue_line, client, number, text) for number, text in lines]
        for future in as_completed(futures):
            outcomes.append(future.result())
            progress.advance(task)
    outcomes.sort(key=lambda o: o.line)
    accepted = [o for o in outcomes if o.job_id]
    failed = [o for o in outcomes if not o.job_id]
    if as_json:
        _print_json(
            {
                "accepted": [{"line": o.line, "id": o.job_id} for o in accepted],
                "failed": [{"line": o.line, "code": o.code, "error": o.message} for o in failed],
            }
        )
    else:
        out.print(f"Accepted {len(accepted)} of {len(outcomes)} line(s); {len(failed)} failed.")
    if failed:
        table = Table(title="Failed lines", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("code", style="bold red")
        table.add_column("error", overflow="fold")
        for outcome in failed:
            table.add_row(str(outcome.line), outcome.code or "", outcome.message or "")
        err.print(table)
        raise typer.Exit(1)


# --- operator commands (AWS credentials) ---

QueueUrl = Annotated[str | None, typer.Option("--queue-url", envvar="JOBS_QUEUE_URL", help="The job queue's URL.")]
DlqUrl = Annotated[str | None, typer.Option("--dlq-url", envvar="JOBS_DLQ_URL", help="The dead-letter queue's URL.")]
StackName = Annotated[
    str | None, typer.Option("--stack", help="Read queue URLs from this CloudFormation stack's outputs.")
]


@contextmanager
def _aws_errors() -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    from jobsctl.ops import OpsError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        err.print(
            Text.assemble(("Error ", "bold red"), (str(error.get("Code", "AWS")), "bold"), f": {error.get('Message')}")
        )
        raise typer.Exit(1) from exc
    except (BotoCoreError, OpsError) as exc:
        err.print(Text.assemble(("Error ", "bold red"), (type(exc).__name__, "bold"), f": {exc}"))
        raise typer.Exit(1) from exc


def _queues(queue_url: str | None, dlq_url: str | None, stack: str | None) -> tuple[Any, Any]:
    import boto3

    from jobsctl.ops import resolve_queues

    sqs = boto3.client("sqs")
    cloudformation = boto3.client("cloudformation") if stack else None
    return sqs, resolve_queues(sqs, queue_url=queue_url, dlq_url=dlq_url, stack=stack, cloudformation=cloudformation)


def _epoch_ms(value: int | None) -> str:
    return datetime.fromtimestamp(value / 1000).astimezone().isoformat(timespec="seconds") if value else ""


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="At most this many messages.")] = 10,
    queue_url: QueueUrl = None,
    dlq_url: DlqUrl = None,
    stack: StackName = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Peek at the dead-letter queue (messages are received, then made visible again at once)."""
    from jobsctl.ops import peek

    with _aws_errors():
        sqs, queues = _queues(queue_url, dlq_url, stack)
        letters = peek(sqs, queues.dlq_url, limit)
    if as_json:
        _print_json([letter.to_json() for letter in letters])
        return
    table = Table(title=f"{len(letters)} message(s) in {queues.dlq_url}", title_justify="left")
    for name in ("job id", "tenant", "reason", "receives", "sent", "message id"):
        table.add_column(name, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.job_id or Text(letter.body[:60], style="dim"),
            letter.tenant or "",
            Text(letter.reason or "", style="red"),
            str(letter.receive_count),
            _epoch_ms(letter.sent_at),
            letter.message_id,
        )
    out.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids or job ids to move back.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Move every message back.")] = False,
    queue_url: QueueUrl = None,
    dlq_url: DlqUrl = None,
    stack: StackName = None,
) -> None:
    """Move dead-lettered messages back to the job queue: --all, or the given message/job ids.

    --all uses SQS StartMessageMoveTask where available (AWS), else receive/send/delete (moto); ids always the
    latter. The consumer then runs a message only if its job can still run: a job recorded as failed is run
    again with `jobs retry ID` (the API), not by a redrive.
    """
    from jobsctl.ops import redrive_all, redrive_ids

    if all_ == bool(ids):
        raise _usage("give either --all or message/job ids, not both and not neither")
    with _aws_errors():
        sqs, queues = _queues(queue_url, dlq_url, stack)
        result = (
            redrive_all(sqs, queues.dlq_url, queues.queue_url)
            if all_
            else redrive_ids(sqs, queues.dlq_url, queues.queue_url, ids or [])
        )
    if result.method == "move-task":
        out.print(f"Started an SQS message move task: {result.task_handle}")
    else:
        out.print(f"Moved {result.moved} message(s) back to {queues.queue_url}.")
    if result.not_found:
        err.print(Text.assemble(("Error ", "bold red"), ("NOT_FOUND", "bold"), ": " + ", ".join(result.not_found)))
        raise typer.Exit(1)


KeysTable = Annotated[
    str | None,
    typer.Option("--table", envvar="JOBS_KEYS_TABLE", help="The keys table (default: --stack's, else make run's)."),
]
KeysStack = Annotated[str | None, typer.Option("--stack", help="Read the keys table from this stack's outputs.")]
ScopeOption = Annotated[str, typer.Option("--scope", help="full (every route) or read (GET only).")]
RateOption = Annotated[
    float | None, typer.Option("--rate-limit", help="Requests per second (default: the service's, 100).")
]
CACHE_TIME = "the authorizer's cache time (300 s on AWS)"
BurstOption = Annotated[int | None, typer.Option("--burst", help="Requests at once (default: twice the rate).")]


def _key_json(key: Any, value: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key.key_id,
        "tenant": key.tenant,
        "scope": key.scope,
        "name": key.name,
        "createdAt": key.created_at,
        "revokedAt": key.revoked_at,
        "rateLimit": key.rate_limit,
        "burstLimit": key.burst_limit,
    }
    return body | ({"value": value} if value is not None else {})


@contextmanager
def _key_errors() -> Iterator[None]:
    from functions.logic.keys import InvalidKeyCommand
    from functions.models.errors import StorageError

    with _aws_errors():
        try:
            yield
        except (InvalidKeyCommand, StorageError) as exc:
            err.print(Text.assemble(("Error ", "bold red"), ("KEYS", "bold"), f": {exc}"))
            raise typer.Exit(1) from exc


def _show_new_value(created: Any, as_json: bool, line: str) -> None:
    """A new key value, printed once: as JSON with the key, or the line and the value for people."""
    if as_json:
        _print_json(_key_json(created.key, created.value))
        return
    out.print(line)
    out.print(Text.assemble("Value: ", (created.value, "bold")), "  (store it now: it is not shown again)")


def _create_key(
    table: str | None,
    stack: str | None,
    tenant: str,
    scope: str,
    name: str | None,
    rate_limit: float | None,
    burst: int | None,
    value: str | None = None,
) -> Any:
    from functions.logic.keys import create_key
    from jobsctl.ops import keys_store

    with _key_errors():
        return create_key(
            keys_store(table, stack),
            tenant,
            scope=scope,
            name=name or "",
            rate_limit=rate_limit,
            burst_limit=burst,
            value=value,
        )


@keys_app.command("create")
def keys_create(
    tenant_argument: Annotated[str | None, typer.Argument(metavar="TENANT", help="Same as --tenant.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant the key acts for.")] = None,
    scope: ScopeOption = "full",
    name: Annotated[str | None, typer.Option("--name", help="A label (default: <tenant>-<scope>).")] = None,
    rate_limit: RateOption = None,
    burst: BurstOption = None,
    table: KeysTable = None,
    stack: KeysStack = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Create a key for a tenant and print its value (shown only this once; only its hash is stored)."""
    tenant = tenant or tenant_argument
    if not tenant:
        raise _usage("give the tenant: jobs keys create --tenant NAME")
    created = _create_key(table, stack, tenant, scope, name, rate_limit, burst)
    key = created.key
    _show_new_value(created, as_json, f"Created key {key.key_id} ({key.name}) for tenant {tenant}, scope {key.scope}")


@keys_app.command("import")
def keys_import(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for.")],
    value: Annotated[str, typer.Option("--value", help="The existing key's value (an API Gateway key's).")],
    scope: ScopeOption = "full",
    name: Annotated[str | None, typer.Option("--name", help="A label (default: <tenant>-<scope>).")] = None,
    rate_limit: RateOption = None,
    burst: BurstOption = None,
    table: KeysTable = None,
    stack: KeysStack = None,
) -> None:
    """Store an existing key value for a tenant, so its clients keep working after a migration."""
    created = _create_key(table, stack, tenant, scope, name, rate_limit, burst, value=value)
    out.print(f"Imported the key as {created.key.key_id} for tenant {tenant}, scope {created.key.scope}")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    table: KeysTable = None,
    stack: KeysStack = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The keys (never their values), by tenant: id, scope, name, rate limit, created, revoked."""
    from functions.logic.keys import list_keys
    from jobsctl.ops import keys_store

    with _key_errors():
        found = list_keys(keys_store(table, stack), tenant)
    if as_json:
        _print_json([_key_json(key) for key in found])
        return
    listing = Table(title=f"{len(found)} key(s)", title_justify="left")
    for column in ("ID", "TENANT", "SCOPE", "NAME", "RATE/S", "BURST", "CREATED", "REVOKED"):
        listing.add_column(column)
    for key in found:
        rate = f"{key.rate_limit:g}" if key.rate_limit is not None else "default"
        burst = str(key.burst_limit) if key.burst_limit is not None else "default"
        row = (key.key_id, key.tenant, key.scope, key.name, rate, burst, key.created_at, key.revoked_at or "")
        listing.add_row(*row)
    out.print(listing)


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (jobs keys list).")],
    table: KeysTable = None,
    stack: KeysStack = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Give a key a new value (same id, tenant, scope and limits) and print it; the old value stops working within
    the authorizer's cache time (300 s on AWS)."""
    from functions.logic.keys import rotate_key
    from jobsctl.ops import keys_store

    with _key_errors():
        rotated = rotate_key(keys_store(table, stack), key_id)
    tenant = rotated.key.tenant
    _show_new_value(
        rotated, as_json, f"Rotated key {key_id} of tenant {tenant}: the old value stops working within {CACHE_TIME}"
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (jobs keys list).")],
    table: KeysTable = None,
    stack: KeysStack = None,
) -> None:
    """Revoke a key; it stops working within the authorizer's cache time (300 s on AWS). It stays listed."""
    from functions.logic.keys import revoke_key
    from jobsctl.ops import keys_store

    with _key_errors():
        revoked = revoke_key(keys_store(table, stack), key_id)
    out.print(f"Revoked key {key_id} of tenant {revoked.tenant}: it stops working within {CACHE_TIME}")


TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant (its API keys' `tenant` tag).")]


@hooks_secret_app.command("set")
def hooks_secret_set(
    tenant: TenantOption,
    value: Annotated[
        str | None, typer.Option("--value", help="The secret (default: 32 random bytes, hex).", show_default=False)
    ] = None,
) -> None:
    """Create or replace the tenant's ingest secret and print it (give it to the sending service)."""
    import boto3

    from jobsctl.ops import set_ingest_secret

    with _aws_errors():
        secret = set_ingest_secret(boto3.client("secretsmanager"), tenant, value)
    out.print(f"{'Created' if secret.created else 'Replaced'} {secret.name}: webhooks of {tenant} must now be signed.")
    out.print(Text.assemble("Secret: ", (secret.value, "bold")))


@hooks_secret_app.command("show")
def hooks_secret_show(tenant: TenantOption) -> None:
    """Print the tenant's ingest secret (exit 1 if it has none: its webhooks are accepted unsigned)."""
    import boto3

    from jobsctl.ops import get_ingest_secret

    with _aws_errors():
        value = get_ingest_secret(boto3.client("secretsmanager"), tenant)
    if value is None:
        err.print(f"Tenant {tenant} has no ingest secret: its webhooks are accepted without a signature.")
        raise typer.Exit(1)
    out.print(value)


@hooks_secret_app.command("delete")
def hooks_secret_delete(tenant: TenantOption) -> None:
    """Remove the tenant's ingest secret: its webhooks are then accepted without a signature."""
    import boto3

    from jobsctl.ops import delete_ingest_secret

    with _aws_errors():
        deleted = delete_ingest_secret(boto3.client("secretsmanager"), tenant)
    out.print(f"Deleted the ingest secret of {tenant}." if deleted else f"Tenant {tenant} had no ingest secret.")


class WorkerLane(StrEnum):
    normal = "normal"
    high = "high"
    ordered = "ordered"


@app.command()
def worker(
    queue_url: QueueUrl = None,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Take the settings from this stack's deployed consumer function.")
    ] = None,
    from_config: Annotated[
        bool, typer.Option("--from-config", help="Use infra/config.py's names (what `make run` creates).")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Jobs run at once.")] = 4,
    batch_size: Annotated[int, typer.Option(min=1, max=10, help="Messages received at a time per slot.")] = 1,
    wait_seconds: Annotated[int, typer.Option(min=0, max=20, help="Long-poll wait of each receive.")] = 10,
    grace_seconds: Annotated[float, typer.Option(min=0, help="On SIGTERM/Ctrl-C, time for in-flight jobs.")] = 30.0,
    visibility_timeout: Annotated[
        int | None, typer.Option(min=1, help="Heartbeats keep a running job's message invisible this long (queue's).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--job-timeout", min=1, help="An attempt's lease, as the Lambda timeout.")
    ] = None,
    lane: Annotated[
        WorkerLane, typer.Option(help="The lane to consume: normal, high (priority) or ordered (groups, FIFO).")
    ] = WorkerLane.normal,
) -> None:
    """Run the consumer on this machine against the SQS queue (same logic as the Lambda consumer).

    Needs the functions' settings: JOBS_JOBS_TABLE, JOBS_STATS_TABLE, JOBS_QUEUE_URL, JOBS_DLQ_URL (and any other
    JOBS_* variable), from the environment, from --stack (the deployed consumer's configuration) or --from-config.
    """
    import os

    import boto3

    from jobsctl.ops import consumer_environment
    from jobsctl.runner import MissingSettings, WorkerOptions, build_worker, config_environment, worker_environment

    with _aws_errors():
        deployed = (
            consumer_environment(boto3.client("cloudformation"), boto3.client("lambda"), stack) if stack else None
        )
        configured = config_environment(boto3.client("sqs")) if from_config else None
        try:
            env = worker_environment(os.environ, deployed=deployed, from_config=configured, queue_url=queue_url)
            runner = build_worker(
                env,
                WorkerOptions(
                    concurrency=concurrency,
                    batch_size=batch_size,
                    wait_seconds=wait_seconds,
                    visibility_timeout=visibility_timeout,
                    timeout_seconds=timeout,
                    lane=lane.value,
                ),
            )
        except MissingSettings as exc:
            err.print(Text("The worker needs the consumer's settings; missing:", style="bold red"))
            for name in exc.missing:
                err.print(f"  {name}")
            err.print("Set them in the environment, or pass --stack NAME (deployed) or --from-config (make run).")
            raise typer.Exit(2) from exc
    signals = StopSignals()
    runner.start()
    err.print(f"Worker running on {runner.queue_url}: {concurrency} slot(s). Ctrl-C or SIGTERM to stop.")
    try:
        signals.wait()
    finally:
        err.print(f"Stopping: up to {grace_seconds:g}s for in-flight jobs…")
        began = time.monotonic()
        result = runner.shutdown(grace_seconds)
        signals.restore()
    err.print(
        f"Stopped in {time.monotonic() - began:.1f}s: {runner.invocations} job message(s) handled, "
        f"{runner.released} given back, {result['unfinished']} left to their lease."
    )
    if result["unfinished"]:
        end_process(0)  # not waiting at exit for the jobs left to their lease


# --- recurring schedules ---


def _schedule_line(schedule: Schedule) -> Text:
    state = "enabled" if schedule.enabled else "disabled"
    return Text.assemble(
        (schedule.name, "bold"),
        f" {schedule.id} '{schedule.cron}' {schedule.timezone}, {state}, next run {schedule.next_run_at or '-'}",
    )


def _schedule_job(
    job_type: str | None, payload: str | None, job: str | None, priority: int | None, max_attempts: int | None
) -> dict[str, Any] | None:
    """The job spec of ``create``/``update``: --job JSON whole, or --type with --payload and options."""
    if job is not None:
        if job_type or payload or priority is not None or max_attempts is not None:
            raise _usage("give --job, or --type with --payload/--priority/--max-attempts, not both")
        return _parse_json_object(job, "--job")
    if job_type is None:
        if payload or priority is not None or max_attempts is not None:
            raise _usage("--payload, --priority and --max-attempts need --type")
        return None
    spec: dict[str, Any] = {"type": job_type, "payload": _parse_json_object(payload, "--payload") if payload else {}}
    if priority is not None:
        spec["priority"] = priority
    if max_attempts is not None:
        spec["maxAttempts"] = max_attempts
    return spec


JobTypeOption = Annotated[str | None, typer.Option("--type", help="The job's type.")]
PayloadOption = Annotated[str | None, typer.Option("--payload", help="The job's payload, a JSON object.")]
JobOption = Annotated[str | None, typer.Option("--job", help="The whole job spec, as POST /jobs takes it (JSON).")]
PriorityOption = Annotated[int | None, typer.Option("--priority", help="The job's priority.")]
MaxAttemptsOption = Annotated[int | None, typer.Option("--max-attempts", help="The job's maxAttempts.")]
ScheduleIdArgument = Annotated[str, typer.Argument(metavar="ID")]


@schedules_app.command("list")
def schedules_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False
) -> None:
    """List your schedules, oldest first."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        found = list(client.schedules())
    if as_json:
        _print_json([schedule.model_dump(mode="json", by_alias=True) for schedule in found])
        return
    table = Table(title=f"{len(found)} schedule(s)", title_justify="left")
    for name in ("name", "id", "cron", "timezone", "enabled", "next run", "last run", "last job", "last error"):
        table.add_column(name, overflow="fold", no_wrap=name == "id")
    for schedule in found:
        table.add_row(
            schedule.name,
            schedule.id,
            schedule.cron,
            schedule.timezone,
            "yes" if schedule.enabled else "no",
            schedule.next_run_at or "-",
            schedule.last_run_at or "-",
            schedule.last_job_id or "-",
            Text(schedule.last_error or "", style="red"),
        )
    out.print(table)


@schedules_app.command("create")
def schedules_create(
    ctx: typer.Context,
    name_argument: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Unique per tenant: 1-64 of A-Z a-z 0-9 _ -")
    ] = None,
    cron_argument: Annotated[
        str | None, typer.Argument(metavar="CRON", help="Five fields, or @hourly, @daily, @weekly, @monthly")
    ] = None,
    name_option: Annotated[str | None, typer.Option("--name", help="NAME, as an option.")] = None,
    cron_option: Annotated[str | None, typer.Option("--cron", help="CRON, as an option.")] = None,
    job_type: JobTypeOption = None,
    payload: PayloadOption = None,
    job: JobOption = None,
    priority: PriorityOption = None,
    max_attempts: MaxAttemptsOption = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA time zone [default: UTC]")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
) -> None:
    """Create a schedule: its job is enqueued at each time CRON names (in --timezone)."""
    options: Options = ctx.obj
    name, cron = name_argument or name_option, cron_argument or cron_option
    if name is None or cron is None:
        raise _usage("give the schedule's NAME and CRON (or --name and --cron)")
    spec = _schedule_job(job_type, payload, job, priority, max_attempts)
    if spec is None:
        raise _usage("give the job: --type (with --payload) or --job")
    with _api_errors(), options.client() as client:
        schedule = client.create_schedule(name, cron, spec, timezone=timezone, enabled=not disabled)
    out.print(Text.assemble("Created ", _schedule_line(schedule)))


@schedules_app.command("update")
def schedules_update(
    ctx: typer.Context,
    schedule_id: ScheduleIdArgument,
    cron: Annotated[str | None, typer.Option("--cron", help="A new cron expression.")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="A new IANA time zone.")] = None,
    job_type: JobTypeOption = None,
    payload: PayloadOption = None,
    job: JobOption = None,
    priority: PriorityOption = None,
    max_attempts: MaxAttemptsOption = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="Enable or disable it.")] = None,
) -> None:
    """Change a schedule's cron, time zone, job or enabled; its next run is computed again from now."""
    options: Options = ctx.obj
    spec = _schedule_job(job_type, payload, job, priority, max_attempts)
    if cron is None and timezone is None and spec is None and enable is None:
        raise _usage("give something to change: --cron, --timezone, --type/--job, --enable or --disable")
    with _api_errors(), options.client() as client:
        schedule = client.update_schedule(schedule_id, cron=cron, timezone=timezone, job=spec, enabled=enable)
    out.print(Text.assemble("Updated ", _schedule_line(schedule)))


@schedules_app.command("delete")
def schedules_delete(ctx: typer.Context, schedule_id: ScheduleIdArgument) -> None:
    """Delete a schedule (the jobs it enqueued stay)."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        schedule = client.delete_schedule(schedule_id)
    out.print(Text.assemble("Deleted ", _schedule_line(schedule)))


@schedules_app.command("run")
def schedules_run(ctx: typer.Context, schedule_id: ScheduleIdArgument) -> None:
    """Enqueue a schedule's job now, outside its cadence."""
    options: Options = ctx.obj
    with _api_errors(), options.client() as client:
        job = client.run_schedule(schedule_id)
    out.print(Text.assemble("Enqueued ", _summary_line(job)))


def main() -> None:
    app(prog_name="jobs")


if __name__ == "__main__":
    main()
