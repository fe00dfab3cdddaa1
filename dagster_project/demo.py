"""The demo runner: the generated dataset and the tiny checkpoint through `linkedout_full` on a
persistent Dagster instance, so that `dagster dev` shows the run afterwards; with the three
compact store views trained beside the full store.

`linkedout demo` starts it as `python -m dagster_project.demo` (pipelines never imports the
orchestration); the paths reach the run as resources, not as environment variables."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import dagster as dg

from dagster_project.definitions import build_definitions
from dagster_project.instance import write_instance_settings
from dagster_project.resources import LinkedOutPaths, StoreViews, default_resources
from pipelines.demo.dataset import DEMO_ROOT, generate_demo_dataset
from pipelines.errors import PipelineError

# the paper's three storage reductions (supplementary section 9.1), each trained beside the store
DEMO_VIEWS = ("int8", "k_tokens=32", "layers=0,8,20")


def run_demo(root: Path = DEMO_ROOT) -> Path:
    """Build what is missing, run `linkedout_full` and return the report's path."""
    root = Path(root).resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or root / "dagster_home")
    write_instance_settings(home)  # so that `dagster dev` on it queues extraction runs
    generate_demo_dataset(root / "dataset")  # the paths resource generates only the default one
    resources = default_resources()
    resources["paths"] = LinkedOutPaths(
        dataset_dir=str(root / "dataset"),
        store_dir=str(root / "store"),
        runs_dir=str(root / "runs"),
        report_dir=str(root / "report"),
    )
    resources["views"] = StoreViews(views=list(DEMO_VIEWS))
    job = build_definitions(resources).resolve_job_def("linkedout_full")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise PipelineError(
            f"the linkedout_full run failed at {', '.join(failed) or 'a step'}; see the log above"
        )
    report = root / "report" / "report.html"
    print(f"demo finished: report at {report}")
    print(f"browse the assets and the run: DAGSTER_HOME={home} .venv/bin/dagster dev")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.demo", description=__doc__)
    parser.add_argument("--root", type=Path, default=DEMO_ROOT, help="default: data/demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_demo(args.root)
    except PipelineError as exc:
        print(f"linkedout demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
