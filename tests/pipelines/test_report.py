"""pipelines.report: the evaluation report of a sweep (report.md, report.html, figures) from run
directories trained in seconds on a tiny synthetic dataset and a real (synthetic) feature store."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurizer.store import FeatureStore
from pipelines.cli import main
from pipelines.report import (
    SECTIONS,
    GateAnalysis,
    comparison_markdown,
    gaussian_kde,
    random_weights_reason,
    scott_bandwidth,
    write_report,
)
from pipelines.training.sweep import sweep
from tests.synthetic import write_topic_dataset, write_topic_store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("comparison", "gate_density", "gate_boxplot", "gate_heatmap", "prompt_mixture")
TINY_MODEL = {"d_model": 8, "n_queries_old": 2, "n_queries_new": 1, "gate_hidden": 8, "n_blocks": 1}
N_ITEMS, N_TOPICS, LAYERS = 24, 3, (0, 4, 8)


def _write_dataset(root: Path, n_users: int = 40) -> Path:
    return write_topic_dataset(root, n_users=n_users, n_items=N_ITEMS, n_topics=N_TOPICS)


def _write_store(root: Path) -> Path:
    """A bank of two prompts: every item but i005 (a decode failure) has a (3, 6, 8) row per
    prompt, whose topic shows in the first prompt's."""
    items = [f"i{i:03d}" for i in range(N_ITEMS) if i != 5]
    return write_topic_store(
        root, items, n_topics=N_TOPICS, failed=("i005",), layers=LAYERS, prompts=2
    )


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """popularity, id_only, full and full_prompt_bank trained for one epoch on the same split;
    the report is written into runs/full."""
    root = tmp_path_factory.mktemp("report")
    dataset = _write_dataset(root / "dataset")
    store = _write_store(root / "store")
    sweep(
        dataset,
        store,
        root / "runs",
        variants=["popularity", "id_only", "full", "full_prompt_bank"],
        epochs=1,
        progress=False,
        model_overrides=TINY_MODEL,
        train_overrides={"batch_size": 64},
    )
    return root


@pytest.fixture
def runs(sweep_dir, tmp_path) -> Path:
    """A private copy of the sweep's runs, to change files in."""
    return Path(shutil.copytree(sweep_dir / "runs", tmp_path / "runs"))


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def _md_table(markdown: str, caption: str) -> list[list[str]]:
    """The rows (header first) of the markdown table under a **caption** line."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{caption}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [rows[0]] + rows[2:]


def test_every_section_is_there_in_order_in_markdown_and_html(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()
    page = (sweep_dir / "runs/full/report.html").read_text()

    md_positions = [md.index(f"\n## {title}\n") for _, title in SECTIONS]
    html_positions = [page.index(f'<section id="{anchor}"><h2>') for anchor, _ in SECTIONS]
    assert md_positions == sorted(md_positions)
    assert html_positions == sorted(html_positions)
    assert all(title in page for _, title in SECTIONS)
    assert [t for _, t in SECTIONS] == [
        "Summary",
        "Comparison",
        "Layer-gate analysis",
        "Prompt mixture",
        "Efficiency",
        "Dataset",
        "Provenance",
    ]


def test_numbers_come_from_metrics_json(runs):
    write_report(runs / "full")
    assert "0.9877" not in (runs / "full/report.md").read_text()

    _edit_json(
        runs / "id_only/metrics.json",
        lambda m: m["test"]["cold_start"].update({"n": 7, "hr@20": 0.98765}),
    )
    write_report(runs / "full")

    md = (runs / "full/report.md").read_text()
    table = _md_table(md, "Cold-start targets")
    id_only = next(r for r in table if r[0].startswith("ID only"))
    assert id_only[table[0].index("HR@20")] == "**0.9877**"
    assert "0.9877" in (runs / "full/report.html").read_text()


def test_figures_are_valid_pngs(sweep_dir):
    from PIL import Image

    run = sweep_dir / "runs/full"
    for name in FIGURES:
        path = run / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 150, name
        import matplotlib.image

        assert matplotlib.image.imread(path).ndim == 3
        assert f"](figures/{name}.png)" in (run / "report.md").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', (run / "report.html").read_text())
    assert len(embedded) == len(FIGURES)
    assert all(base64.b64decode(data)[:8] == PNG_MAGIC for data in embedded)


def test_best_value_of_each_column_is_bold():
    def metrics(hr10, hr20, ndcg10, ndcg20):
        values = {"n": 5, "hr@10": hr10, "hr@20": hr20, "ndcg@10": ndcg10, "ndcg@20": ndcg20}
        return {"test": {"overall": values}}

    runs = {
        "id_only": metrics(0.2, 0.5, 0.1, 0.3),
        "full": metrics(0.4, 0.5, 0.05, 0.2),
    }
    rows = [line.split("|")[1:-1] for line in comparison_markdown(runs).splitlines()[2:]]
    cells = {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}

    assert cells["ID only (SASRec) `id_only`"] == [
        "0.2000",
        "**0.5000**",
        "**0.1000**",
        "**0.3000**",
    ]
    assert cells["LinkedOut (full) `full`"] == ["**0.4000**", "**0.5000**", "0.0500", "0.2000"]


def test_the_papers_figures_are_labelled_as_the_papers_in_their_columns(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()
    page = (sweep_dir / "runs/full/report.html").read_text()
    table = _md_table(md, "All test targets")
    header = table[0]
    rows = {r[0].split(" `")[0]: r for r in table[1:]}

    # Table 3 lists SASRec as HR@10 0.0909, NDCG@10 0.0517, HR@20 0.1278, NDCG@20 0.0610
    sasrec = rows["ID only (SASRec)"]
    assert sasrec[header.index("HR@20 (paper†)")] == "0.1278"
    assert sasrec[header.index("NDCG@10 (paper†)")] == "0.0517"
    assert rows["LinkedOut (full)"][header.index("NDCG@20 (paper†)")] == "0.0664"
    assert rows["Popularity"][header.index("HR@10 (paper†)")] == "–"
    assert "0.0909" not in rows["ID only (SASRec)"][header.index("HR@10")]
    assert "the paper's figures" in md and "MicroLens-100K" in md
    assert "Paper† · MicroLens-100K, other data" in page
    assert re.search(r'<td class="num paper">0\.1015</td>', page)


def test_gate_analysis_names_the_layer_that_dominates_the_gates(runs):
    n = pq.read_table(runs / "full/gates.parquet").num_rows
    gates = np.tile([0.15, 0.7, 0.15], (n, 1))
    table = pa.table(
        {
            "item": [f"x{i}" for i in range(n)],
            **{f"gate_L{layer}": gates[:, j] for j, layer in enumerate(LAYERS)},
            **{f"h_norm_L{layer}": np.ones(n) for layer in LAYERS},
        }
    )
    pq.write_table(table, runs / "full/gates.parquet")

    write_report(runs / "full")

    md = (runs / "full/report.md").read_text()
    assert "**L4 dominates on this data**" in md
    assert "70.0%" in md


def test_prompt_mixture_shows_each_prompts_mean_weight_from_the_bank_run(runs):
    n = pq.read_table(runs / "full_prompt_bank/gates.parquet").num_rows
    table = pq.read_table(runs / "full_prompt_bank/gates.parquet")
    alpha = np.tile([0.8, 0.2], (n, 1))
    alpha[0] = [0.1, 0.9]
    table = table.set_column(
        table.column_names.index("prompt_0"), "prompt_0", pa.array(alpha[:, 0])
    )
    table = table.set_column(
        table.column_names.index("prompt_1"), "prompt_1", pa.array(alpha[:, 1])
    )
    pq.write_table(table, runs / "full_prompt_bank/gates.parquet")

    write_report(runs / "full")

    rows = _md_table((runs / "full/report.md").read_text(), "Prompt mixture: weight per prompt")
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert rows[1][1] == "`Prompt 0: {title}`"
    assert rows[1][2] == f"**{100 * alpha[:, 0].mean():.1f}%**"
    assert rows[2][2] == f"{100 * alpha[:, 1].mean():.1f}%"
    assert rows[1][5] == f"**{round(100 * (n - 1) / n)}%**"  # the top prompt of n - 1 items
    assert (runs / "full/figures/prompt_mixture.png").read_bytes().startswith(PNG_MAGIC)


def test_prompt_mixture_says_how_to_get_one_without_a_bank_run(runs):
    shutil.rmtree(runs / "full_prompt_bank")

    write_report(runs / "full")

    md = (runs / "full/report.md").read_text()
    section = md[md.index("\n## Prompt mixture\n") : md.index("\n## Efficiency\n")]
    assert "No `full_prompt_bank` run beside this one" in section
    assert not (runs / "full/figures/prompt_mixture.png").exists()


def test_gate_sentence_says_no_layer_dominates_when_the_gate_is_uniform():
    g = GateAnalysis(
        layers=[0, 4, 8], items=["a", "b"], gates=np.full((2, 3), 1 / 3), norms=np.ones((2, 3))
    )
    assert g.dominance_sentence().startswith("No layer dominates on this data")


def test_contributions_are_gate_times_norm_normalised_per_item():
    gates = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    norms = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 1.0]])
    g = GateAnalysis(layers=[0, 4, 8], items=["a", "b"], gates=gates, norms=norms)

    c = g.contributions
    np.testing.assert_allclose(c.sum(axis=1), 1.0)
    np.testing.assert_allclose(c[0], [0.5 / 2.0, 0.5 / 2.0, 1.0 / 2.0])


def test_kde_uses_scotts_bandwidth_and_integrates_to_one():
    x = np.random.default_rng(0).normal(0.3, 0.05, 500)
    grid = np.linspace(0.0, 0.6, 2001)
    h = scott_bandwidth(x)
    density = gaussian_kde(x, grid)

    assert h == pytest.approx(x.std(ddof=1) * 500 ** (-0.2))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    manual = np.exp(-0.5 * ((0.3 - x) / h) ** 2).sum() / (500 * h * np.sqrt(2 * np.pi))
    assert gaussian_kde(x, np.array([0.3]))[0] == pytest.approx(manual)
    assert np.isfinite(gaussian_kde(np.full(10, 0.2), grid)).all()  # constant values


def test_extraction_time_is_read_from_the_store_or_reported_not_recorded(runs, sweep_dir):
    write_report(runs / "full")
    assert (
        "| Feature extraction per video (offline, once) | not recorded"
        in (runs / "full/report.md").read_text()
    )

    store = shutil.copytree(sweep_dir / "store", runs.parent / "store")
    _edit_json(runs / "full/config.json", lambda c: c["store"].update({"path": str(store)}))
    version = store / json.loads((runs / "full/config.json").read_text())["store"]["fingerprint"]
    with FeatureStore.open(version).writer() as writer:  # as an extraction run records itself
        writer.add_extraction_run({"extracted": 10, "seconds": 5.0})
    write_report(runs / "full")

    assert (
        "| Feature extraction per video (offline, once) | 0.5 s (10 videos in 1 run"
        in (runs / "full/report.md").read_text()
    )


def test_efficiency_reports_store_bytes_projections_and_measured_latencies(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()
    rows = {r[0]: r[1:] for r in _md_table(md, "Store-and-retrieve costs")}

    assert rows["Store per video (L×K×D×2 bytes, fp16)"] == ["288 B (3×6×8)", "3.15 MB (6×64×4096)"]
    assert rows["Projected, 1M videos"] == ["288 MB", "3.15 TB"]
    assert rows["Projected, 10M videos"] == ["2.88 GB", "31.5 TB"]
    encoding = next(v for k, v in rows.items() if k.startswith("MoE item encoding per item"))
    assert re.fullmatch(r"[\d.]+ (ms|µs)", encoding[0])
    ranking = next(v for k, v in rows.items() if k.startswith("Ranking per query"))
    assert re.fullmatch(r"[\d.]+ ms", ranking[0])
    assert re.fullmatch(r"[\d,]+", rows["Queries per second (one thread, 1000 / p50)"][0])


def test_dataset_statistics_come_from_the_interactions_and_the_store(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()
    table = pq.read_table(sweep_dir / "dataset/interactions.parquet")
    rows = {r[0]: r[1] for r in _md_table(md, "Dataset")}
    n_test = sum(s == "test" for s in table.column("split").to_pylist())

    assert rows["Users"] == f"{len(set(table.column('user').to_pylist())):,}"
    assert rows["Interactions"] == f"{table.num_rows:,}"
    assert rows["Training / validation / test samples"].endswith(f"/ {n_test}")
    assert rows["Extraction failures"] == "1"
    assert rows["Items with features in the store"] == "23"


def test_provenance_names_the_extractor_seed_and_code_commit(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()
    config = json.loads((sweep_dir / "runs/full/config.json").read_text())
    provenance = md[md.index("## Provenance") :]

    assert f"| Extractor fingerprint | `{config['store']['fingerprint']}` |" in provenance
    assert "| Seed | 42 |" in provenance
    assert "| Variant | `full` (LinkedOut (full)) |" in provenance
    assert re.search(
        r"\| Code commit \| ([0-9a-f]{40}( \(\+ uncommitted changes\))?|unknown) \|", provenance
    )
    assert re.search(r"\| Report written \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \|", provenance)


def test_random_weight_extractors_get_the_no_world_knowledge_note(sweep_dir, tmp_path):
    from featurizer.config import model_identity

    checkpoint = tmp_path / "tiny"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "README.md").write_text("# Tiny model (random weights)\n")

    assert random_weights_reason({"random_weights": True})
    assert random_weights_reason({"model": model_identity(str(checkpoint))}, [checkpoint])
    assert random_weights_reason({"model": "local:0123"}, [checkpoint]) is None
    assert "random weights" not in (sweep_dir / "runs/full/report.md").read_text()


def test_variants_from_another_split_are_left_out_of_the_comparison(runs):
    _edit_json(runs / "id_only/config.json", lambda c: c.update({"dataset": "/elsewhere"}))
    write_report(runs / "full")

    md = (runs / "full/report.md").read_text()
    assert "`id_only` (trained on another dataset)" in md
    assert not any(r[0].startswith("ID only") for r in _md_table(md, "All test targets"))


def test_a_run_without_a_layer_gate_says_so(sweep_dir, runs):
    paths = write_report(runs / "id_only")

    md = paths.markdown.read_text()
    assert "has no cross-layer gate" in md
    assert not (runs / "id_only/figures/gate_heatmap.png").exists()


def test_report_paths_carry_the_table_and_embedded_figures_for_dagster(runs):
    paths = write_report(runs / "full")

    assert paths.html == runs / "full/report.html" and paths.markdown == runs / "full/report.md"
    assert "HR@10 (paper†)" in paths.table_markdown and "**" in paths.table_markdown
    assert set(paths.figures_markdown) == set(FIGURES)
    for md in paths.figures_markdown.values():
        data = re.search(r"\(data:image/png;base64,([^)]+)\)", md)[1]
        assert base64.b64decode(data)[:8] == PNG_MAGIC


def test_sweep_command_trains_the_variants_then_writes_the_report(sweep_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(
        [
            "sweep",
            "--dataset",
            str(sweep_dir / "dataset"),
            "--out",
            str(out),
            "--variants",
            "popularity,id_only",
            "--epochs",
            "1",
        ]
    )

    assert code == 0
    assert (out / "popularity/metrics.json").is_file()
    assert (out / "id_only/report.html").is_file()
    assert "report written" in capsys.readouterr().out
    assert (
        "not trained on this split: `last_layer_last_token`"
        in (out / "id_only/report.md").read_text()
    )


def test_sweep_command_rejects_an_unknown_variant(sweep_dir, tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--dataset",
            str(sweep_dir / "dataset"),
            "--out",
            str(tmp_path),
            "--variants",
            "nope",
        ]
    )

    assert code == 1
    assert "unknown variant 'nope'" in capsys.readouterr().err


def test_report_html_renders_in_headless_chromium(sweep_dir, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no headless render")
    from PIL import Image

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",  # let the embedded images decode before the shot
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1280,2400",
            (sweep_dir / "runs/full/report.html").resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    assert screenshot.stat().st_size > 50_000
    with Image.open(screenshot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is None or len(colours) > 20  # not a blank page
    print(f"screenshot: {screenshot}")


def test_the_report_reads_serving_figures_recorded_at_training(sweep_dir):
    recorded = json.loads((sweep_dir / "runs/full/serving.json").read_text())
    md = (sweep_dir / "runs/full/report.md").read_text()

    assert f"{recorded['query']['p50_ms']:.3g} ms" in md
    assert "measured when the run was trained" in md


def test_a_run_without_serving_json_is_reported_as_not_recorded_not_timed(sweep_dir, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sweep_dir / "runs", runs)
    for run in runs.iterdir():
        (run / "serving.json").unlink()

    paths = write_report(runs / "full", out=tmp_path / "report")

    md = paths.markdown.read_text()
    assert paths.markdown == tmp_path / "report" / "report.md"
    assert "not recorded (the run was trained before serving.json was written)" in md
    assert not (runs / "full" / "serving.json").exists()


def test_efficiency_sets_each_trained_store_view_beside_the_full_store(sweep_dir, runs, tmp_path):
    from pipelines.training.views import parse_view, train_views

    store = shutil.copytree(sweep_dir / "store", tmp_path / "store")  # the views go beside it
    train_views(
        sweep_dir / "dataset",
        store,
        runs,
        [parse_view("int8"), parse_view("layers=0,8")],
        epochs=1,
        model_overrides=TINY_MODEL,
        train_overrides={"batch_size": 64},
    )
    write_report(runs / "full")

    md = (runs / "full" / "report.md").read_text()
    rows = {r[0]: r[1:] for r in _md_table(md, "Compact store views")}
    assert rows["full store `full`"][:3] == ["3×6×8 float16", "288 B", "1.00"]
    assert rows["view `int8`"][:3] == ["3×6×8 int8", "180 B", "0.62"]  # + 3×6 float16 scales
    assert rows["view `layers-0-8`"][:3] == ["2×6×8 float16", "192 B", "0.67"]
    metrics = json.loads((runs / "views" / "int8" / "metrics.json").read_text())["test"]
    assert rows["view `int8`"][3] == f"{metrics['overall']['hr@10']:.4f}"
    assert "views" not in {r[0].split("`")[1] for r in _md_table(md, "All test targets")[1:]}


def test_the_report_shows_the_item_index_against_the_exact_scan(runs, tmp_path):
    from pipelines.serving.index import index_run

    index_run(runs / "full")  # a demo-sized catalog: an exact index

    md = write_report(runs / "full", out=tmp_path / "report").markdown.read_text()

    rows = {r[0]: r[1] for r in _md_table(md, "Store-and-retrieve costs")}
    assert rows["Item index (item_index.faiss, faiss)"].startswith("exact: Flat, ")
    recall = rows["Index recall@10 against the exact scan (200 held-out queries)"]
    assert recall == "1.0000; same top-10 on 100% of queries"
    for searcher in ("index", "exact scan"):
        latency = rows[f"Retrieval per query, {searcher} (p50 / p99, one thread)"]
        assert re.fullmatch(r"[\d.]+ (ms|µs) / [\d.]+ (ms|µs)", latency)


def test_a_run_without_an_item_index_is_reported_as_not_built(sweep_dir):
    md = (sweep_dir / "runs/full/report.md").read_text()

    rows = {r[0]: r[1] for r in _md_table(md, "Store-and-retrieve costs")}
    assert rows["Item index (item_index.faiss)"].startswith("not built (`linkedout index ")
    assert not (sweep_dir / "runs/full/item_index.json").exists()
