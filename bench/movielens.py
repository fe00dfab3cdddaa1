"""MovieLens-100K (943 users, 1,682 movies, 100,000 ratings; GroupLens) as a MicroLens-layout
pairs.csv, read from the copy RecBole ships inside its wheel (recbole 1.2.1:
recbole/dataset_example/ml-100k/ml-100k.inter). The wheel is fetched by pip into a cache
directory and read as a zip; RecBole is not installed. Every rating is an interaction
(implicit feedback, as in SASRec's own MovieLens setting); items are ID-only."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "recbole==1.2.1"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
CACHE = Path.home() / ".cache" / "linkedout-bench"


def wheel_path() -> Path:
    """The RecBole wheel in the cache, fetched with pip (no dependencies) when missing."""
    found = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(CACHE)],
            check=True,
        )
        found = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    return found[0]


def write_movielens_pairs(root: Path) -> int:
    """root/pairs.csv from ml-100k.inter (user, movie, unix timestamp); returns the rows."""
    with zipfile.ZipFile(wheel_path()) as wheel:
        text = wheel.read(MEMBER).decode()
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(reader)  # user_id:token item_id:token rating:float timestamp:float
    user, item, stamp = (
        header.index(f) for f in ("user_id:token", "item_id:token", "timestamp:float")
    )
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(root / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        for row in reader:
            writer.writerow([f"u{row[user]}", f"m{row[item]}", int(float(row[stamp]))])
            n += 1
    return n
