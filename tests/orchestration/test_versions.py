"""Code versions are digests of the source that produces an asset."""

from __future__ import annotations

import sys

from dagster_project.versions import source_version


def _package(root, body: str) -> None:
    (root / "versioned_pkg").mkdir(exist_ok=True)
    (root / "versioned_pkg" / "__init__.py").write_text("")
    (root / "versioned_pkg" / "step.py").write_text(body)


def test_a_code_version_changes_with_the_source_and_only_with_it(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "x = 1\n")
    before = source_version("versioned_pkg")
    again = source_version("versioned_pkg")
    _package(tmp_path, "x = 2\n")
    after = source_version("versioned_pkg")
    sys.modules.pop("versioned_pkg", None)

    assert before == again
    assert after != before
