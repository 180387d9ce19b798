"""Packages whose ``__init__`` imports every module they have, set up to load only the modules that are used.

``aws_lambda_powertools.event_handler``'s ``__init__`` imports every resolver (AppSync's, which imports asyncio,
Bedrock's, VPC Lattice's, Lambda function URLs'...), and ``aws_lambda_powertools.utilities.data_classes``' the data
classes of every event source AWS has (about thirty modules). Python runs a package's ``__init__`` before any of its
modules, so the API's one resolver (``event_handler.api_gateway``) or the consumer's SQS record
(``data_classes.sqs_event``) cannot be imported without all of them: ~20 ms of CPU at every cold start for modules
that neither function ever uses. And Powertools' batch module imports ``asyncio`` (its twenty modules, ~10 ms) for
its asynchronous processor, which the consumer does not use (docs/performance.md#cold-start).

``defer_package_init`` registers such a package without running its ``__init__``. A module of the package then
imports as usual; a name the ``__init__`` imports from one of its modules (``from aws_lambda_powertools.event_handler
import Response``) loads that module, and only it; any other name (``asyncio.run``, ``__all__``) runs the
``__init__`` itself, once, as the import would have. So every use of the package gives what it gives without this,
the same objects: only what is never used is not loaded. ``functions/handlers/__init__.py`` calls it first thing,
before any handler imports Powertools.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

DEFERRED_PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes", "asyncio")

# ``from .module import A, B`` or ``from package.module import (\n A,\n B as C,\n)``, as Powertools' __init__s have them
# (asyncio's ``from .module import *`` maps no name: any name runs its __init__).
_FROM_IMPORT = re.compile(r"^from\s+([\w.]+)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_IMPORTED_NAME = re.compile(r"(\w+)(?:\s+as\s+(\w+))?")


class DeferredPackage(ModuleType):
    """A package whose ``__init__`` runs only when a name it does not map to one of its modules is asked for."""

    _exports: dict[str, tuple[str, str]]  # a name the __init__ binds -> (its module, the name there)
    _init_lock: threading.RLock
    _init_started: bool

    def __getattr__(self, name: str) -> Any:
        export = self._exports.get(name)
        if export is not None:
            module, original = export
            value = getattr(importlib.import_module(f"{self.__name__}.{module}"), original)
            ModuleType.__setattr__(self, name, value)
            return value
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        if importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")  # the import binds it here
        self._run_init()
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a module binds it on its package. A module whose name the __init__ rebinds to something it
        # defines (data_classes' ``event_source`` module and function) keeps what the __init__ would have left.
        export = self._exports.get(name)
        if export is not None and isinstance(value, ModuleType) and value.__name__ == f"{self.__name__}.{export[0]}":
            value = getattr(value, export[1])
        ModuleType.__setattr__(self, name, value)

    def _run_init(self) -> None:
        """Run the package's ``__init__``, once. Another thread asking for a name meanwhile waits for it to end
        (as it would wait for an import in progress); the __init__ itself asking for a name not bound yet (``from .
        import module``) goes on without it, as in any import."""
        with self._init_lock:
            if self._init_started:
                return
            ModuleType.__setattr__(self, "_init_started", True)
            spec = self.__spec__
            assert spec is not None and spec.loader is not None
            try:
                spec.loader.exec_module(self)
            except BaseException:
                ModuleType.__setattr__(self, "_init_started", False)
                raise
            self.__class__ = ModuleType  # type: ignore[assignment]  # a plain package from now on, as usual


def defer_package_init(name: str) -> None:
    """Register package ``name`` (not yet imported) so that its ``__init__`` runs only when needed (module doc).
    Nothing happens if it was imported already, or is not installed, or its ``__init__`` cannot be read."""
    if name in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(name)  # imports its parents
    except ImportError:
        return
    if spec is None or spec.origin is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return
    exports: dict[str, tuple[str, str]] = {}
    for origin, names in _FROM_IMPORT.findall(source):
        module = origin[1:] if origin.startswith(".") else origin.removeprefix(f"{name}.")
        if module == origin or not module:
            continue  # not one of the package's own modules
        for original, alias in _IMPORTED_NAME.findall(re.sub(r"#[^\n]*", "", names)):
            exports[alias or original] = (module, original)
    package = importlib.util.module_from_spec(spec)
    package.__class__ = DeferredPackage
    ModuleType.__setattr__(package, "_exports", exports)
    ModuleType.__setattr__(package, "_init_lock", threading.RLock())
    ModuleType.__setattr__(package, "_init_started", False)
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
