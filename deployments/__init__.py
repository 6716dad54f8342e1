"""Prefect deployments: schedules, triggers and work-pool config (filled by the orchestration work)."""
