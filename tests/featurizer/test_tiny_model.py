"""The tiny demo checkpoint: a real, offline-loadable LLaVA-OneVision with seeded random weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from featurizer.families import FAMILIES, build_tokenizer
from featurizer.tiny_model import CheckpointExistsError, build_tiny_checkpoint


@pytest.fixture(scope="module")
def processor(tiny_model: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model)


def test_tiny_checkpoint_loads_offline_through_auto_classes(tiny_model: Path, processor) -> None:
    from transformers import AutoModelForImageTextToText, LlavaOnevisionForConditionalGeneration

    assert os.environ["HF_HUB_OFFLINE"] == "1"

    model = AutoModelForImageTextToText.from_pretrained(tiny_model)

    assert isinstance(model, LlavaOnevisionForConditionalGeneration)
    assert model.config.text_config.num_hidden_layers == 24
    assert model.config.text_config.model_type == "qwen2"
    assert model.config.vision_config.model_type == "siglip_vision_model"
    assert type(processor).__name__ == "LlavaOnevisionProcessor"
    assert "random" in (tiny_model / "README.md").read_text().lower()


def test_processor_expands_8_frames_at_224_into_513_video_tokens(processor) -> None:
    frames = np.zeros((8, 224, 224, 3), dtype=np.uint8)
    conversation = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    batch = processor(text=[text], videos=[frames], return_tensors="pt")

    assert text.startswith("<|im_start|>user\n<video>\n")
    assert text.endswith("<|im_start|>assistant\n")
    assert int((batch["input_ids"] == processor.video_token_id).sum()) == 8 * 8 * 8 + 1
    assert tuple(batch["pixel_values_videos"].shape) == (1, 8, 3, 224, 224)


def test_same_seed_gives_identical_weights(tmp_path: Path) -> None:
    a = load_file(build_tiny_checkpoint(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_checkpoint(tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(build_tiny_checkpoint(tmp_path / "c", seed=4) / "model.safetensors")

    assert a.keys() == b.keys()
    assert all(a[name].equal(b[name]) for name in a)
    assert not all(a[name].equal(c[name]) for name in a)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_tokenizer_round_trips_any_text_and_keeps_specials_whole() -> None:
    tokenizer = build_tokenizer(FAMILIES["llava_onevision"])
    text = 'Cats & dogs: "Ünïcödé" 猫 🐈 <video>\n'

    ids = tokenizer(text).input_ids

    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.video_token_id) == 1


def test_tokenizer_can_place_specials_at_a_large_models_ids() -> None:
    family = FAMILIES["llava_onevision"]
    tokenizer = build_tokenizer(family, family.real_ids)

    assert tokenizer.video_token_id == 151647
    assert tokenizer.eos_token_id == 151645
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tokenizer.decode(tokenizer("a video").input_ids) == "a video"


def test_existing_checkpoint_is_refused_unless_forced(tiny_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    shutil.copytree(tiny_model, target)
    before = (target / "model.safetensors").read_bytes()

    with pytest.raises(CheckpointExistsError, match="already holds a checkpoint.*--force"):
        build_tiny_checkpoint(target, seed=1)
    assert (target / "model.safetensors").read_bytes() == before

    build_tiny_checkpoint(target, seed=1, force=True)
    assert (target / "model.safetensors").read_bytes() != before
