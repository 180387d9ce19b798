"""``make smoke`` (scripts/smoke.py) against the local stack ``make run`` starts: it passes there, and fails, with a
summary saying so, against an endpoint that is not the service."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.conftest import FIRST_KEY, ROOT, SECOND_KEY, LocalStackProcess, free_port

pytestmark = pytest.mark.e2e

SMOKE = ROOT / "scripts" / "smoke.py"


def run_smoke(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_smoke_check_passes_against_the_local_stack(stack: LocalStackProcess) -> None:
    # Given the local stack with two tenants' keys
    # When the smoke check runs against it with both
    result = run_smoke("--base", stack.url, "--key", FIRST_KEY, "--second-key", SECOND_KEY, "--timeout", "60")

    # Then every check passed, tenant isolation included, and the last line says so
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in lines if line.startswith("FAIL")] == []
    assert any(line.startswith("ok   tenant isolation") for line in lines)
    assert re.fullmatch(rf"smoke: passed (\d+) checks against {re.escape(stack.url)}", lines[-1])
    assert int(lines[-1].split()[2]) == 12


@pytest.mark.parametrize("broken", ["nothing listening", "unknown key"])
def test_the_smoke_check_fails_against_a_broken_endpoint(stack: LocalStackProcess, broken: str) -> None:
    # Given an endpoint where the service does not answer, or answers a key it does not know
    base = f"http://127.0.0.1:{free_port()}" if broken == "nothing listening" else stack.url
    key = FIRST_KEY if broken == "nothing listening" else "not-a-key-of-anyone"

    # When the smoke check runs against it
    result = run_smoke("--base", base, "--key", key, "--timeout", "5", timeout=120)

    # Then it exits 1, its failures listed and the last line saying it failed
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith("FAIL api keys") for line in lines)
    assert re.fullmatch(rf"smoke: FAILED \d+ of 11 checks against {re.escape(base)}", lines[-1])
