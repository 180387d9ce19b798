"""SnapStart: environments restored from one snapshot must not share the ``random`` sequence (shards, jitter)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from functions.snapstart import register_restore_hooks, reseed_random

ROOT = Path(__file__).resolve().parents[2]


def test_after_a_restore_the_random_sequence_is_no_longer_the_snapshots() -> None:
    # Given two environments restored from one snapshot: the same generator state
    random.seed(1234)
    snapshot = random.getstate()
    first = [random.random() for _ in range(4)]
    random.setstate(snapshot)
    # When the restore hook runs before the second one draws
    reseed_random()
    # Then it draws another sequence
    assert [random.random() for _ in range(4)] != first


def test_the_hook_is_registered_where_the_runtime_has_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the runtime's hook library (on Lambda's Python managed runtimes)
    registered: list[Callable[[], None]] = []
    library = types.ModuleType("snapshot_restore_py")
    library.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", library)
    # When the hooks are registered: Then the reseeding runs after each restore
    assert register_restore_hooks() is True
    assert registered == [reseed_random]


def test_without_the_library_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails, as outside Lambda
    assert register_restore_hooks() is False


FAKE_LIBRARY = """
hooks = []
def register_after_restore(func, *args, **kwargs):
    hooks.append(func.__module__ + "." + func.__name__)
"""
PROBE = (
    "import importlib, sys, snapshot_restore_py; importlib.import_module(sys.argv[1]); print(snapshot_restore_py.hooks)"
)


@pytest.mark.parametrize(
    "handler",
    [
        "functions.handlers.api",
        "functions.handlers.consumer",
        "functions.handlers.sweeper",
        "functions.handlers.stats_stream",
    ],
)
def test_every_handler_registers_the_reseeding_while_the_snapshot_is_prepared(handler: str, tmp_path: Path) -> None:
    # Given a runtime with the hook library (a stand-in that records registrations)
    (tmp_path / "snapshot_restore_py.py").write_text(FAKE_LIBRARY)
    env = {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PATH": "/usr/bin:/bin",
    }
    # When the handler module is imported, as Lambda's init does before taking the snapshot
    done = subprocess.run([sys.executable, "-c", PROBE, handler], env=env, capture_output=True, text=True, check=True)
    # Then the reseeding hook was registered, once
    assert done.stdout.strip() == "['functions.snapstart.reseed_random']"
