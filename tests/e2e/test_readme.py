"""The README's curl examples work as written against the local stack (only the port and key are swapped)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import FIRST_KEY, ROOT, LocalStackProcess

pytestmark = pytest.mark.e2e


def readme_curl_script() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    curl_block = next(block for block in blocks if block.lstrip().startswith("# Health"))
    return curl_block


def test_the_readme_examples_run_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the README's example block, pointed at this test's stack
    script = readme_curl_script().replace("http://localhost:3000", stack.url).replace("local-dev-key", FIRST_KEY)
    path = tmp_path / "examples.sh"
    path.write_text("set -euo pipefail\n" + script)
    # When
    result = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=120)
    # Then every command succeeded and the answers are the documented ones
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert '"status":"ok"' in out
    assert "HTTP/1.1 202" in out and "Location: /jobs/" in out
    assert '"result":"Fetched https://example.com (simulated)"' in out or '"status":"retrying"' in out
    assert '"status":"failed"' in out and '"attempts":2' in out
    assert '"status":"cancelled"' in out
    assert '"queued":true' in out
    assert '"code":"INVALID_TYPE"' in out and '"code":"INVALID_PAYLOAD"' in out and '"code":"FORBIDDEN"' in out


def flow_control_blocks(*markers: str) -> str:
    """The Flow control section's bash examples that contain one of ``markers``, in README order."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Flow control") : readme.index("## Architecture")]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    chosen = [block for block in blocks if any(marker in block for marker in markers)]
    assert len(chosen) == len(markers), "a README example this test runs is gone"
    return "\n".join(chosen)


def test_the_flow_control_examples_run_as_written(stack: LocalStackProcess, tmp_path: Path) -> None:
    # Given the idempotency, progress, long-poll, priority and ordered-group examples, pointed at this test's stack
    script = flow_control_blocks(
        "Idempotency-Key: order-1042", '"steps": 10', "wait=20", "urgent.png", "etl-2024-06-01"
    )
    script = script.replace("http://localhost:3000", stack.url).replace("local-dev-key", FIRST_KEY)
    # The idempotent request is sent twice, as its comment says
    script = script.replace("# the same command again", script.split("\n# the same command again")[0] + "\n#")
    path = tmp_path / "flow.sh"
    path.write_text("set -euo pipefail\n" + script)

    # When they run
    result = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=120)

    # Then each worked: 202 then 200 for the key, progress mid-run, the long-poll saw the job completed
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert " 202" in out and " 200" in out
    assert '"message":"resize step' in out
    assert "\ncompleted\n" in out
    assert "urgent.png" in out
    # And the group's three jobs ran one after another, in enqueue order (the listing is newest first)
    steps = re.findall(r"(extract|transform|load) started (\S+) completed (\S+)$", out, flags=re.M)
    assert [name for name, _, _ in reversed(steps)] == ["extract", "transform", "load"], out[-600:]
    ordered = list(reversed(steps))
    assert all(ordered[i][2] <= ordered[i + 1][1] for i in range(2)), ordered
