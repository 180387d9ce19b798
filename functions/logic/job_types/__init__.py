"""Job types. Each module in this package declares its types with ``@job_type``; ``registry.TYPE_MODULES`` names
the module of each built-in type, which is imported when the type is first used (``get_job_type``)."""

from functions.logic.job_types.registry import (
    JobContext,
    JobType,
    Payload,
    get_job_type,
    job_type,
    load_all_types,
    registered_types,
)

__all__ = ["JobContext", "JobType", "Payload", "get_job_type", "job_type", "load_all_types", "registered_types"]
