"""Bad interaction files through `linkedout ingest` (and, for hostile item ids, training and a
query): a fatal problem is one error line naming the file and the field; a bad row is one
`rejected: pairs.csv:LINE: ...` line naming its line and column, and the rest is ingested."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import assert_one_line_error, run_cli, tree_snapshot

HEADER = "user,item,timestamp\n"
GOOD = "".join(f"u{u},i{i},{10 * u + i}\n" for u in range(3) for i in range(4))  # lines 2-13


@dataclass(frozen=True)
class Case:
    fault: str
    pairs: bytes
    code: int  # the CLI's exit code
    says: tuple[str, ...]  # substrings of the line the user sees
    titles: str | None = None
    n_interactions: int | None = None  # ingested rows, when it succeeds


CASES = [
    Case(
        "pairs.csv: a missing column",
        b"user,item\nu0,i0\n",
        1,
        ("pairs.csv", "missing required column 'timestamp'"),
    ),
    Case(
        "pairs.csv: a non-integer timestamp",
        (HEADER + GOOD + "u0,i9,12.5\n").encode(),
        0,
        ("pairs.csv:14:", "column 'timestamp' is not an integer: '12.5'"),
        n_interactions=12,
    ),
    Case("pairs.csv: an empty file", b"", 1, ("pairs.csv is empty", "header")),
    Case(
        "pairs.csv: duplicate rows",
        (HEADER + GOOD + "u1,i2,12\n").encode(),
        0,
        ("pairs.csv:14:", "duplicate of line 8"),
        n_interactions=12,
    ),
    Case(
        "pairs.csv: a UTF-8 byte order mark",
        b"\xef\xbb\xbf" + (HEADER + GOOD).encode(),
        0,
        ("12 interactions of 3 users", "0 rows rejected"),
        n_interactions=12,
    ),
    Case(
        "pairs.csv: a user with a single interaction",
        (HEADER + GOOD + "lonely,i0,5\n").encode(),
        0,
        ("pairs.csv:14:", "user lonely has 1 interaction; at least 3"),
        n_interactions=12,
    ),
    Case(
        "pairs.csv: an item that appears nowhere else (titles.csv present)",
        (HEADER + GOOD + "u0,nowhere,99\n").encode(),
        0,
        ("pairs.csv:14:", "unknown item 'nowhere' (not in titles.csv nor videos/)"),
        titles="item,title\n" + "".join(f"i{i},title {i}\n" for i in range(4)),
        n_interactions=12,
    ),
    Case(
        "pairs.csv: an item that appears nowhere else (no titles.csv: an ID-only item)",
        (HEADER + GOOD + "u0,nowhere,99\n").encode(),
        0,
        ("13 interactions of 3 users on 5 items", "0 rows rejected"),
        n_interactions=13,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
def test_bad_interactions_are_one_line_naming_file_line_and_field(
    case: Case, tmp_path: Path, fault_report
) -> None:
    (tmp_path / "pairs.csv").write_bytes(case.pairs)
    if case.titles is not None:
        (tmp_path / "titles.csv").write_text(case.titles)
    result = run_cli(["ingest", tmp_path])
    if case.code:
        line = result.error_line
    else:
        rejected = [ln.strip() for ln in result.stderr.splitlines() if "rejected:" in ln]
        line = rejected[0] if rejected else result.stdout.strip()
    fault_report.record(case.fault, survived=result.code == case.code, message=line)
    assert result.code == case.code, result
    assert "Traceback" not in result.stderr
    if case.code:
        assert_one_line_error(result, *case.says)
        assert not (tmp_path / "interactions.parquet").exists()
    else:
        assert "\n" not in line
        for text in case.says:
            assert text in line, (text, line)
        assert f"{case.n_interactions} interactions" in result.stdout


def test_item_ids_that_climb_out_stay_opaque_ids(tmp_path: Path, fault_report) -> None:
    """`../../etc/passwd`, `a/b`, `..` and ids with commas, pipes and spaces are item ids like
    any other: ingested, trained on, queried, and never used as paths (nothing appears outside
    the dataset and run directories)."""
    dataset, run = tmp_path / "dataset", tmp_path / "run"
    dataset.mkdir()
    hostile = ["../../etc/passwd", "a/b", "..", "a,b", "a|b", "a b", "vidéo_ü"]
    rows = [
        f'u{u},"{item}",{10 * u + k}'
        for u in range(6)
        for k, item in enumerate([*hostile[u % 3 :], "i0", "i1"][:5])
    ]
    (dataset / "pairs.csv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    before = tree_snapshot(tmp_path, exclude=[dataset, run])
    ingested = run_cli(["ingest", dataset])
    trained = run_cli(
        ["train", "--dataset", dataset, "--out", run, "--variant", "id_only", "--epochs", "1"]
    )
    query = run_cli(["recommend", run, "--history", '"../../etc/passwd","a,b",a/b', "--k", "3"])
    after = tree_snapshot(tmp_path, exclude=[dataset, run])
    fault_report.record(
        "item ids ../../etc/passwd, a/b, .., a,b, a|b in pairs.csv (ingest, train, recommend)",
        survived=ingested.code == trained.code == query.code == 0 and before == after,
        message=f"{ingested.stdout.strip()} | recommend: "
        + "; ".join(" ".join(ln.split()) for ln in query.stdout.splitlines()),
    )
    assert ingested.code == 0, ingested.stderr
    assert "0 rows rejected" in ingested.stdout
    assert trained.code == 0, trained.stderr
    assert query.code == 0, query.stderr
    assert len(query.stdout.strip().splitlines()) == 3
    assert before == after  # nothing written next to the dataset and the run
    assert not (tmp_path / "etc").exists() and not (dataset.parent / "a").exists()
