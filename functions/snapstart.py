"""Lambda SnapStart: every execution environment restored from one snapshot starts with the same interpreter state.

The module-level ``random`` generator (stats and throughput shard choice, retry jitter) would then draw the same
sequence in every environment, and concurrent writers would pick the same hot shard. After a restore it is
reseeded from the operating system. ``snapshot_restore_py`` ships with Lambda's Python managed runtimes; elsewhere
(tests, ``make run``, a runtime without SnapStart) there is no snapshot and nothing to register.
"""

from __future__ import annotations

import random


def reseed_random() -> None:
    random.seed()  # from os.urandom


def register_restore_hooks() -> bool:
    """Registers the after-restore hooks; False where the runtime has no snapshot support."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return False
    register_after_restore(reseed_random)
    return True
