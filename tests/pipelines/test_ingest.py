"""Ingest: pairs.csv/titles.csv validated into interactions.parquet with the leave-one-out split."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.dataset.ingest import (
    SCHEMA,
    ingest,
    read_current_interactions,
    read_interactions,
    read_titles,
)
from pipelines.errors import PipelineError

GOOD = "u1,a,1\nu1,b,2\nu1,c,3\nu2,a,5\nu2,c,6\nu2,b,7\n"  # lines 2-7 after the header


def _dataset(
    root: Path, pairs: str | bytes | None, titles: str | None = None, videos: tuple[str, ...] = ()
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if pairs is not None:
        data = pairs.encode("utf-8") if isinstance(pairs, str) else pairs
        (root / "pairs.csv").write_bytes(data)
    if titles is not None:
        (root / "titles.csv").write_text(titles, encoding="utf-8")
    for item in videos:
        (root / "videos").mkdir(exist_ok=True)
        (root / "videos" / f"{item}.mp4").write_bytes(b"")
    return root


def _rows(dataset: Path) -> list[tuple[str, str, int, str]]:
    table = read_interactions(dataset)
    return list(zip(*(table.column(name).to_pylist() for name in SCHEMA.names), strict=True))


@pytest.fixture(scope="module")
def ingested_demo(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    dataset = tmp_path_factory.mktemp("ingest") / "dataset"
    shutil.copytree(demo_dataset, dataset)
    return dataset, ingest(dataset)


# --- the demo dataset ---------------------------------------------------------------------------


def test_demo_dataset_ingests_without_rejections(ingested_demo) -> None:
    dataset, result = ingested_demo

    assert result.rejected == []
    assert result.n_users == 40 and result.n_valid == 40 and result.n_test == 40
    assert result.n_train + 80 == result.n_interactions
    assert result.path == str(dataset / "interactions.parquet")
    assert "\n" not in result.describe()


def test_parquet_has_the_contract_schema(ingested_demo) -> None:
    dataset, result = ingested_demo

    table = pq.read_table(dataset / "interactions.parquet")

    assert table.schema.names == ["user", "item", "timestamp", "split"]
    assert table.schema.field("user").type == pa.string()
    assert table.schema.field("item").type == pa.string()
    assert table.schema.field("timestamp").type == pa.int64()
    assert table.schema.field("split").type == pa.string()
    assert set(table.column("split").to_pylist()) == {"train", "valid", "test"}
    assert table.num_rows == result.n_interactions


def test_split_holds_for_every_user(ingested_demo) -> None:
    dataset, _ = ingested_demo
    by_user: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for user, _item, timestamp, split in _rows(dataset):
        by_user[user][split].append(timestamp)

    assert len(by_user) == 40
    for splits in by_user.values():
        assert len(splits["test"]) == 1 and len(splits["valid"]) == 1
        assert len(splits["train"]) >= 1
        assert splits["test"][0] >= splits["valid"][0] >= max(splits["train"])


def test_cold_start_targets_are_in_the_test_split_only(ingested_demo) -> None:
    dataset, _ = ingested_demo
    splits_of: dict[str, set[str]] = defaultdict(set)
    for _user, item, _ts, split in _rows(dataset):
        splits_of[item].add(split)
    test_only = {item for item, splits in splits_of.items() if splits == {"test"}}

    with (dataset / "topics.csv").open(newline="", encoding="utf-8") as f:
        cold = {row["item"] for row in csv.DictReader(f) if row["cold_start"] == "1"}
    assert cold
    assert test_only == cold


def test_titles_are_read_for_every_item(ingested_demo) -> None:
    dataset, _ = ingested_demo

    titles = read_titles(dataset)

    assert {item for _user, item, _ts, _split in _rows(dataset)} <= set(titles)
    assert all(titles.values())


# --- the command line ---------------------------------------------------------------------------


def test_cli_ingest_returns_0_on_the_demo_data(
    demo_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(demo_dataset, dataset)

    assert main(["ingest", str(dataset)]) == 0
    assert "40 users" in capsys.readouterr().out
    assert (dataset / "interactions.parquet").is_file()


def test_cli_ingest_without_pairs_returns_1_with_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path / "dataset", pairs=None, titles="item,title\na,A\n")

    assert main(["ingest", str(dataset)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "pairs.csv" in err and "Traceback" not in err


# --- rejected rows: the good ones stay ---------------------------------------------------------


def test_wrong_number_of_fields_is_rejected_with_its_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u1,d\nu2,d,8,extra\n")

    result = ingest(dataset)

    assert result.rejected == [
        "pairs.csv:8: expected 3 fields, found 2",
        "pairs.csv:9: expected 3 fields, found 4",
    ]
    assert result.n_interactions == 6


def test_empty_user_is_rejected_with_its_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + " ,d,8\n")

    result = ingest(dataset)

    assert result.rejected == ["pairs.csv:8: column 'user' is empty"]
    assert result.n_interactions == 6


def test_empty_item_is_rejected_with_its_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u1,,8\n")

    result = ingest(dataset)

    assert result.rejected == ["pairs.csv:8: column 'item' is empty"]
    assert result.n_interactions == 6


def test_non_integer_timestamp_is_rejected_with_its_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u1,d,12.5\nu1,e,soon\n")

    result = ingest(dataset)

    assert result.rejected == [
        "pairs.csv:8: column 'timestamp' is not an integer: '12.5'",
        "pairs.csv:9: column 'timestamp' is not an integer: 'soon'",
    ]
    assert result.n_interactions == 6


def test_duplicate_row_is_rejected_naming_the_first_line(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u1,b,2\n")

    result = ingest(dataset)

    assert result.rejected == ["pairs.csv:8: duplicate of line 3"]
    assert result.n_interactions == 6


def test_unknown_item_is_rejected_when_titles_exist(tmp_path: Path) -> None:
    dataset = _dataset(
        tmp_path,
        "user,item,timestamp\n" + GOOD + "u1,zzz,9\nu2,v,9\n",
        titles="item,title\na,A\nb,B\n",
        videos=("c", "v"),  # c and v have a video but no title: known
    )

    result = ingest(dataset)

    assert result.rejected == ["pairs.csv:8: unknown item 'zzz' (not in titles.csv nor videos/)"]
    assert result.n_interactions == 7


def test_any_item_is_accepted_without_titles(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u1,zzz,9\n")

    result = ingest(dataset)

    assert result.rejected == []
    assert result.n_items == 4


def test_user_with_fewer_than_3_interactions_is_rejected(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD + "u3,a,1\nu3,b,2\n")

    result = ingest(dataset)

    reason = "user u3 has 2 interactions; at least 3 are needed for a train/valid/test split"
    assert result.rejected == [f"pairs.csv:8: {reason}", f"pairs.csv:9: {reason}"]
    assert result.n_users == 2


def test_bad_title_rows_are_reported_and_good_ones_kept(tmp_path: Path) -> None:
    dataset = _dataset(
        tmp_path, "user,item,timestamp\n" + GOOD, titles="item,title\na,A\nb\nb,B\na,again\nc,C\n"
    )

    result = ingest(dataset)

    assert result.rejected == [
        "titles.csv:3: expected 2 fields, found 1",
        "titles.csv:5: item 'a' already has a title on line 2",
    ]
    assert read_titles(dataset) == {"a": "A", "b": "B", "c": "C"}


# --- accepted formats ---------------------------------------------------------------------------


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, b"\xef\xbb\xbf" + ("user,item,timestamp\n" + GOOD).encode())

    result = ingest(dataset)

    assert result.rejected == [] and result.n_interactions == 6


def test_microlens_aliases_are_accepted_in_any_case_and_order(tmp_path: Path) -> None:
    pairs = "Video_ID,USER_ID,ts\n" + "".join(
        f"{item},{user},{ts}\n" for user, item, ts in (r.split(",") for r in GOOD.split())
    )
    dataset = _dataset(tmp_path, pairs, titles="ITEM_ID,Title\na,A\nb,B\nc,C\n")

    result = ingest(dataset)

    assert result.rejected == []
    assert ("u1", "c", 3, "test") in _rows(dataset)
    assert read_titles(dataset)["a"] == "A"


def test_quoted_ids_with_commas_pipes_and_unicode_survive(tmp_path: Path) -> None:
    pairs = (
        "user,item,timestamp\n"
        'u1,"a,b",1\n'
        "u1,x|y,2\n"
        'u1,"two\nlines",3\n'  # one record over lines 4-5
        "u1,vidéo 1,4\n"
        "u1,,6\n"  # line 7: the count of the multi-line record is right
    )
    dataset = _dataset(tmp_path, pairs)

    result = ingest(dataset)

    assert result.rejected == ["pairs.csv:7: column 'item' is empty"]
    assert [row[1] for row in _rows(dataset)] == ["a,b", "x|y", "two\nlines", "vidéo 1"]


def test_timestamp_ties_keep_file_order(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\nu1,c,5\nu1,a,1\nu1,b,5\n")

    ingest(dataset)

    assert [(row[1], row[3]) for row in _rows(dataset)] == [
        ("a", "train"),
        ("c", "valid"),
        ("b", "test"),
    ]


def test_rerun_replaces_the_parquet_and_leaves_no_temp_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    (dataset / "pairs.csv").write_text("user,item,timestamp\nu1,a,1\nu1,b,2\nu1,c,3\n")

    result = ingest(dataset)

    assert read_interactions(dataset).num_rows == result.n_interactions == 3
    assert sorted(p.name for p in dataset.iterdir()) == ["interactions.parquet", "pairs.csv"]


def test_failed_write_keeps_the_previous_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    before = (dataset / "interactions.parquet").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(OSError):
        ingest(dataset)

    assert (dataset / "interactions.parquet").read_bytes() == before
    assert sorted(p.name for p in dataset.iterdir()) == ["interactions.parquet", "pairs.csv"]


# --- fatal errors name the file -----------------------------------------------------------------


def test_missing_pairs_raises_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"pairs\.csv not found"):
        ingest(tmp_path)


def test_empty_pairs_raises_naming_the_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "")

    with pytest.raises(PipelineError, match=r"pairs\.csv is empty"):
        ingest(dataset)


def test_missing_column_raises_naming_file_and_column(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item\nu1,a\n")

    with pytest.raises(PipelineError, match=r"pairs\.csv: missing required column 'timestamp'"):
        ingest(dataset)


def test_titles_without_title_column_raise_naming_the_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD, titles="item,name_of_video\n")

    with pytest.raises(PipelineError, match=r"titles\.csv: missing required column 'title'"):
        ingest(dataset)


def test_no_valid_rows_left_raises_naming_the_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\nu1,a,1\nu1,b,2\n")

    with pytest.raises(PipelineError, match=r"pairs\.csv: no valid rows left \(2 rejected"):
        ingest(dataset)
    assert not (dataset / "interactions.parquet").exists()


def test_non_utf8_file_raises_naming_the_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\nu1,vid\xe9o,1\n".encode("latin-1"))

    with pytest.raises(PipelineError, match=r"pairs\.csv is not UTF-8"):
        ingest(dataset)


def test_read_interactions_before_ingest_says_to_run_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"interactions\.parquet.*linkedout ingest"):
        read_interactions(tmp_path)


def test_read_titles_without_titles_file_is_empty(tmp_path: Path) -> None:
    assert read_titles(tmp_path) == {}


# --- inputs changed after ingest ----------------------------------------------------------------


def test_pairs_csv_edited_after_ingest_stops_the_training_read(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    (dataset / "pairs.csv").write_text("user,item,timestamp\n" + GOOD + "u3,a,1\n")

    with pytest.raises(PipelineError) as info:
        read_current_interactions(dataset)

    message = str(info.value)
    assert "pairs.csv changed" in message and "content differs" in message
    assert f"linkedout ingest {dataset}" in message and "\n" not in message


def test_titles_csv_added_after_ingest_stops_the_training_read(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    (dataset / "titles.csv").write_text("item,title\na,A\nb,B\nc,C\n")

    with pytest.raises(PipelineError, match="titles.csv was added"):
        read_current_interactions(dataset)


def test_pairs_csv_touched_but_unchanged_is_still_current(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    (dataset / "pairs.csv").write_text("user,item,timestamp\n" + GOOD)  # new mtime, same bytes

    assert read_current_interactions(dataset).num_rows == 6


def test_interactions_of_an_older_ingest_are_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = _dataset(tmp_path, "user,item,timestamp\n" + GOOD)
    ingest(dataset)
    path = dataset / "interactions.parquet"
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)

    assert read_current_interactions(dataset).num_rows == 6
    assert "records no source files" in caplog.text
