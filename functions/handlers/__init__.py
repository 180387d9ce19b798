"""The Lambda functions' entry points. Before any of them imports Powertools, two of its packages and asyncio are
set up to load only the modules a function uses (``lean_imports.py``: every resolver, every event source's data
classes and asyncio, which only Powertools' asynchronous batch processor uses, otherwise load at each cold start)."""

from functions.handlers.lean_imports import DEFERRED_PACKAGES, defer_package_init

for _package in DEFERRED_PACKAGES:
    defer_package_init(_package)
