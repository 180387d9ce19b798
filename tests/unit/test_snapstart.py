"""SnapStart: environments restored from one snapshot must not share the ``random`` sequence (shards, jitter)."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable

import pytest

from functions.snapstart import register_restore_hooks, reseed_random


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


def test_every_handler_registers_it_at_import() -> None:
    # The handlers import the composition root, which registers the hook while the snapshot is being prepared
    import functions.handlers.runtime as runtime_module

    assert runtime_module.register_restore_hooks is register_restore_hooks
