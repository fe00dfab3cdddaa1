"""The Summary section: the main run's headline numbers against the ID-only and popularity
baselines, the best variant on this split, and what the features can and cannot show."""

from __future__ import annotations

from pipelines.report.context import ReportContext
from pipelines.report.document import Block, Cards, Para, fmt, fmt_bytes, pct, rel
from pipelines.report.layout import variant_label
from recmodel.variants import FLOOR_VARIANT, ID_VARIANT


def summary_blocks(ctx: ReportContext) -> list[Block]:
    main = ctx.test(ctx.run.name)
    n_items = ctx.config.get("n_items") or (ctx.dataset or {}).get("catalog")
    id_name = ctx.find_variant(ID_VARIANT)
    pop_name = ctx.find_variant(FLOOR_VARIANT)
    sentences = [
        f"The main run, **{variant_label(ctx.variant)}** (`{ctx.run.name}`), "
        f"reaches HR@10 **{fmt(main.get('hr@10'))}** and NDCG@10 "
        f"**{fmt(main.get('ndcg@10'))}** on {main.get('n', 0)} test users, ranking all "
        f"{n_items} items of the catalog."
    ]
    if id_name and id_name != ctx.run.name:
        ref = ctx.test(id_name)
        sentences.append(
            f"The ID-only SASRec baseline reaches {fmt(ref.get('hr@10'))} / "
            f"{fmt(ref.get('ndcg@10'))}, so the main run's HR@10 is "
            f"{rel(main.get('hr@10'), ref.get('hr@10'))} relative to it (the paper reports "
            "+11.7% for LinkedOut over SASRec on MicroLens-100K†)."
        )
    if pop_name and pop_name != ctx.run.name:
        ref = ctx.test(pop_name)
        sentences.append(f"Popularity ranking reaches {fmt(ref.get('hr@10'))} HR@10.")
    cold = ctx.test(ctx.run.name, "cold_start")
    if cold.get("n"):
        text = (
            f"On the {cold['n']} cold-start targets (items never seen in training) the main "
            f"run's HR@10 is {fmt(cold.get('hr@10'))}"
        )
        if id_name and id_name != ctx.run.name:
            text += f" against {fmt(ctx.test(id_name, 'cold_start').get('hr@10'))} for ID only"
        sentences.append(text + ".")
    scored = {n: ctx.test(n).get("hr@10") for n in ctx.runs}
    scored = {n: v for n, v in scored.items() if v is not None}
    if len(scored) > 1:
        best = max(scored, key=scored.get)  # type: ignore[arg-type]
        sentences.append(
            f"Of the {len(ctx.runs)} variants trained on this split, **{ctx.label(best)}** "
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
                "The dataset is synthetic (`pipelines.demo.generate`: `topics.csv` holds the "
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
                rel(main.get("hr@10"), ctx.test(id_name).get("hr@10")),
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
