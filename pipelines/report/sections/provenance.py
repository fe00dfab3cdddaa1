"""The Provenance section: where the run, its store version and this code come from."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, TableBlock
from pipelines.report.layout import REPO_ROOT, variant_label


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_commit() -> str:
    """`git rev-parse HEAD` of the code, "+ uncommitted changes" when the tree is dirty;
    "unknown" outside a git checkout."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha} (+ uncommitted changes)" if dirty else sha


def provenance_blocks(ctx: ReportContext) -> list[Block]:
    cfg, train = ctx.config, ctx.config.get("train", {})
    training = ctx.metrics.get("training") or {}
    model = cfg.get("model", {})
    rows = [
        ["Run directory", f"`{ctx.run.resolve()}`"],
        ["Variant", f"`{ctx.variant}` ({variant_label(ctx.variant)})"],
        ["Trained at", str(cfg.get("created_at", "unknown"))],
    ]
    if training.get("learned"):
        rows += [
            [
                "Epochs",
                f"best {training.get('best_epoch')} of {training.get('epochs_run')} run "
                f"(max {train.get('epochs')}, patience {train.get('patience')}"
                f"{', stopped early' if training.get('stopped_early') else ''})",
            ],
            [
                "Learning rate",
                f"encoder {train.get('lr_encoder')}, head {train.get('lr_head')}"
                f"{f' after {w} warmup steps' if (w := train.get('warmup_steps')) else ''}; AdamW, "
                f"weight decay {train.get('weight_decay')}, clip {train.get('grad_clip')}, "
                f"batch {train.get('batch_size')}",
            ],
            ["Loss", str(training.get("loss", "–"))],
        ]
    elif training:
        rows.append(["Training", "nothing learned (ranks by training counts)"])
    rows += [
        ["Seed", str(train.get("seed", "unknown"))],
        [
            "Model",
            f"d_model {model.get('d_model')}, {model.get('n_blocks')} ranker blocks, "
            f"history ≤ {model.get('max_history')}",
        ],
    ]
    e = ctx.extractor
    if e is not None:
        rows += [
            ["Extractor fingerprint", f"`{e.get('fingerprint')}`"],
            [
                "Extractor model",
                f"`{e.get('model')}` @ {e.get('revision')}"
                + (" — random weights" if ctx.random_note else ""),
            ],
            [
                "Extraction",
                f"layers {e.get('layers')}, K={e.get('K')} tokens ({e.get('G')} new), "
                f"{e.get('frames')} frames at {e.get('resolution')}px, merge {e.get('merge')}, "
                f"{e.get('torch_dtype')}",
            ],
            ["Prompt", "`" + str(e.get("prompt_template", "")).replace("\n", " ⏎ ") + "`"],
            ["Store version", f"`{ctx.version}` (created {e.get('created_at')})"],
        ]
    else:
        rows.append(["Feature store", ctx.version_note])
    rows += [
        ["Dataset", f"`{cfg.get('dataset', 'unknown')}`"],
        ["Code commit", code_commit()],
        [
            "Software",
            f"Python {platform.python_version()}, numpy {np.__version__}, torch {_torch_version()}",
        ],
        ["Report written", ctx.written_at],
    ]
    return [TableBlock(header=["", ""], rows=rows, numeric=[False, False], kv=True)]


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    return getattr(torch, "__version__", "not loaded")
