"""The bounds and defaults of a job's options, stated once: the API's request models, the CLI, the client and the
configuration import them from here."""

from __future__ import annotations

PRIORITY_MIN = 1
PRIORITY_MAX = 10
PRIORITY_DEFAULT = 5
# Jobs at or above this priority go to the high lane (``Settings.high_priority_threshold`` defaults to it).
HIGH_PRIORITY_THRESHOLD_DEFAULT = 8

MAX_ATTEMPTS_MIN = 1
MAX_ATTEMPTS_MAX = 25
MAX_ATTEMPTS_DEFAULT = 3

# ``timeoutSeconds``: how long one attempt may run (without it, as long as the consumer's invocation has left).
TIMEOUT_SECONDS_MIN = 1
TIMEOUT_SECONDS_MAX = 900

# ``delaySeconds`` and ``runAt`` may put a job at most a year ahead.
DELAY_SECONDS_MAX = 31_536_000

# ``GET /jobs``: the page size.
LIST_LIMIT_MIN = 1
LIST_LIMIT_MAX = 100
LIST_LIMIT_DEFAULT = 50

# ``GET /stats/throughput``: how many minutes.
THROUGHPUT_MINUTES_MIN = 1
THROUGHPUT_MINUTES_MAX = 1440
THROUGHPUT_MINUTES_DEFAULT = 60

# ``GET /stats/cost``: how many minutes.
COST_MINUTES_MIN = 1
COST_MINUTES_MAX = 1440
COST_MINUTES_DEFAULT = 60

GROUP_ID_MAX_LENGTH = 128
IDEMPOTENCY_KEY_MAX_LENGTH = 255
CALLBACK_URL_MAX_LENGTH = 2048
# Printable ASCII without spaces: safe in logs, headers and SQS attributes (group ids, idempotency keys).
PRINTABLE_PATTERN = r"^[\x21-\x7e]+$"

# What str.strip() removes (str.isspace()), written out: "\s" means something else to Python's re, to the ECMA-262
# regexes JSON Schema tools use and to pydantic's Rust regexes (\x1c-\x1f and \x85 are space to some, not others).
WHITESPACE_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Not blank: some character that str.strip() keeps.
NOT_BLANK_PATTERN = rf"[^{WHITESPACE_CLASS}]"

MESSAGE_MAX_LENGTH = 500
MAX_BATCH_JOBS = 100
# dependsOn: how many jobs one job may wait for.
DEPENDS_ON_MAX = 100
# Job ids are UUIDs (36 characters); a longer one names no job and is not looked up.
JOB_ID_MAX_LENGTH = 64
# A request body (POST /jobs, /jobs/batch, /enqueue, /uploads) up to this size is accepted: 5 MiB.
BODY_MAX_BYTES_DEFAULT = 5 * 1024 * 1024
# An upload is at most this large by default (``Settings.upload_max_bytes``): 10 MiB.
UPLOAD_MAX_BYTES_DEFAULT = 10 * 1024 * 1024
# A webhook's raw body (POST /hooks/{type}) is at most 256 KiB.
HOOK_BODY_MAX_BYTES = 256 * 1024
# An http(s) URL (a callbackUrl, a fetch, crawl or webhook-delivery URL): a host name or IPv4 address, a port from 1
# to 65535, then printable ASCII. Stricter than what parses as a URL, so that the document states the whole rule.
HTTP_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~-]+"
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
    r"([/?#][!-~]*)?$"
)
