"""bench/cost.py's ledger arithmetic on hand-made recordings: per-job lines, busy scaling to full batches, idle."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))  # after everything else: the bench scripts are plain modules

import cost as ledger  # noqa: E402
from _recording import Recording, Write  # noqa: E402

from functions.models import prices  # noqa: E402

SHAPE = ledger.Shape(
    api_type="rest",
    architecture="x86_64",
    memory={"api": 512, "read": 512, "consumer": 1024, "stats": 256, "sweeper": 512, "authorizer": 512},
    tracing=False,
    batch_size=10,
    log_retention_days=30,
    job_retention_days=30,
    sweeper_minutes=1,
)
NO_INIT = {"api": 0.0, "read": 0.0, "consumer": 0.0, "stats": 0.0}


def recording(jobs: int = 10, **overrides: Any) -> Recording:
    """``jobs`` message jobs, each: a POST (a 1 WRU put + 3 index entries, a send), a GET (1 RRU), one consumer
    record (2 WRU), all in consumer batches of one, three stream records in stats batches of one."""
    rec = Recording(jobs=jobs, batch_size=1, stream_batch_size=1)
    rec.invocations = Counter({"api": jobs, "read": jobs, "consumer": jobs, "stats": 3 * jobs})
    rec.estimated_ms = Counter({"api": 10.0 * jobs, "read": 5.0 * jobs, "consumer": 20.0 * jobs, "stats": 30.0 * jobs})
    rec.records, rec.stream_records = jobs, 3 * jobs
    rec.consumer_record_ms, rec.consumer_record_cpu_ms = 20.0 * jobs, 2.0 * jobs
    rec.writes = [Write("api", "jobs", f"p{i}", "put", 500, 1, False) for i in range(jobs)]
    rec.writes += [Write("api", "jobs/by-status", "s", "put", 100, 1, False) for _ in range(3 * jobs)]
    rec.writes += [Write("consumer", "jobs", f"p{i}", "put", 600, 2, True) for i in range(jobs)]
    rec.writes += [Write("stats", "job-stats", "c", "update", 100, 2, True) for _ in range(3 * jobs)]
    rec.read_units = Counter({"read": 1.0 * jobs, "stats": 1.0 * 3 * jobs})
    rec.sqs_chunks = Counter({"api SendMessage": jobs, "esm ReceiveMessage": jobs, "esm DeleteMessageBatch": jobs})
    rec.stats_batches = [[1, 2.0, 1.0, 0.0, 10.0, 100.0] for _ in range(3 * jobs)]
    rec.indexes = {"jobs": {"by-status": "tenantStatus,createdKey"}, "job-stats": {}}
    for name, value in overrides.items():
        setattr(rec, name, value)
    return rec


def line(book: ledger.Ledger, prefix: str) -> float:
    return sum(usd for label, _, usd in book.lines if label.startswith(prefix))


def test_light_prices_each_measured_call_once_per_job() -> None:
    book = ledger.price(recording(), SHAPE, "light", NO_INIT)
    assert line(book, "API Gateway REST (POST") == pytest.approx(prices.APIGW_REST_REQUEST)
    assert line(book, "DynamoDB api") == pytest.approx(4 * prices.DDB_WRITE_UNIT)  # the record + 3 index entries
    assert line(book, "SQS api") == pytest.approx(prices.SQS_REQUEST)
    assert line(book, "SQS event-source mapping") == pytest.approx(2 * prices.SQS_REQUEST)
    assert line(book, "DynamoDB stats") == pytest.approx(3 * 2 * prices.DDB_WRITE_UNIT + 3 * prices.DDB_READ_UNIT)
    # The consumer: an invocation a job, 20 ms at 1 GB
    assert line(book, "Lambda consumer: requests") == pytest.approx(prices.LAMBDA_REQUEST)
    assert line(book, "Lambda consumer: GB-s") == pytest.approx(0.020 * prices.LAMBDA_GB_SECOND["x86_64"])


def test_behind_the_api_is_the_enqueue_path_only() -> None:
    book = ledger.price(recording(), SHAPE, "light", NO_INIT)
    behind = book.total("api")
    enqueue = line(book, "API Gateway REST (POST") + line(book, "Lambda api") + line(book, "DynamoDB api")
    enqueue += line(book, "SQS api") + line(book, "CloudWatch Logs api")
    assert behind == pytest.approx(enqueue)
    assert book.total() > behind


def test_busy_divides_per_batch_costs_among_full_batches() -> None:
    light = ledger.price(recording(), SHAPE, "light", NO_INIT)
    busy = ledger.price(recording(), SHAPE, "busy", NO_INIT)
    # A tenth of a consumer invocation a job, one receive and one delete per ten messages
    assert line(busy, "Lambda consumer: requests") == pytest.approx(prices.LAMBDA_REQUEST / 10)
    assert line(busy, "SQS event-source mapping") == pytest.approx(2 * prices.SQS_REQUEST / 10)
    # The stats batches did the same work whatever their size: a full batch of 100 spreads it over 100 records
    assert line(busy, "DynamoDB stats") == pytest.approx(line(light, "DynamoDB stats") / 100)
    # Per-job calls stay per job
    assert line(busy, "DynamoDB api") == line(light, "DynamoDB api")


def test_a_stats_batch_is_fitted_as_per_batch_plus_per_record() -> None:
    # Batches of 1 and 3 records: 2 WRU a batch + 1 a record
    batches = [[1, 3.0, 0, 0, 0, 0], [3, 5.0, 0, 0, 0, 0], [1, 3.0, 0, 0, 0, 0]]
    rec = recording(stats_batches=batches)
    assert ledger.at_batch_size(rec, "wru", 100) == pytest.approx(102.0)
    assert ledger.at_batch_size(recording(stats_batches=[]), "wru", 100) == 0.0


def test_the_init_phase_is_billed_at_the_cold_start_share() -> None:
    warm = ledger.price(recording(), SHAPE, "light", NO_INIT)
    cold = ledger.price(recording(), SHAPE, "light", {**NO_INIT, "api": 1000.0})
    extra = ledger.LIGHT_COLD_SHARE * 1.0 * 0.5 * prices.LAMBDA_GB_SECOND["x86_64"]  # 1 s at 512 MB, 1 % of calls
    assert line(cold, "Lambda api: GB-s") - line(warm, "Lambda api: GB-s") == pytest.approx(extra)


def one_job_moving_between_index_entries() -> Recording:
    """One job: its record (500 B, then 700 B) and an index entry that it leaves for another (100 B each)."""
    rec = recording(jobs=1)
    rec.writes = [
        Write("api", "jobs", "p", "put", 500, 1, False),
        Write("api", "jobs/by-status", "s", "put", 100, 1, False),
        Write("consumer", "jobs", "p", "put", 700, 2, True),
        Write("consumer", "jobs/by-status", "s", "delete", 100, 1, False),
        Write("consumer", "jobs/by-status", "s2", "put", 100, 1, False),
    ]
    return rec


def test_stored_bytes_are_the_last_record_and_the_live_index_entries() -> None:
    rec = one_job_moving_between_index_entries()
    assert ledger.final_record_bytes(rec) == pytest.approx(700 + 100 + 200)


def test_idle_counts_the_stacks_monthly_items(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"alarms": 10, "dashboards": 1, "tables": 2, "kms_keys": 1, "secrets": 0}
    monkeypatch.setattr(ledger, "stack_counts", lambda: {**counts, "sqs_mappings": 2, "fifo_mappings": 1})
    rec = recording(invocations=Counter({"sweeper": 1}), estimated_ms=Counter({"sweeper": 10.0}))
    month = ledger.idle_month(rec, SHAPE)
    polls = ledger.IDLE_SQS_POLLERS * prices.SECONDS_PER_MONTH / ledger.SQS_LONG_POLL_SECONDS
    assert line(month, "CloudWatch alarms") == pytest.approx(1.0)
    assert line(month, "CloudWatch dashboards") == pytest.approx(3.0)
    assert line(month, "SQS event-source mappings, 2 standard") == pytest.approx(2 * polls * prices.SQS_REQUEST)
    assert line(month, "SQS event-source mappings, 1 FIFO") == pytest.approx(polls * prices.SQS_FIFO_REQUEST)
    assert line(month, "KMS keys") == pytest.approx(1.0)
    assert month.total() > 5.0


def test_the_synthesized_stack_decides_the_shape() -> None:
    # Given a synthesized stack with an HTTP API, an authorizer, arm64 functions and tracing on one of them
    functions = {
        "ApiAuthorizerFunction1": {"memory": 256, "architecture": "arm64", "traced": False},
        "ApiFunction2": {"memory": 384, "architecture": "arm64", "traced": True},
        "JobQueueConsumerFunction3": {"memory": 768, "architecture": "arm64", "traced": False},
    }
    shape = ledger.Shape(**{**vars(SHAPE), "memory": dict(SHAPE.memory)})
    shaped = ledger.apply_synthesized(shape, {"http_api": 1, "functions": functions, "xray_fixed_rate": 0.01})
    # Then its prices follow it
    assert (shaped.api_type, shaped.architecture, shaped.tracing, shaped.sample_rate) == ("http", "arm64", True, 0.01)
    assert (shaped.memory["api"], shaped.memory["authorizer"], shaped.memory["consumer"]) == (384, 256, 768)
    book = ledger.price(recording(), shaped, "busy", NO_INIT)
    assert line(book, "API Gateway HTTP (POST") == pytest.approx(prices.APIGW_HTTP_REQUEST)
    assert line(book, "X-Ray") > 0


def test_platform_lines_are_priced_only_for_functions_that_log_them() -> None:
    # Given the same stack synthesized with Lambda's system logs at INFO, then at WARN for every function
    def synthesized(platform_lines: bool) -> ledger.Shape:
        functions = {
            "ApiFunction1": {
                "memory": 512,
                "architecture": "x86_64",
                "traced": False,
                "platform_lines": platform_lines,
            },
            "JobQueueConsumerFunction2": {"memory": 1024, "architecture": "x86_64", "platform_lines": platform_lines},
            "StatsFunction3": {"memory": 256, "architecture": "x86_64", "platform_lines": platform_lines},
        }
        return ledger.apply_synthesized(
            ledger.Shape(**{**vars(SHAPE), "memory": dict(SHAPE.memory)}), {"functions": functions}
        )

    info, warn = (ledger.price(recording(), synthesized(lines), "light", NO_INIT) for lines in (True, False))
    # Then at WARN the consumer's logs are its handler's bytes alone; at INFO, plus START/END/REPORT per invocation
    per_gb = prices.LOGS_INGEST_GB + prices.LOGS_STORAGE_GB_MONTH * SHAPE.log_retention_days / 30
    platform = ledger.PLATFORM_LOG_BYTES / prices.GB * per_gb
    assert line(info, "CloudWatch Logs consumer") - line(warn, "CloudWatch Logs consumer") == pytest.approx(platform)
    assert line(info, "CloudWatch Logs stats") - line(warn, "CloudWatch Logs stats") == pytest.approx(3 * platform)
    assert "0 platform" in next(label for label, _, _ in warn.lines if label.startswith("CloudWatch Logs api"))


def test_the_access_log_line_is_the_synthesized_format_filled_in() -> None:
    # Given a format as the stack's: JSON of API Gateway's variables
    lean = '{"requestId":"$context.requestId","path":"$context.path","error":"$context.error.message"}'
    spaced = lean.replace(",", ", ").replace('":"', '": "')
    # When a POST /jobs line is measured
    measured = ledger.access_log_bytes(lean, "api")
    # Then it is the line API Gateway writes (an empty variable as "-"), with its newline; spaces cost bytes too
    request_id = ledger.ACCESS_LOG_VALUES["$context.requestId"]
    expected = '{"requestId":"' + request_id + '","path":"/jobs","error":"-"}'
    assert measured == len(expected) + 1
    assert ledger.access_log_bytes(spaced, "api") == measured + 5  # two after commas, three after colons
    assert ledger.access_log_bytes("", "api") == ledger.ACCESS_LOG_BYTES  # no format known: the estimate


def floor_of(rec: Recording, mode: str) -> ledger.Ledger:
    return ledger.floor(ledger.price(rec, SHAPE, mode, NO_INIT), rec, SHAPE, mode)


def test_the_floor_keeps_the_records_own_writes_and_sends_from_the_stream() -> None:
    # Given jobs whose create also writes three index entries, and whose stats take two units a stream record
    rec = recording()
    # When the floor is taken under light and busy traffic
    light, busy = (floor_of(rec, mode) for mode in ("light", "busy"))
    # Then the create is the record's own write, the run keeps its write (a transaction: 2 units)
    assert line(light, "DynamoDB api") == pytest.approx(prices.DDB_WRITE_UNIT)
    assert line(light, "DynamoDB consumer") == pytest.approx(2 * prices.DDB_WRITE_UNIT)
    # And the send leaves the enqueue path: one request a job light, a tenth of one busy (batches of ten)
    assert line(light, "SQS api") == 0
    assert line(light, "SQS dispatch") == pytest.approx(prices.SQS_REQUEST)
    assert line(busy, "SQS dispatch") == pytest.approx(prices.SQS_REQUEST / 10)
    assert light.total("api") < ledger.price(rec, SHAPE, "light", NO_INIT).total("api")
    # And light stats pay one unit a stream record; busy ones stay as measured
    assert line(light, "DynamoDB stats: 3.00 WRU") == pytest.approx(3 * prices.DDB_WRITE_UNIT)
    measured_busy = ledger.price(rec, SHAPE, "busy", NO_INIT)
    stats_writes = next(
        usd for label, _, usd in measured_busy.lines if label.startswith("DynamoDB stats") and "WRU" in label
    )
    assert line(busy, "DynamoDB stats: full batches") == pytest.approx(stats_writes)


def test_the_floor_stores_the_record_alone_and_is_never_above_the_ledger() -> None:
    # Given a job that keeps 800 B of record and 200 B of index entry (1,000 B stored, as measured)
    rec = one_job_moving_between_index_entries()
    for mode in ("busy", "light"):
        measured = ledger.price(rec, SHAPE, mode, NO_INIT)
        low = ledger.floor(measured, rec, SHAPE, mode)
        assert low.total() < measured.total()
        assert "800 B" in next(label for label, _, _ in low.lines if label.startswith("DynamoDB storage"))
        assert line(low, "DynamoDB storage") == pytest.approx(line(measured, "DynamoDB storage") * 800 / 1000)


def test_the_floors_fixed_lines_are_the_requests_and_writes_every_shape_makes() -> None:
    book = floor_of(recording(), "light")
    fixed = {label.split(":")[0].split(" (")[0] for label in book.fixed}
    assert fixed == {
        "API Gateway REST",
        "Lambda api",
        "Lambda read",
        "Lambda consumer",
        "Lambda stats",
        "DynamoDB api",
        "DynamoDB consumer",
        "DynamoDB stats",
        "DynamoDB read",
        "SQS dispatch from the jobs table's stream",
        "SQS event-source mapping",
    }
    # Duration, logs and storage are levers, not fixed
    assert not any("GB-s" in label or "Logs" in label or "storage" in label for label in book.fixed)
    assert 0 < book.fixed_total() < book.total()


def test_each_target_is_judged_against_the_floor_and_its_fixed_lines(capsys: pytest.CaptureFixture[str]) -> None:
    # Given ledgers made of a fixed line, a behind-the-API line (fixed) and a lever
    def book(fixed: float, lever: float, behind: float = 0.0) -> ledger.Ledger:
        made = ledger.Ledger()
        made.add("fixed", (fixed - behind) / 1e6, "run", fixed=True)
        made.add("behind", behind / 1e6, "api", fixed=True)
        made.add("lever", lever / 1e6, "run")
        return made

    # When the busy floor is $6 with $4.50 fixed and the light floor $9 with $8.50 fixed
    ledger.report_floor({"busy": book(4.5, 1.5, behind=2.0), "light": book(8.5, 0.5)})
    out = capsys.readouterr().out
    # Then light is below the floor, busy needs $1.00 of the $1.50 of levers, behind the API is within reach
    assert "floor light     9.00  (fixed 8.50)  target <= 8.00: below the floor" in out
    busy = "floor busy      6.00  (fixed 4.50)  target <= 5.00: only by cutting duration, storage and logs"
    assert f"{busy} by $1.00 of $1.50" in out
    assert "floor behind    2.00  (fixed 2.00)  target <= 2.50: within the floor's reach" in out
