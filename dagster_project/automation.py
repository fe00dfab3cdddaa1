"""Declarative automation, off by default: with the `retrain_on_new_features` sensor turned on
(Automation in the UI, or `dagster sensor start retrain_on_new_features`), new features or new
interactions retrain every variant, and the report is rewritten once the variants are updated.

It sits beside the schedules and `new_videos_sensor` rather than replacing them: the nightly
`train_and_evaluate` schedule retrains on a clock; this retrains when the data changes (the
`video_features` data version is the store fingerprint and its committed row count, so a run
that extracted nothing triggers nothing). Stopped by default because a retrain of every
variant costs hours at real sizes."""

import dagster as dg

# eager: when any upstream asset is newly materialized (or this one is missing), once none of
# its upstream assets is still in progress; blocking checks upstream must have passed
RETRAIN_ON_NEW_DATA = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)

retrain_on_new_features = dg.AutomationConditionSensorDefinition(
    "retrain_on_new_features",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description=(
        "Retrains the variants and rewrites the report when features or interactions change "
        "(stopped by default; see dagster_project/automation.py)."
    ),
)
