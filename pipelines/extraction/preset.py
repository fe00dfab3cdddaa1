"""Which extractor a run uses: a preset (a name or a JSON file, default `demo`), optionally with
another local checkpoint, checked before any work (a model of an unsupported family, or a
resolution its processor would not keep, is refused in one line). A preset's tiny checkpoint is
built on first use."""

from __future__ import annotations

import logging
from pathlib import Path

from featurizer.config import ExtractorConfig, load_preset, model_values
from featurizer.families import SUPPORTED_FAMILIES, check_frames, family_of

log = logging.getLogger(__name__)


DEMO_MODEL_DIR = Path("data/tiny-model")


def resolve_extractor(
    preset: str | None = None, model: str | None = None, random_weights: bool = False
) -> ExtractorConfig:
    """The extractor for a preset name or file (default `demo`), optionally with another local
    model. A preset's tiny checkpoint (`data/tiny-model` for the demo, `data/tiny-<family>` for
    the `tiny-<family>` presets) is built on first use. `random_weights` builds a preset's
    architecture untrained where its checkpoint is not available (a GPU path check; such
    features get their own fingerprint)."""
    config = load_preset(preset or "demo")
    if model:
        config = config.replace(model=str(model))
    if random_weights:
        config = config.replace(random_weights=True)
    family = tiny_family_of(config.model)
    if not model and family and not Path(config.model).exists():
        from featurizer.tiny_model import build_tiny_checkpoint

        log.info("building the tiny %s checkpoint in %s (random weights)", family, config.model)
        build_tiny_checkpoint(Path(config.model), family=family)
    return config


def check_model_family(config: ExtractorConfig) -> None:
    """Refuse, before any work, a model of a family the extractor cannot read or a resolution
    its processor would not keep (read from config.json or the preset's architecture; a hub
    id in the cache is checked when its actor loads it)."""
    if not (Path(config.model) / "config.json").is_file() and not config.random_weights:
        return
    values = model_values(config)
    family = family_of(values.get("model_type"), config.model)
    try:
        check_frames(family, values, config.frames, config.resolution)
    except (KeyError, TypeError):  # an unusual config.json: the actor's loaded config decides
        return


def tiny_family_of(model: str) -> str | None:
    """The family of a tiny checkpoint the project builds itself at this path, or None."""
    path = Path(model)
    if path == DEMO_MODEL_DIR:
        return "llava_onevision"
    name = path.name.removeprefix("tiny-")
    if path.parent == DEMO_MODEL_DIR.parent and name != path.name and name in SUPPORTED_FAMILIES:
        return name
    return None
