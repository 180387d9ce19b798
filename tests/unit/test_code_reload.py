"""``make run``'s code reload (local/reload.py) while other threads import: the swap must not trip over them."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from local import reload
from tests.races import frequent_thread_switches
from tests.waiting import wait_until

PACKAGE = "reload_fixture_pkg"


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A small package standing in for ``functions`` (reloading the real one would swap the modules other tests use)."""
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (tmp_path / PACKAGE / "handler.py").write_text("GENERATION = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite within the second must not load a stale .pyc
    monkeypatch.setattr(reload, "PACKAGE", PACKAGE)
    monkeypatch.setattr(reload, "HANDLER_MODULES", (f"{PACKAGE}.handler",))
    yield tmp_path
    for name in [name for name in sys.modules.copy() if name.startswith(PACKAGE)]:
        del sys.modules[name]


def test_a_reload_while_another_thread_imports_does_not_fail(package: Path) -> None:
    # Given the code loaded once, and a thread that keeps adding and removing modules, as imports on first use do
    generations = reload.CodeGenerations(package, announce=lambda _: None)
    assert generations.reload()
    stop = threading.Event()

    def import_churn() -> None:
        names = [f"{PACKAGE}_churn_{serial}" for serial in range(50)]
        while not stop.is_set():
            for name in names:
                sys.modules[name] = types.ModuleType(name)
            for name in names:
                del sys.modules[name]

    churn = threading.Thread(target=import_churn, daemon=True)
    with frequent_thread_switches():
        churn.start()
        try:
            # When the code is reloaded many times meanwhile
            results = [generations.reload() for _ in range(30)]
        finally:
            stop.set()
            churn.join(timeout=5)
    # Then every reload loaded the code, none raised
    assert all(results)
    assert generations.number == 31
    assert sys.modules[f"{PACKAGE}.handler"].GENERATION == 1


def test_a_reload_that_fails_keeps_the_previous_modules(package: Path) -> None:
    # Given the code loaded once
    generations = reload.CodeGenerations(package, announce=lambda _: None)
    assert generations.reload()
    loaded = sys.modules[f"{PACKAGE}.handler"]
    # When the handler is broken and reloaded
    (package / PACKAGE / "handler.py").write_text("GENERATION = (\n")
    assert not generations.reload()
    # Then the previous module stays in place
    assert sys.modules[f"{PACKAGE}.handler"] is loaded


def test_the_watcher_outlives_a_reload_that_raises(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the watcher running, and a first reload that raises outside the new code's import
    said: list[str] = []
    generations = reload.CodeGenerations(package, announce=said.append)
    real_reload = generations.reload
    calls = iter([RuntimeError("dictionary changed size during iteration")])

    def reload_once_broken() -> bool:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return real_reload()

    monkeypatch.setattr(generations, "reload", reload_once_broken)
    monkeypatch.setattr(reload, "POLL_SECONDS", 0.05)
    generations.start()
    try:
        # When the code changes twice
        handler = package / PACKAGE / "handler.py"
        handler.write_text("GENERATION = 2\n")
        wait_until(lambda: len(said) >= 1, 5, "the failed reload announced")
        handler.write_text("GENERATION = 3\n")
        wait_until(lambda: len(said) >= 2, 5, "the second change reloaded")
    finally:
        generations.stop()
    # Then the failure is announced and the next change is loaded
    assert said[0].startswith("Reload failed, still running the previous code: RuntimeError: dictionary changed")
    assert said[1].startswith(f"Reloaded: {PACKAGE}/handler.py changed")
    assert sys.modules[f"{PACKAGE}.handler"].GENERATION == 3
