"""Importing this package registers every job type; add a module and import it here."""

from functions.logic.job_types import builtin  # noqa: F401  (registers the built-in types)
from functions.logic.job_types.registry import JobContext, JobType, get_job_type, job_type, registered_types

__all__ = ["JobContext", "JobType", "get_job_type", "job_type", "registered_types"]
