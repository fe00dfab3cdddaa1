"""The Efficiency section: store-and-retrieve costs as extraction, training and the item index
recorded them (extraction time, bytes per video, encoding, ranking, the index), beside the
paper's; then the compact store views."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, Para, TableBlock, fmt_bytes, fmt_ms
from pipelines.report.layout import (
    PAPER_EXTRACTION_S,
    PAPER_LAYOUT,
    PAPER_MOE_MS,
    PAPER_QPS,
    PAPER_QUERY_MS,
    PAPER_RANKING_MS,
    PAPER_STORE_MICROLENS,
)
from pipelines.report.sections.store_views import store_view_blocks


def efficiency_blocks(ctx: ReportContext) -> list[Block]:
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
            "Projections multiply the per-video size; rows are stored uncompressed, in zarr "
            "shards of 64 videos."
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
