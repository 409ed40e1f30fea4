"""Scheduled work on every account: auto-repay (22:00 and 23:00 UTC) and negative-balance
interest (00:00 UTC). See docs/jobs.md."""

from papi_sandbox.jobs.config import JobsConfig, load_config
from papi_sandbox.jobs.runner import Job, JobReport, run_job, slot_at_or_before

__all__ = ["Job", "JobReport", "JobsConfig", "load_config", "run_job", "slot_at_or_before"]
