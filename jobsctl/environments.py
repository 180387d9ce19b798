"""Lambda execution environments, emulated: one invocation at a time per environment, module state per environment.

On Lambda a handler module is loaded once per execution environment, and an environment serves one invocation at
a time, so module-level state — Powertools' ``BatchProcessor`` and ``APIGatewayRestResolver`` keep the current
batch and request on themselves — is never shared between concurrent invocations. Threads in one process do share
it, so the local stack and the self-hosted worker give each concurrent invocation its own copy of the handler
module, as Lambda would.
"""

from __future__ import annotations

import importlib.util
import queue
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


def fresh_handler(module: str, attribute: str = "handler") -> Handler:
    """Load a private copy of ``module`` (its own module-level objects; what it imports stays shared)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {module!r}")
    copy = importlib.util.module_from_spec(spec)  # not put in sys.modules: nobody else sees this copy
    spec.loader.exec_module(copy)
    handler: Handler = getattr(copy, attribute)
    return handler


class EnvironmentPool:
    """Invoke a handler the way Lambda scales it: each invocation takes an idle environment or starts a new one."""

    def __init__(self, new_environment: Callable[[], Handler]) -> None:
        self._new_environment = new_environment
        self._idle: queue.SimpleQueue[Handler] = queue.SimpleQueue()
        self.started = 0

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        try:
            handler = self._idle.get_nowait()
        except queue.Empty:
            handler = self._new_environment()
            self.started += 1
        try:
            return handler(event, context)
        finally:
            self._idle.put(handler)
