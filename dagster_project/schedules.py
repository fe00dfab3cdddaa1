"""Schedules: weekly re-extraction (stopped by default: it is GPU hours) and nightly training."""

import dagster as dg

from dagster_project.jobs import reextract_features, train_and_evaluate

reextract_features_schedule = dg.ScheduleDefinition(
    job=reextract_features,
    cron_schedule="0 3 * * 0",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Sundays 03:00: extract with the configured extractor (incremental within a version).",
)

train_and_evaluate_schedule = dg.ScheduleDefinition(
    job=train_and_evaluate,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly 02:00: retrain on the CURRENT store and refresh the report.",
)
