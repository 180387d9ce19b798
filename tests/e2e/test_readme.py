"""The documentation's examples work as written against the local stack (only the ports and the key are swapped):
the README's tour, the files walk-through (docs/files.md) and the flow-control examples (docs/flow-control.md).
Each test fails when the example it runs is gone, changed beyond recognition, or answers differently."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FIRST_KEY, ROOT, LocalStackProcess

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
FILES_PAGE = ROOT / "docs" / "files.md"
FLOW_CONTROL_PAGE = ROOT / "docs" / "flow-control.md"


def bash_blocks(page: Path) -> list[str]:
    """The page's ```bash blocks, in order, dedented (a block may be indented under a list item)."""
    return [textwrap.dedent(block) for block in re.findall(r"^ *```bash\n(.*?)^ *```", page.read_text(), re.S | re.M)]


def block_starting(page: Path, first_line: str) -> str:
    """The one bash block of ``page`` whose first line is ``first_line``."""
    found = [block for block in bash_blocks(page) if block.lstrip().startswith(first_line)]
    assert len(found) == 1, f"{page.name}: expected one bash block starting {first_line!r}, found {len(found)}"
    return found[0]


def blocks_containing(page: Path, *markers: str) -> str:
    """The bash blocks of ``page`` that contain one of ``markers``, in page order: one per marker."""
    chosen = [block for block in bash_blocks(page) if any(marker in block for marker in markers)]
    assert len(chosen) == len(markers), f"{page.name}: an example this test runs is gone"
    return "\n".join(chosen)


def run_example(script: str, stack: LocalStackProcess, path: Path) -> str:
    """Run ``script`` with bash -euo pipefail from the repository's root, as a reader would, against ``stack``;
    its output, once every command succeeded."""
    script = (
        script.replace("http://localhost:3000", stack.url)
        .replace("http://localhost:4566", stack.moto_url)
        .replace("local-dev-key", FIRST_KEY)
    )
    path.write_text("set -euo pipefail\n" + script)
    result = subprocess.run(["bash", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects printed in ``text``, in order (curl prints no newline after a body, so one line may hold
    several, and headers between them)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            found, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(found, dict):
            yield found
        start = text.find("{", end)


def test_the_readme_tour_runs_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the README's tour block, pointed at this test's stack
    script = block_starting(README, "# Health")
    # When it runs
    out = run_example(script, stack, tmp_path / "tour.sh")
    # Then every command succeeded and the answers are the documented ones
    assert '"status":"ok"' in out
    assert "HTTP/1.1 202" in out and "Location: /jobs/" in out
    # (the fetch job fails each attempt with probability 0.35: it completed, or failed all five)
    assert '"result":"Fetched https://example.com (simulated)"' in out or '"attempts":5' in out
    assert '"status":"failed"' in out and '"attempts":2' in out
    assert '"status":"cancelled"' in out
    assert '"queued":true' in out
    assert '"dependsOn":["' in out and '"nextRunAt":"' in out and '"types":{' in out
    assert '"code":"INVALID_TYPE"' in out and '"code":"INVALID_PAYLOAD"' in out and '"code":"FORBIDDEN"' in out
    # And the job with a runAt is scheduled for a day later, whatever the day the tour runs (no date that goes stale)
    scheduled = next(record for record in json_objects(out) if record.get("payload") == {"message": "see you tomorrow"})
    ahead = datetime.fromisoformat(scheduled["runAt"]) - datetime.fromisoformat(scheduled["createdAt"])
    assert scheduled["status"] == "scheduled" and timedelta(hours=23) < ahead <= timedelta(days=1), scheduled


def test_the_readme_dead_letter_queue_example_runs_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the README's look at the DLQ through the local moto server, pointed at this test's stack
    script = blocks_containing(README, "QueueName='jobs-dlq'")
    # When it runs
    out = run_example(script, stack, tmp_path / "dlq.sh")
    # Then it printed the queue's depth
    assert re.search(r"\{'ApproximateNumberOfMessages': '\d+'\}", out), out


def test_the_files_walk_through_runs_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the files page's walk-through (the block starting "# Files"), pointed at this test's stack
    script = block_starting(FILES_PAGE, "# Files")
    # When it runs from the repository root, as a reader would
    out = run_example(script, stack, tmp_path / "files.sh")
    # Then every command succeeded with the documented answers
    assert '"key":"uploads/e2e-a/' in out and '"method":"PUT"' in out
    assert '"contentType":"image/png"' in out and "PNG L (256, 256)" in out
    assert '{"result":"no file"}' in out
    assert '"code":"INVALID_UPLOAD"' in out
    assert "completed {'namespace': 'demo', 'written': 1000" in out and out.rstrip().endswith(" 1000")


def test_the_flow_control_examples_run_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the idempotency, progress, long-poll, priority and ordered-group examples, pointed at this test's stack
    script = blocks_containing(
        FLOW_CONTROL_PAGE, "Idempotency-Key: order-1042", '"steps": 10', "wait=20", "urgent.png", "etl-2024-06-01"
    )
    # The idempotent request is sent twice, as its comment says
    assert "\n# the same command again" in script, "the idempotency example no longer says to repeat itself"
    script = script.replace("# the same command again", script.split("\n# the same command again")[0] + "\n#")

    # When they run
    out = run_example(script, stack, tmp_path / "flow.sh")

    # Then each worked: 202 then 200 for the key, progress mid-run, the long-poll saw the job completed
    assert " 202" in out and " 200" in out
    assert '"message":"resize step' in out
    assert "\ncompleted\n" in out
    assert "urgent.png" in out
    # And the group's three jobs ran one after another, in enqueue order (the listing is newest first)
    steps = re.findall(r"(extract|transform|load) started (\S+) completed (\S+)$", out, flags=re.M)
    assert [name for name, _, _ in reversed(steps)] == ["extract", "transform", "load"], out[-600:]
    ordered = list(reversed(steps))
    assert all(ordered[i][2] <= ordered[i + 1][1] for i in range(2)), ordered
