"""Emulated Lambda execution environments: module state per environment, one invocation at a time in each."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

from jobsctl.environments import EnvironmentPool, fresh_handler


def test_each_fresh_handler_has_its_own_module_state() -> None:
    # When the consumer module is loaded twice as two environments
    first, second = fresh_handler("functions.handlers.consumer"), fresh_handler("functions.handlers.consumer")
    # Then their batch processors (which keep the current batch on themselves) are distinct objects
    processors = [inspect.unwrap(handler).__globals__["processor"] for handler in (first, second)]
    import functions.handlers.consumer as shared

    assert processors[0] is not processors[1]
    assert shared.processor not in processors


def test_the_pool_never_runs_two_invocations_in_one_environment() -> None:
    # Given a pool whose environments record whether they are ever entered twice at once
    overlaps: list[int] = []

    def new_environment() -> Any:
        busy = threading.Lock()

        def handler(event: dict[str, Any], context: Any) -> int:
            if not busy.acquire(blocking=False):
                overlaps.append(1)
                return 0
            try:
                time.sleep(0.01)
                return 1
            finally:
                busy.release()

        return handler

    pool = EnvironmentPool(new_environment)
    # When 8 threads invoke it 5 times each
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.extend(pool({}, None) for _ in range(5))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Then every invocation ran alone in its environment, and no more environments started than were busy at once
    assert overlaps == [] and results == [1] * 40
    assert 1 <= pool.started <= 8
