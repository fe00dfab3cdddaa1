"""The evaluation report of a run: every variant trained on the same split, the layer-gate and
prompt-mixture analyses of the main run, efficiency, the dataset and provenance, written into
the run's directory (or another: the Dagster report writes its own) as

    RUN/report.html     self-contained (inline CSS, figures embedded as base64 PNG)
    RUN/report.md       the same content, figures linked as files
    RUN/figures/*.png

Every number is read from stored files (the run files, serving.json and item_index.json as
training and indexing measured them, the dataset's interactions.parquet, the store's index and
extraction records); nothing is trained or timed here. The paper's figures (layout.py) are
always marked as the paper's, measured on other data.

    context.py    what a report is made from, gathered once      runs.py   sibling runs
    store.py      the store version and its records               dataset.py  dataset statistics
    gates.py      layer-gate statistics      mixture.py  prompt mixture      figures.py  PNGs
    sections/     one module per section     document.py  the blocks they build
    markdown.py, html.py + report.css        the two renderings      writer.py  write_report
"""

from pipelines.report.document import comparison_table
from pipelines.report.gates import GateAnalysis, gaussian_kde, read_gates, scott_bandwidth
from pipelines.report.layout import SECTIONS, ReportPaths
from pipelines.report.markdown import comparison_markdown, metrics_markdown
from pipelines.report.sections.provenance import code_commit
from pipelines.report.store import random_weights_reason, read_extraction_runs
from pipelines.report.writer import write_report

__all__ = [
    "SECTIONS",
    "GateAnalysis",
    "ReportPaths",
    "code_commit",
    "comparison_markdown",
    "comparison_table",
    "gaussian_kde",
    "metrics_markdown",
    "random_weights_reason",
    "read_extraction_runs",
    "read_gates",
    "scott_bandwidth",
    "write_report",
]
