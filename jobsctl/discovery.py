"""Where the running local stack is: ``make run`` writes its URL and first API key to ``.jobs-local.json``.

The CLI reads it when neither a flag nor ``JOBS_URL``/``JOBS_API_KEY`` names the API, so a stack started with another
``PORT`` or ``API_KEYS`` is found without configuration. The file is looked for at ``JOBS_LOCAL_FILE``, else in the
current directory and its parents, else in the checkout the CLI runs from; the stack removes it when it stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = ".jobs-local.json"
CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LocalStackInfo:
    url: str
    api_key: str
    # The local AWS (moto) endpoint and the keys table, for `jobs keys ...` against the local stack.
    aws_endpoint: str = ""
    keys_table: str = ""


def discovery_path() -> Path:
    """The file ``make run`` writes (``JOBS_LOCAL_FILE``, or ``.jobs-local.json`` in the checkout)."""
    return Path(os.environ.get("JOBS_LOCAL_FILE") or CHECKOUT / FILE_NAME)


def _candidates() -> list[Path]:
    if os.environ.get("JOBS_LOCAL_FILE"):
        return [Path(os.environ["JOBS_LOCAL_FILE"])]
    here = Path.cwd().resolve()
    return [directory / FILE_NAME for directory in (here, *here.parents)] + [CHECKOUT / FILE_NAME]


def write(path: Path, url: str, api_key: str, tenant: str, aws_endpoint: str = "", keys_table: str = "") -> None:
    data = {"url": url, "apiKey": api_key, "tenant": tenant, "pid": os.getpid()}
    if aws_endpoint:
        data |= {"awsEndpoint": aws_endpoint, "keysTable": keys_table}
    path.write_text(json.dumps(data, indent=2) + "\n")


def remove(path: Path) -> None:
    """Remove the file if this process wrote it (another stack may have started since)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        return


def find() -> LocalStackInfo | None:
    """The running local stack's URL and key, from the first readable discovery file."""
    for path in _candidates():
        try:
            data = json.loads(path.read_text())
            return LocalStackInfo(
                url=str(data["url"]),
                api_key=str(data["apiKey"]),
                aws_endpoint=str(data.get("awsEndpoint") or ""),
                keys_table=str(data.get("keysTable") or ""),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
