"""Shared fixtures: a small real demo dataset and the tiny real checkpoint, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The tiny checkpoint is local; nothing in the tests may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ACCEPT_CONNECTION_ERROR", "0")


@pytest.fixture(scope="session", autouse=True)
def worker_hooks() -> Iterator[None]:
    """The tests' worker hooks (tests/worker_hooks.py: model-call log, injected deaths, node
    log), off until a test sets their environment variables."""
    from pipelines import hooks
    from tests.worker_hooks import EnvHooks

    hooks.install(EnvHooks())
    yield
    hooks.install(None)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-video demo dataset in MicroLens layout (read-only: copy it before changing it)."""
    from pipelines.demo.generate import make_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "dataset"
    make_demo_dataset(root, n_videos=12, n_users=40, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaVA-OneVision checkpoint, saved and loadable like any local checkpoint."""
    from featurizer.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny-llava-onevision")


@pytest.fixture(scope="session")
def family_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny checkpoint of each family beside the demo's: LLaVA-NeXT-Video, Qwen2.5-VL and
    Qwen3-VL (real architectures, random weights, specials at the families' real ids)."""
    from featurizer.tiny_model import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("family-models")
    families = ("llava_next_video", "qwen2_5_vl", "qwen3_vl")
    return {f: build_tiny_checkpoint(root / f, family=f) for f in families}


@pytest.fixture(scope="session")
def one_prompt_preset(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The demo preset with its first prompt alone (not the bank) and the tiny checkpoint: what
    tests of one store version's mechanics extract (prompt banks have their own tests)."""
    import json

    from featurizer.config import PRESET_DIR

    values = json.loads((PRESET_DIR / "demo.json").read_text())
    values["prompt_template"] = values.pop("prompts")[0]
    values["model"] = str(tiny_model)
    path = tmp_path_factory.mktemp("presets") / "demo-one-prompt.json"
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server (moto) on loopback for the session; tests point the code at it
    with its `env()` (the standard AWS variables) and make buckets with `bucket()`."""
    from tests.s3 import s3_server

    with s3_server() as server:
        yield server
