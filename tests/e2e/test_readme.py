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
