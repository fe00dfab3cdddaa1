"""Loading the frozen video LLM: any local Hugging Face checkpoint (or one in the local cache)
through AutoProcessor and AutoModelForImageTextToText, never downloading; a checkpoint of an
unsupported family is refused before any weights are read. Where a preset names an architecture
and `random_weights` is set, its model is built untrained instead (a GPU path check at a 7B
layout whose weights are not here; such features get their own fingerprint)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from featurizer.config import ExtractorConfig
from featurizer.errors import one_line
from featurizer.families import family_of

log = logging.getLogger(__name__)


RANDOM_INIT_SEED = 0  # weights of a model built from a preset's architecture
_NOT_FOUND_HINT = (
    " (not a local checkpoint directory, not in the local Hugging Face cache, and the preset has "
    "no architecture to build it from)"
)


class ModelUnavailableError(ValueError):
    """The configured model is neither a local checkpoint nor buildable from the preset."""


def load_model(
    config: ExtractorConfig, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any, bool]:
    """(processor, model in eval mode on `device`, built_with_random_weights). Never downloads."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(config.model)
    local_dir = (path / "config.json").is_file()
    source = str(path) if local_dir else config.model
    revision = None if local_dir else config.revision
    model_type = _cached_model_type(source, revision, local_dir)
    if local_dir or model_type is not None:  # another family fails before any weights are read
        family_of(model_type, config.model)
    try:
        processor = AutoProcessor.from_pretrained(source, revision=revision, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            source, revision=revision, local_files_only=True, dtype=dtype
        )
        random_weights = False
    except (OSError, ValueError) as exc:
        if local_dir or not config.architecture or not config.random_weights:
            hint = "" if local_dir else _NOT_FOUND_HINT
            if not local_dir and config.architecture and not config.random_weights:
                hint += " (set random_weights to build the preset's architecture untrained)"
            raise ModelUnavailableError(
                f"cannot load model {config.model!r}{hint}: {one_line(exc, 300)}"
            ) from None
        processor, model = build_random_model(config.architecture, device, dtype)
        random_weights = True
        log.warning(
            "model %r is not available locally: built from the preset's architecture with RANDOM "
            "weights (seed %d); its features carry no world knowledge",
            config.model,
            RANDOM_INIT_SEED,
        )
    model.to(device).eval()
    model.requires_grad_(False)
    return processor, model, random_weights


def build_random_model(
    architecture: dict[str, Any], device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    """A processor and a model built from config values (a config.json as a dict, with
    "model_type"), weights random with a fixed seed, created directly on `device`."""
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig

    from featurizer.families import build_processor

    values = dict(architecture)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ModelUnavailableError("the preset's architecture has no model_type")
    family_of(model_type, "the preset's architecture")
    hf_config = AutoConfig.for_model(model_type, **values)
    processor = build_processor(hf_config)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(RANDOM_INIT_SEED)
        with device:
            model = AutoModelForImageTextToText.from_config(hf_config, dtype=dtype)
    tokenizer = processor.tokenizer
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return processor, model


def _cached_model_type(source: str, revision: str | None, local_dir: bool) -> str | None:
    """The model_type in a local directory's config.json, or in the cached hub checkpoint's;
    None for a hub id that is not cached (the preset's architecture is checked when built)."""

    if local_dir:
        config_json = Path(source) / "config.json"
        try:
            return json.loads(config_json.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelUnavailableError(f"{config_json}: not a readable config: {exc}") from None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json", revision=revision)
    except ValueError:  # not a hub id either (a missing path): from_pretrained names it
        return None
    if not isinstance(cached, str):
        return None
    try:
        return json.loads(Path(cached).read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # an unreadable cache entry fails in from_pretrained, with its reason
