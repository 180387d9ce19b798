"""The IAM coverage check reads the calls the other suites recorded, so it runs after them, on its own:
``make iam-check``, or the second pytest run of ``make test``. A run of the whole tree does not collect it (its calls
would not be recorded yet); naming this directory or a file in it on the command line does."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import local_config
from tests.infrastructure.conftest import Synthesized, synthesize

__all__ = ["Synthesized", "synthesized"]

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == HERE / "conftest.py":
        return None
    named = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    if any(path == HERE or HERE in path.parents for path in named):
        return None
    return True


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack as deployed for the configuration the calls were recorded in: the local stack sends mail as its
    sender (``cdk deploy -c senderEmail=...``; without one the stack grants no SES permission at all)."""
    sender = local_config().runtime.email_sender
    context = {"senderEmail": sender} if sender else {}
    return synthesize(tmp_path_factory.mktemp("cdk.out"), **context)
