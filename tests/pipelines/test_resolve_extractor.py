"""Choosing the extractor: presets, another local model, the random-weights opt-in."""

from pathlib import Path

import pytest

from pipelines.extraction.preset import resolve_extractor


def test_random_weights_are_off_unless_asked() -> None:
    assert not resolve_extractor("llava-onevision-7b").random_weights


def test_random_weights_opt_in_gets_its_own_fingerprint() -> None:
    real = resolve_extractor("llava-onevision-7b")
    untrained = resolve_extractor("llava-onevision-7b", random_weights=True)

    assert untrained.random_weights
    assert untrained.fingerprint() != real.fingerprint()


def test_model_overrides_the_presets_checkpoint(tiny_model: Path) -> None:
    config = resolve_extractor("demo", model=str(tiny_model))

    assert config.model == str(tiny_model)


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="llava-onevision-7b"):
        resolve_extractor("no-such-preset")
