"""The report's sections (summary, comparison, layer gates, efficiency, dataset, provenance),
built as document blocks from everything collected about a run."""

from __future__ import annotations

import math
import platform
import sys
from typing import Any

import numpy as np

from pipelines.report.context import ReportContext
from pipelines.report.figures import (
    boxplot_figure,
    comparison_figure,
    density_figure,
    heatmap_figure,
)
from pipelines.report.layout import (
    GROUP_SHORT,
    GROUP_TITLES,
    GROUPS,
    HEATMAP_MAX_ITEMS,
    PAPER_DATASET,
    PAPER_EXTRACTION_S,
    PAPER_GATE_PERCENT,
    PAPER_LAYOUT,
    PAPER_MOE_MS,
    PAPER_NOTE,
    PAPER_QPS,
    PAPER_QUERY_MS,
    PAPER_RANKING_MS,
    PAPER_STORE_MICROLENS,
    SECTIONS,
    variant_label,
)
from pipelines.report.measure import (
    code_commit,
)
from pipelines.report.prompts import prompt_mixture_blocks
from pipelines.report.render import (
    Block,
    Cards,
    FigureBlock,
    Grid,
    Heading,
    Para,
    TableBlock,
    comparison_table,
    fmt,
    fmt_bytes,
    fmt_ms,
    fmt_num,
    pct,
    rel,
)
from pipelines.report.views import store_view_blocks
from recmodel.variants import FLOOR_VARIANT, ID_VARIANT, all_variants


def _label(ctx: ReportContext, name: str) -> str:
    variant = ctx.runs.get(name, {}).get("variant", name)
    return variant_label(variant)


def _find_variant(ctx: ReportContext, variant: str) -> str | None:
    for name, m in ctx.runs.items():
        if m.get("variant") == variant:
            return name
    return None


def _test(ctx: ReportContext, name: str | None, group: str = "overall") -> dict[str, Any]:
    if name is None:
        return {}
    return ctx.runs.get(name, {}).get("test", {}).get(group, {})


def _summary_blocks(ctx: ReportContext) -> list[Block]:
    main = _test(ctx, ctx.run.name)
    n_items = ctx.config.get("n_items") or (ctx.dataset or {}).get("catalog")
    id_name = _find_variant(ctx, ID_VARIANT)
    pop_name = _find_variant(ctx, FLOOR_VARIANT)
    sentences = [
        f"The main run, **{variant_label(ctx.variant)}** (`{ctx.run.name}`), "
        f"reaches HR@10 **{fmt(main.get('hr@10'))}** and NDCG@10 "
        f"**{fmt(main.get('ndcg@10'))}** on {main.get('n', 0)} test users, ranking all "
        f"{n_items} items of the catalog."
    ]
    if id_name and id_name != ctx.run.name:
        ref = _test(ctx, id_name)
        sentences.append(
            f"The ID-only SASRec baseline reaches {fmt(ref.get('hr@10'))} / "
            f"{fmt(ref.get('ndcg@10'))}, so the main run's HR@10 is "
            f"{rel(main.get('hr@10'), ref.get('hr@10'))} relative to it (the paper reports "
            "+11.7% for LinkedOut over SASRec on MicroLens-100K†)."
        )
    if pop_name and pop_name != ctx.run.name:
        ref = _test(ctx, pop_name)
        sentences.append(f"Popularity ranking reaches {fmt(ref.get('hr@10'))} HR@10.")
    cold = _test(ctx, ctx.run.name, "cold_start")
    if cold.get("n"):
        text = (
            f"On the {cold['n']} cold-start targets (items never seen in training) the main "
            f"run's HR@10 is {fmt(cold.get('hr@10'))}"
        )
        if id_name and id_name != ctx.run.name:
            text += f" against {fmt(_test(ctx, id_name, 'cold_start').get('hr@10'))} for ID only"
        sentences.append(text + ".")
    scored = {n: _test(ctx, n).get("hr@10") for n in ctx.runs}
    scored = {n: v for n, v in scored.items() if v is not None}
    if len(scored) > 1:
        best = max(scored, key=scored.get)  # type: ignore[arg-type]
        sentences.append(
            f"Of the {len(ctx.runs)} variants trained on this split, **{_label(ctx, best)}** "
            f"has the best HR@10 ({fmt(scored[best])})."
        )
    if ctx.gates is not None:
        top = int(ctx.gates.mean_gate.argmax())
        sentences.append(
            f"Its layer gate gives L{ctx.gates.layers[top]} the largest mean weight "
            f"({pct(ctx.gates.mean_gate[top])} over {len(ctx.gates.layers)} layers)."
        )
    blocks: list[Block] = [Para(" ".join(sentences), "lead")]
    if ctx.random_note:
        blocks.append(
            Para(
                "These features come from a checkpoint with **random weights**: "
                f"{ctx.random_note}. The video LLM carries no world knowledge here, so the "
                "numbers describe the pipeline (extraction, store, training, evaluation), not "
                "the value of a video LLM's knowledge for recommendation.",
                "callout",
            )
        )
    if ctx.dataset and ctx.dataset.get("synthetic"):
        blocks.append(
            Para(
                "The dataset is synthetic (`pipelines.demo_data`: `topics.csv` holds the "
                "generator's ground truth): topics have distinct visual signatures, so "
                "content predicts preference by construction.",
                "muted",
            )
        )
    cards = [
        ("HR@10", fmt(main.get("hr@10")), variant_label(ctx.variant)),
        ("NDCG@10", fmt(main.get("ndcg@10")), f"{main.get('n', 0)} test users"),
    ]
    if id_name and id_name != ctx.run.name:
        cards.append(
            (
                "vs ID only",
                rel(main.get("hr@10"), _test(ctx, id_name).get("hr@10")),
                "relative HR@10",
            )
        )
    if cold.get("n"):
        cards.append(("Cold start", fmt(cold.get("hr@10")), f"HR@10, {cold['n']} targets"))
    if ctx.serving is not None:
        cards.append(
            (
                "Ranking",
                f"{ctx.serving.p50_ms:.3g} ms",
                f"p50 per query, {ctx.serving.n_items} items",
            )
        )
    if ctx.extractor is not None:
        L, K, D = (
            int(ctx.extractor["L"]),
            int(ctx.extractor["K"]),
            int(ctx.extractor["hidden_size"]),
        )
        cards.append(("Store per video", fmt_bytes(L * K * D * 2), f"{L}×{K}×{D} fp16"))
    blocks.append(Cards(cards))
    return blocks


def _comparison_blocks(ctx: ReportContext) -> list[Block]:
    n_items = ctx.config.get("n_items")
    blocks: list[Block] = [
        Para(
            f"Every variant below was trained on the same leave-one-out split and catalog "
            f"({n_items} items); the metrics are on the test split, ranking the whole catalog "
            "with each user's history masked (ties count against the target). The best value "
            "of each column is **bold**; the main run's row is highlighted. The columns marked "
            f"† are {PAPER_NOTE}: they show the shape of the paper's ablation "
            "(Tables 3–4; Table 4 lists HR@10, NDCG@10, HR@20, NDCG@20, reordered here), "
            "not numbers to match."
        )
    ]
    overall = comparison_table(ctx.runs, "overall", paper=True, main=ctx.run.name)
    if overall is not None:
        n = _test(ctx, ctx.run.name).get("n", 0)
        overall.caption = f"{GROUP_TITLES['overall']} (n = {n})"
        overall.note = (
            "† The paper's numbers on MicroLens-100K: ID only is the paper's SASRec (Table 3); "
            "the other rows are Table 4's rows of the same name (LinkedOut full also in "
            "Table 3). Popularity and ID fusion have no counterpart there."
        )
        blocks.append(overall)
    thresholds = ctx.metrics.get("test", {}).get("popularity_thresholds") or {}
    explain = {
        "cold_start": "items with no training interaction",
        "head": f"training count > {thresholds.get('t2', 0):.3g}",
        "mid": f"{thresholds.get('t1', 0):.3g} < training count ≤ {thresholds.get('t2', 0):.3g}",
        "tail": f"1 ≤ training count ≤ {thresholds.get('t1', 0):.3g}",
    }
    grid = Grid([])
    empty = []
    for group in GROUPS[1:]:
        table = comparison_table(ctx.runs, group, paper=False, main=ctx.run.name)
        n = _test(ctx, ctx.run.name, group).get("n", 0)
        if table is None:
            empty.append(GROUP_SHORT[group])
            continue
        table.caption = f"{GROUP_TITLES[group]} (n = {n}; {explain[group]})"
        grid.tables.append(table)
    blocks.append(grid)
    if empty:
        blocks.append(Para(f"No {' or '.join(empty)} test targets on this split.", "muted"))
    blocks.append(
        Para(
            "Long-tail buckets are terciles of the target's training count over the items seen "
            "in training (recmodel.metrics); the paper reports no per-bucket numbers.",
            "muted",
        )
    )
    # a prompt-bank variant needs a store with a prompt bank: not missing where there is none
    missing = [
        v.name
        for v in all_variants()
        if _find_variant(ctx, v.name) is None and (not v.prompt_bank or ctx.bank_store)
    ]
    notes = []
    if missing:
        notes.append("not trained on this split: " + ", ".join(f"`{v}`" for v in missing))
    if ctx.excluded:
        notes.append("left out: " + "; ".join(f"`{n}` ({why})" for n, why in ctx.excluded.items()))
    if notes:
        blocks.append(Para("Variants " + "; ".join(notes) + ".", "muted"))
    png = comparison_figure(ctx.runs)
    if png is not None:
        blocks.append(
            FigureBlock(
                "comparison",
                png,
                "HR@10 and NDCG@10 by target group",
                "Every variant trained on this split, on all test targets, the cold-start "
                "targets and the long-tail buckets (head, mid, tail).",
            )
        )
    return blocks


def _gate_blocks(ctx: ReportContext) -> list[Block]:
    g = ctx.gates
    if g is None:
        return [
            Para(
                f"The main run's variant, `{ctx.variant}`, has no cross-layer gate "
                "(gates.parquet has no rows): train `full` or another MoE variant for this "
                "analysis."
            )
        ]
    L = len(g.layers)
    blocks: list[Block] = [
        Para(
            f"The gate weights π of the main run's cross-layer MoE for the {len(g.items)} items "
            f"with features ({L} tapped layers: "
            + ", ".join(f"L{layer}" for layer in g.layers)
            + "). "
            + g.dominance_sentence()
        )
    ]
    contrib = g.mean_contribution
    header = [
        "layer",
        "mean π",
        "median π",
        "std π",
        "mean contribution c",
        "items where top",
        "mean ‖h‖",
        "paper mean†",
    ]
    table = TableBlock(header=header, rows=[], numeric=[False] + [True] * 7, paper_cols={7})
    for j, layer in enumerate(g.layers):
        table.rows.append(
            [
                f"L{layer}",
                pct(g.mean_gate[j]),
                f"{np.median(g.gates[:, j]):.4f}",
                f"{g.gates[:, j].std():.4f}",
                pct(contrib[j]),
                pct(g.argmax_share[j], 0),
                f"{g.norms[:, j].mean():.3g}",
                f"{PAPER_GATE_PERCENT[layer]:.1f}%" if layer in PAPER_GATE_PERCENT else "–",
            ]
        )
    for col, values in ((1, g.mean_gate), (4, contrib), (5, g.argmax_share)):
        top = int(np.argmax(values))
        for r in range(L):
            if math.isclose(values[r], values[top]):
                table.bold.add((r, col))
    table.caption = "Gate weights and contributions per layer"
    table.note = (
        "c = π·‖h‖ normalised per item to sum to 1 (the share of the weighted expert outputs "
        "that form z). † Paper Figure 5, MicroLens-100K (L12 not stated)."
    )
    blocks.append(table)
    if g.id_gate is not None:
        blocks.append(
            Para(
                f"ID fusion: the learned gate puts a mean weight g = {g.id_gate.mean():.3f} on the "
                f"ID embedding (z' = g·e_id + (1−g)·z; median {np.median(g.id_gate):.3f})."
            )
        )
    blocks += [
        FigureBlock(
            "gate_density",
            density_figure(g),
            "Density of the gate weight per layer",
            "Gaussian kernel density estimate (Scott's bandwidth) of π over items, one panel "
            "per tapped layer on a shared axis; red dashed: the mean, grey dotted: the uniform "
            f"weight 1/{L}. The paper's Figure 4 is the same view on MicroLens-100K.",
        ),
        FigureBlock(
            "gate_boxplot",
            boxplot_figure(g),
            "Gate weights per layer, with the mean contribution in percent",
            "Boxes: quartiles; red line: median; blue dashed: mean; grey dotted: uniform "
            f"1/{L}; the annotated percentages are the mean gate weights (they sum to 100%), "
            "as in the paper's Figure 5.",
        ),
        FigureBlock(
            "gate_heatmap",
            heatmap_figure(g),
            "Per-item gate weights, actual contributions and their difference",
            "Left: π. Middle: c = π·‖h‖ normalised per item to sum to 1, so it shares the "
            "left panel's colour scale. Right: c − π (red: the layer's output norm amplifies "
            "its gate weight; blue: damps it). Rows are items sorted by their top layer"
            + (
                f", {HEATMAP_MAX_ITEMS} evenly spaced of {len(g.items)}"
                if len(g.items) > HEATMAP_MAX_ITEMS
                else ""
            )
            + ". After the supplementary's Figure 1.",
        ),
    ]
    return blocks


def _efficiency_blocks(ctx: ReportContext) -> list[Block]:
    rows: list[list[str]] = []
    # extraction
    runs = [r for r in ctx.extraction_runs if r.get("extracted")]
    if runs:
        seconds = sum(float(r.get("seconds", 0.0)) for r in runs)
        videos = sum(int(r["extracted"]) for r in runs)
        last = runs[-1]
        prompts = max(int(r.get("prompts", 1)) for r in runs)
        recorded = (
            f"{seconds / videos:.3g} s ({videos} videos in {len(runs)} run"
            f"{'s' * (len(runs) != 1)}, start-up included; last run "
            f"{float(last.get('seconds', 0)) / int(last['extracted']):.3g} s"
            + (f"; each video under a bank of up to {prompts} prompts" if prompts > 1 else "")
            + ")"
        )
    elif ctx.extractor is not None:
        recorded = "not recorded"
        if ctx.extraction_estimate is not None:
            recorded += (
                f"; ≈ {ctx.extraction_estimate:.3g} s steady state, estimated from the commit "
                "times in index.parquet"
            )
    else:
        recorded = f"no store ({ctx.version_note})"
    rows.append(
        [
            "Feature extraction per video (offline, once)",
            recorded,
            f"{PAPER_EXTRACTION_S} s (H100, batches of 100)",
        ]
    )
    # storage
    pL, pK, pD = PAPER_LAYOUT
    paper_bytes = pL * pK * pD * 2
    if ctx.extractor is not None:
        L, K, D = (
            int(ctx.extractor["L"]),
            int(ctx.extractor["K"]),
            int(ctx.extractor["hidden_size"]),
        )
        per_video = ctx.store.row_bytes
        n_rows = ctx.store.index_table().num_rows
        layout = "L×K×D int8 + L×K×2 scales" if ctx.store.int8 else "L×K×D×2 bytes, fp16"
        rows += [
            [
                f"Store per video ({layout})",
                f"{fmt_bytes(per_video)} ({L}×{K}×{D})",
                f"{fmt_bytes(paper_bytes)} ({pL}×{pK}×{pD})",
            ],
            [
                "Store now",
                f"{fmt_bytes(per_video * n_rows)} for {n_rows:,} videos",
                f"{PAPER_STORE_MICROLENS[0]} for MicroLens-100K ({PAPER_STORE_MICROLENS[1]:,})",
            ],
            ["Projected, 1M videos", fmt_bytes(per_video * 1e6), fmt_bytes(paper_bytes * 1e6)],
            ["Projected, 10M videos", fmt_bytes(per_video * 1e7), fmt_bytes(paper_bytes * 1e7)],
        ]
    else:
        rows.append(["Store per video", f"no store ({ctx.version_note})", fmt_bytes(paper_bytes)])
    # item encoding
    enc = ctx.encoding
    if "per_item_s" in enc:
        rows += [
            [
                f"MoE item encoding per item (batch of {enc['batch']})",
                fmt_ms(enc["per_item_s"]),
                f"{PAPER_MOE_MS} ms (MoE fusion per query)",
            ],
            ["MoE item encoding, one item alone", fmt_ms(enc["single_s"]), "–"],
            ["Store read per item (features for encoding)", fmt_ms(enc["read_per_item_s"]), "–"],
        ]
    else:
        rows.append(["MoE item encoding", enc.get("skipped", "not measured"), f"{PAPER_MOE_MS} ms"])
    # ranking
    if ctx.serving is not None:
        s = ctx.serving
        rows += [
            [
                f"Ranking per query (p50; 10-item history, top-10 of {s.n_items:,})",
                f"{s.p50_ms:.3g} ms",
                f"{PAPER_RANKING_MS} ms ({PAPER_QUERY_MS} ms with MoE fusion)",
            ],
            [
                "Queries per second (one thread, 1000 / p50)",
                f"{1000 / s.p50_ms:,.0f}" if s.p50_ms > 0 else "–",
                f"{PAPER_QPS} (1 / {PAPER_QUERY_MS} ms)",
            ],
            [
                "Serving vectors (item_embeddings.npy)",
                f"{fmt_bytes(s.bytes)} ({s.n_items:,} × {s.dim} float32)",
                "–",
            ],
        ]
    else:
        rows.append(["Ranking per query", ctx.serving_error, f"{PAPER_RANKING_MS} ms"])
    rows += _index_rows(ctx)
    table = TableBlock(
        header=["", "this run", "paper†"],
        rows=rows,
        numeric=[False, False, False],
        paper_cols={2},
        caption="Store-and-retrieve costs",
        note=(
            "† The paper's figures: Table 5 and section 4.5 (one NVIDIA H100, LLaVA-OneVision "
            "7B), supplementary Tables 7–8 (6×64×4096 fp16 = 3.15 MB per video). "
            "Projections multiply the per-video size; zarr chunks are stored uncompressed, one "
            "file per video."
        ),
    )
    where = (
        f"Serving was measured when the run was trained ({ctx.measured_on}) and recorded in "
        "its serving.json"
        if ctx.measured_on
        else "This run has no serving.json: it was trained before serving was recorded"
    )
    return [
        Para(
            "Store-and-retrieve splits the cost in two: the video LLM runs once per video "
            "offline; a query only runs the ranker over precomputed item vectors and one "
            f"matrix–vector product. {where}; extraction time comes from the store's "
            "extraction runs; the item index's figures were measured when it was built and "
            "recorded in its item_index.json. The paper measured on one H100."
        ),
        table,
        *store_view_blocks(ctx),
    ]


def _index_rows(ctx: ReportContext) -> list[list[str]]:
    """The item index (item_index.json): what it is, and how it measured against the exact
    scan when it was built."""
    r = ctx.index
    if r is None:
        return [["Item index (item_index.faiss)", ctx.index_error, "–"]]
    e = r.evaluation
    search = ", ".join(f"{k}={v}" for k, v in r.search.items())
    return [
        [
            "Item index (item_index.faiss, faiss)",
            f"{r.spec.kind}: {r.spec.factory}{f' ({search})' if search else ''}, "
            f"{fmt_bytes(r.index_bytes)}, built in {r.build_seconds:.3g} s",
            "–",
        ],
        [
            f"Index recall@10 against the exact scan ({e['queries']} held-out queries)",
            f"{e['recall_at_10']:.4f}; same top-10 on {e['same_top10']:.0%} of queries",
            "–",
        ],
        [
            "Retrieval per query, index (p50 / p99, one thread)",
            f"{fmt_ms(e['index_p50_ms'] / 1e3)} / {fmt_ms(e['index_p99_ms'] / 1e3)}",
            "–",
        ],
        [
            "Retrieval per query, exact scan (p50 / p99, one thread)",
            f"{fmt_ms(e['exact_p50_ms'] / 1e3)} / {fmt_ms(e['exact_p99_ms'] / 1e3)}",
            "–",
        ],
    ]


def _dataset_blocks(ctx: ReportContext) -> list[Block]:
    if ctx.dataset is None:
        return [Para(f"Dataset statistics unavailable: {ctx.dataset_error}", "muted")]
    d = ctx.dataset
    P = PAPER_DATASET
    rows = [
        ["Users", fmt_num(d["users"]), P["users"]],
        ["Items in the catalog", fmt_num(d["catalog"]), P["items"]],
        ["Interactions", fmt_num(d["interactions"]), P["interactions"]],
        [
            "Training / validation / test samples",
            f"{d['train']:,} / {d['valid']:,} / {d['test']:,}",
            f"{P['train']} / {P['valid']} / {P['test']}",
        ],
        [
            "Interactions per user: mean (median, range)",
            f"{d['seq_mean']:.2f} ({d['seq_median']:g}, {d['seq_min']}–{d['seq_max']})",
            f"{P['seq_mean']} ({P['seq_range']})",
        ],
        [f"History length at test (≤ {d['max_history']})", f"{d['test_history_mean']:.2f}", "–"],
        ["Cold-start test targets", f"{d['cold_targets']:,} ({pct(d['cold_share'])})", "–"],
        ["Catalog items never seen in training", fmt_num(d["cold_items"]), "–"],
        [
            "Items with a video / without (ID-only)",
            f"{d['with_video']:,} / {d['without_video']:,}",
            "–",
        ],
    ]
    if "failures" in d:
        rows += [
            ["Items with features in the store", fmt_num(d["with_features"]), "–"],
            ["Extraction failures", fmt_num(d["failures"]), "–"],
            ["Store items without interactions", fmt_num(d["store_only"]), "–"],
        ]
    table = TableBlock(
        header=["", "this dataset", "paper: MicroLens-100K†"],
        rows=rows,
        numeric=[False, True, True],
        paper_cols={2},
        caption=f"Dataset `{d['path']}`",
        note="† Paper Table 1.",
    )
    blocks: list[Block] = [table]
    if d.get("failure_rows"):
        shown = d["failure_rows"][:10]
        blocks.append(
            TableBlock(
                header=["item", "stage", "error"],
                rows=[[str(i), str(s), str(e)] for i, s, e in shown],
                numeric=[False, False, False],
                caption="Extraction failures"
                + (f" (first 10 of {d['failures']})" if d["failures"] > 10 else ""),
            )
        )
    return blocks


def _provenance_blocks(ctx: ReportContext) -> list[Block]:
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


def build_sections(ctx: ReportContext) -> tuple[list[Block], list[FigureBlock]]:
    builders = {
        "summary": _summary_blocks,
        "comparison": _comparison_blocks,
        "gates": _gate_blocks,
        "prompts": lambda ctx: prompt_mixture_blocks(ctx.prompts, ctx.prompts_note),
        "efficiency": _efficiency_blocks,
        "dataset": _dataset_blocks,
        "provenance": _provenance_blocks,
    }
    blocks: list[Block] = []
    for anchor, title in SECTIONS:
        blocks.append(Heading(title, anchor))
        blocks += builders[anchor](ctx)
    figures = [b for b in blocks if isinstance(b, FigureBlock)]
    for i, figure in enumerate(figures, start=1):
        figure.number = i
    return blocks, figures
