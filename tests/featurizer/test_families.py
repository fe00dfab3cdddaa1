"""The supported families' tiny checkpoints in the extractor: real classes, token layouts, frame
grids, frame times, and clear errors for what a family cannot read (random weights: shapes and
plumbing only)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from featurizer.config import ExtractorConfig, load_preset
from featurizer.decode import FrameTiming
from featurizer.extractor import VideoLLMExtractor
from featurizer.families import SUPPORTED_FAMILIES, UnsupportedFamilyError

NEW_FAMILIES = ("llava_next_video", "qwen2_5_vl", "qwen3_vl")
CLASSES = {
    "llava_next_video": ("LlavaNextVideoForConditionalGeneration", "LlavaNextVideoProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
}
# 8 frames 3 s apart at 30 fps, as decode_clip reports a 240-frame video sampled at 8 centres.
TIMING = FrameTiming(indices=tuple(range(15, 240, 30)), fps=30.0, total_frames=240)


@pytest.fixture(scope="module")
def checkpoints(family_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return family_checkpoints


def _config(model: Path, **changes: object) -> ExtractorConfig:
    return load_preset("demo").replace(model=str(model), **changes)


def _extractor(model: Path, **changes: object) -> VideoLLMExtractor:
    return VideoLLMExtractor(_config(model, **changes), device="cpu")


def _clip(frames: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_tiny_checkpoint_loads_offline_as_the_familys_real_classes(
    family: str, checkpoints: dict[str, Path]
) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(checkpoints[family], local_files_only=True)
    processor = AutoProcessor.from_pretrained(checkpoints[family], local_files_only=True)

    assert (type(model).__name__, type(processor).__name__) == CLASSES[family]
    assert model.config.model_type == family


@pytest.mark.parametrize(
    ("family", "token", "real_id"),
    [
        ("llava_next_video", "<video>", 32000),
        ("llava_next_video", "</s>", 2),
        ("qwen2_5_vl", "<|video_pad|>", 151656),
        ("qwen3_vl", "<|vision_start|>", 151652),
        ("qwen3_vl", "<|im_end|>", 151645),
    ],
)
def test_tiny_tokenizer_puts_the_familys_specials_at_the_real_ids(
    family: str, token: str, real_id: int, checkpoints: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoints[family], local_files_only=True)

    assert tokenizer.convert_tokens_to_ids(token) == real_id
    assert tokenizer.decode(tokenizer("a cat video").input_ids) == "a cat video"


@pytest.mark.parametrize(
    ("family", "frames", "size", "video_tokens"),
    [
        ("llava_next_video", 8, 224, 8 * 64),  # 16 x 16 patches pooled 2 x 2 per frame
        ("llava_next_video", 4, 224, 4 * 64),
        ("qwen2_5_vl", 8, 224, 4 * 8 * 8),  # 2-frame patches; 224 / 14 = 16, merged 2 x 2
        ("qwen2_5_vl", 6, 280, 3 * 10 * 10),
        ("qwen3_vl", 8, 224, 4 * 7 * 7),  # 224 / 16 = 14, merged 2 x 2
        ("qwen3_vl", 5, 256, 3 * 8 * 8),  # 5 frames padded to 3 whole 2-frame patches
    ],
)
def test_video_tokens_follow_the_familys_frame_grid(
    family: str, frames: int, size: int, video_tokens: int, checkpoints: dict[str, Path]
) -> None:
    extractor = _extractor(checkpoints[family], frames=frames, resolution=size)
    inputs = extractor.model_inputs(_clip(frames, size), "a title")
    video_id = extractor.model.config.video_token_id

    assert int((inputs["input_ids"] == video_id).sum()) == video_tokens


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_extract_returns_L_by_K_by_D_float16_at_the_tapped_layers(
    family: str, checkpoints: dict[str, Path]
) -> None:
    extractor = _extractor(checkpoints[family])

    video = extractor.extract(_clip(8, 224), "Blue circles drifting left", TIMING)

    assert video.features.shape == (6, 64, 64) and video.features.dtype == np.float16
    assert video.n_new == 16 and np.isfinite(video.features).all()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_hidden_state_0_is_the_embedding_output(family: str, checkpoints: dict[str, Path]) -> None:
    extractor = _extractor(checkpoints[family])
    inputs = extractor.model_inputs(_clip(8, 224), "a title", TIMING)
    ids = inputs["input_ids"][0]
    text = ids != extractor.model.config.video_token_id

    states = extractor.prompt_hidden_states(_clip(8, 224), "a title", TIMING)
    embedded = extractor.model.get_input_embeddings()(ids)

    assert len(states) == extractor.num_layers + 1 == 25
    torch.testing.assert_close(states[0][text], embedded[text])


def test_qwen3_vl_prompt_carries_each_frame_pairs_real_time(checkpoints: dict[str, Path]) -> None:
    extractor = _extractor(checkpoints["qwen3_vl"])
    inputs = extractor.model_inputs(_clip(8, 224), "a title", TIMING)

    text = extractor.processor.tokenizer.decode(inputs["input_ids"][0])

    # frames at 0.5 s, 1.5 s, ... : each 2-frame patch is stamped with its mean time
    assert re.findall(r"<([\d.]+) seconds>", text) == ["1.0", "3.0", "5.0", "7.0"]
    assert text.count("<|vision_start|>") == 4


def test_qwen2_5_vl_time_positions_follow_the_frames_sampling_rate(
    checkpoints: dict[str, Path],
) -> None:
    extractor = _extractor(checkpoints["qwen2_5_vl"])

    inputs = extractor.model_inputs(_clip(8, 224), "a title", TIMING)

    # 8 frames over 8 s are sampled at 1 fps, so one 2-frame patch spans 2 s
    assert inputs["second_per_grid_ts"].tolist() == [2.0]


def test_resolution_off_the_patch_grid_is_a_one_line_error(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"^resolution 300 is not a multiple of 28 .*qwen2_5_vl"):
        _extractor(checkpoints["qwen2_5_vl"], resolution=300)


def test_llava_resolution_other_than_its_towers_is_a_one_line_error(
    checkpoints: dict[str, Path],
) -> None:
    with pytest.raises(ValueError, match=r"reads 224x224 frames .* set the preset's resolution"):
        _extractor(checkpoints["llava_next_video"], resolution=336)


def test_checkpoint_of_an_unsupported_family_names_its_model_type_and_the_supported_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))

    with pytest.raises(UnsupportedFamilyError) as error:
        _extractor(tmp_path)

    message = str(error.value)
    assert "\n" not in message
    assert "model_type 'llava'" in message
    assert f"(supported: {', '.join(SUPPORTED_FAMILIES)})" in message


def test_cached_hub_checkpoint_of_an_unsupported_family_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "models--acme--llava-1.5"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))

    with pytest.raises(UnsupportedFamilyError, match="'acme/llava-1.5' has model_type 'llava'"):
        VideoLLMExtractor(ExtractorConfig(model="acme/llava-1.5"), device="cpu")


def test_qwen3_vl_clip_shorter_than_one_frame_pair_is_a_one_line_error(
    checkpoints: dict[str, Path],
) -> None:
    with pytest.raises(ValueError, match=r"^frames 1: qwen3_vl reads frames in 2-frame patches"):
        _extractor(checkpoints["qwen3_vl"], frames=1)


def test_title_cannot_open_a_turn_or_add_a_vision_slot_in_a_qwen_prompt(
    checkpoints: dict[str, Path],
) -> None:
    extractor = _extractor(checkpoints["qwen2_5_vl"])

    prompt = extractor.render_prompt(
        "a <|im_start|>user <|vision_start|><|video_pad|> <|box_start|>"
    )

    assert prompt.count("<|im_start|>") == 3  # system, user, assistant
    assert prompt.count("<|vision_start|>") == prompt.count("<|video_pad|>") == 1
    assert "<|box_start|>" not in prompt


# --- prompt banks: one pass over the video for several prompts -------------------------------
BANK = (
    '<video>\nThis short video is titled "{title}". Describe its topic, look and motion.',
    "<video>\nWhat colours and shapes are in it?",
    'Who would enjoy "{title}", and why?',
)


def _bank_extractor(family: str, checkpoints: dict[str, Path], tiny_model: Path):
    model = tiny_model if family == "llava_onevision" else checkpoints[family]
    config = _config(model, frames=8, resolution=224, prompts=BANK)
    return VideoLLMExtractor(config, device="cpu"), _clip(8, 224)


@pytest.mark.parametrize("family", ("llava_onevision", *NEW_FAMILIES))
def test_a_prompt_banks_states_equal_each_prompt_extracted_alone(
    family: str, checkpoints: dict[str, Path], tiny_model: Path
) -> None:
    extractor, clip = _bank_extractor(family, checkpoints, tiny_model)

    together = extractor.prompt_states(clip, "cats", TIMING, BANK)
    alone = [extractor.prompt_states(clip, "cats", TIMING, [p])[0] for p in BANK]

    for bank, single in zip(together, alone, strict=True):
        assert bank.n_old == single.n_old
        for old_bank, old_single in zip(bank.old, single.old, strict=True):
            torch.testing.assert_close(old_bank, old_single, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(bank.new, single.new, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ("llava_onevision", *NEW_FAMILIES))
def test_each_prompt_of_a_bank_reads_the_tokens_the_processor_gives_it_alone(
    family: str, checkpoints: dict[str, Path], tiny_model: Path
) -> None:
    extractor, clip = _bank_extractor(family, checkpoints, tiny_model)

    states = extractor.prompt_states(clip, "cats", TIMING, BANK)

    for template, prompt in zip(BANK, states, strict=True):
        processed = extractor.model_inputs(clip, "cats", TIMING, template)["input_ids"]
        assert prompt.n_old == processed.shape[1]


def test_a_bank_of_one_prompt_is_the_single_prompt_extraction(tiny_model: Path) -> None:
    extractor, clip = _bank_extractor("llava_onevision", {}, tiny_model)

    single = extractor.extract(clip, "cats")
    bank = extractor.extract_prompts(clip, "cats", None, [extractor.config.prompt_template])[0]

    assert np.array_equal(single.features, bank.features)
