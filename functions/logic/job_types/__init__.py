"""Job types. Every module in this package registers its types with ``@job_type`` when imported; importing the
package imports them all, so adding a type is adding a module."""

import importlib
import pkgutil

from functions.logic.job_types.registry import JobContext, JobType, Payload, get_job_type, job_type, registered_types

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["JobContext", "JobType", "Payload", "get_job_type", "job_type", "registered_types"]
