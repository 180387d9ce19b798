"""Code reload for ``make run``: a change under ``functions/`` is picked up in-process, moto's state untouched.

A watcher looks at the modification times of the files under ``functions/`` twice a second (the dashboard's
files too: the API caches them per module). When one changes, every
``functions`` module is dropped from ``sys.modules`` and the handlers are imported again as a trial; if that fails
(a syntax error, a bad import) the previous modules are put back and the stack keeps running the previous code.
Each execution environment (``ReloadingHandler``) notices the new code generation at its next invocation and loads
a fresh copy of its handler module, as Lambda starts new environments after a deployment. An invocation already
running finishes on the code it started with.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobsctl.environments import fresh_handler

PACKAGE = "functions"
HANDLER_MODULES = (
    "functions.handlers.api",
    "functions.handlers.consumer",
    "functions.handlers.sweeper",
    "functions.handlers.stats_stream",
)
POLL_SECONDS = 0.5


class CodeGenerations:
    """The current generation of the ``functions`` code; ``reload`` makes a new one."""

    def __init__(self, root: Path, announce: Callable[[str], None] = print) -> None:
        self.root = root
        self.number = 0
        self._announce = announce
        # Held while the modules are swapped, and while an environment loads its copy: never half of each.
        self.lock = threading.Lock()
        self._mtimes = self._scan()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="code-reload", daemon=True)

    def _scan(self) -> dict[Path, float]:
        mtimes: dict[Path, float] = {}
        for path in (self.root / PACKAGE).rglob("*"):
            if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            try:
                mtimes[path] = path.stat().st_mtime
            except FileNotFoundError:  # removed while listing
                continue
        return mtimes

    def changed(self) -> list[Path]:
        """Files added, changed or removed since the last call."""
        current = self._scan()
        changed = sorted({p for p in current.keys() | self._mtimes.keys() if current.get(p) != self._mtimes.get(p)})
        self._mtimes = current
        return changed

    def reload(self) -> bool:
        """Import the ``functions`` code again; True when it loaded (then environments pick it up)."""
        with self.lock:
            # A copy first (one call, atomic under the interpreter lock): other threads import while this runs (a
            # job type loaded on first use, moto), and a dict that changes size under iteration raises.
            previous = {name: module for name, module in sys.modules.copy().items() if _ours(name)}
            for name in previous:
                del sys.modules[name]
            importlib.invalidate_caches()
            try:
                for module in HANDLER_MODULES:
                    importlib.import_module(module)
                # Modules the handlers import on first use (job types, the callback client...) that were running
                # load again now, so an error in them is reported at the reload, not by the next job of that type.
                for name in previous:
                    _import_if_present(name)
            except Exception as exc:  # noqa: BLE001 - any error in the new code keeps the previous code running
                for name in [name for name in sys.modules.copy() if _ours(name)]:
                    del sys.modules[name]
                sys.modules.update(previous)
                self._announce_failure(exc)
                return False
            self.number += 1
            return True

    def _announce_failure(self, exc: Exception) -> None:
        self._announce(f"Reload failed, still running the previous code: {self._where(exc)}")

    def _where(self, exc: Exception) -> str:
        """``SyntaxError: invalid syntax (functions/x.py, line 3)``: the error and the line it points at."""
        if isinstance(exc, SyntaxError) and exc.filename:
            filename, line, message = exc.filename, exc.lineno, exc.msg
        else:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            filename, line, message = frame.filename, frame.lineno, str(exc)
        with contextlib.suppress(ValueError):
            filename = str(Path(filename).relative_to(self.root))
        return f"{type(exc).__name__}: {message} ({filename}, line {line})"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            changed = self.changed()
            if not changed:
                continue
            names = ", ".join(str(path.relative_to(self.root)) for path in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            try:
                loaded = self.reload()
            except Exception as exc:  # noqa: BLE001 - a watcher that died would leave the stack on old code, silently
                self._announce_failure(exc)
                continue
            if loaded:
                self._announce(f"Reloaded: {names}{more} changed (state kept)")


def _import_if_present(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # a module it imports is missing: an error in the new code
            raise


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class ReloadingHandler:
    """One execution environment of a handler that moves to the newest code generation between invocations."""

    def __init__(
        self,
        generations: CodeGenerations,
        module: str,
        attribute: str = "handler",
        load: Callable[[str, str], Callable[..., Any]] = fresh_handler,
        first: Callable[..., Any] | None = None,
    ) -> None:
        """``load``: how an environment gets its copy of the handler; ``first``: the handler to run until the
        code changes (for a function that runs in one environment: the imported module's own handler)."""
        self._generations = generations
        self._module = module
        self._attribute = attribute
        self._load = load
        with generations.lock:
            self._generation = generations.number
            self._handler = first if first is not None else load(module, attribute)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        if self._generation != self._generations.number:
            with self._generations.lock:
                self._generation = self._generations.number
                self._handler = self._load(self._module, self._attribute)
        return self._handler(event, context)
