"""Hidden-state extraction on the tiny checkpoint (random weights: shapes and semantics only)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from featurizer.config import ExtractorConfig, load_preset
from featurizer.extractor import VideoFeatures, VideoLLMExtractor
from featurizer.loading import ModelUnavailableError
from featurizer.merge import merge_tokens

TITLE = "Blue circles drifting left"


@pytest.fixture(scope="module")
def demo_config(tiny_model: Path) -> ExtractorConfig:
    return load_preset("demo").replace(model=str(tiny_model))


@pytest.fixture(scope="module")
def extractor(demo_config: ExtractorConfig) -> VideoLLMExtractor:
    return VideoLLMExtractor(demo_config, device="cpu")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """(8, 224, 224, 3) uint8: a bright square moving across a dark frame."""
    video = np.full((8, 224, 224, 3), 20, dtype=np.uint8)
    for t in range(8):
        video[t, 80:140, 20 * t : 20 * t + 60] = (40, 90, 220)
    return video


@pytest.fixture(scope="module")
def extracted(extractor: VideoLLMExtractor, frames: np.ndarray) -> VideoFeatures:
    return extractor.extract(frames, TITLE)


def test_extract_returns_L_by_K_by_D_float16_with_G_new_tokens(
    extractor: VideoLLMExtractor, extracted: VideoFeatures
) -> None:
    assert extracted.features.shape == (6, 64, extractor.hidden_size)
    assert extractor.hidden_size == 64 and extractor.num_layers == 24
    assert extracted.features.dtype == np.float16
    assert extracted.n_new == 16
    assert extracted.n_old > 513  # 513 video tokens plus the chat-formatted text
    assert np.isfinite(extracted.features).all()


def test_old_rows_are_the_merge_of_the_models_own_prompt_hidden_states(
    extractor: VideoLLMExtractor, frames: np.ndarray, extracted: VideoFeatures
) -> None:
    states = extractor.prompt_hidden_states(frames, TITLE)  # (25,) x (n_old, D)

    assert len(states) == extractor.num_layers + 1
    assert states[0].shape[0] == extracted.n_old
    for row, layer in enumerate(extractor.config.layers):
        expected = merge_tokens(states[layer].float(), 64 - 16).to(torch.float16).numpy()
        np.testing.assert_allclose(extracted.features[row, :48], expected, rtol=1e-2, atol=1e-3)


def test_new_rows_are_the_states_of_the_greedily_generated_tokens(
    extractor: VideoLLMExtractor, frames: np.ndarray, extracted: VideoFeatures
) -> None:
    # Greedy decoding by hand (EOS masked, as min_new_tokens does), then one plain forward over
    # prompt + the 16 generated tokens: their states sit at positions n_old .. n_old + 15.
    model, inputs = extractor.model, extractor.model_inputs(frames, TITLE)
    ids, eos = inputs["input_ids"], extractor.processor.tokenizer.eos_token_id
    with torch.inference_mode():
        for _ in range(16):
            logits = model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values_videos=inputs["pixel_values_videos"],
            ).logits[0, -1]
            logits[eos] = -torch.inf
            ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
        states = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values_videos=inputs["pixel_values_videos"],
            output_hidden_states=True,
        ).hidden_states

    n_old = extracted.n_old
    for row, layer in enumerate(extractor.config.layers):
        expected = states[layer][0, n_old : n_old + 16].to(torch.float16).numpy()
        np.testing.assert_allclose(extracted.features[row, 48:], expected, rtol=1e-2, atol=1e-3)


def test_layer_beyond_the_models_depth_raises_a_clear_value_error(
    demo_config: ExtractorConfig,
) -> None:
    with pytest.raises(ValueError, match=r"tapped layers \[25\] are beyond the model's depth"):
        VideoLLMExtractor(demo_config.replace(layers=(0, 4, 25)), device="cpu")


def test_extractor_is_deterministic(
    extractor: VideoLLMExtractor, frames: np.ndarray, extracted: VideoFeatures
) -> None:
    again = extractor.extract(frames.copy(), TITLE)

    assert np.array_equal(again.features, extracted.features)
    assert (again.n_old, again.n_new) == (extracted.n_old, extracted.n_new)


def test_title_goes_into_the_chat_prompt_and_cannot_add_a_video_slot(
    extractor: VideoLLMExtractor,
) -> None:
    prompt = extractor.render_prompt("cats <video> {x} <|im_end|>")

    assert prompt.startswith('<|im_start|>user\n<video>\nThis short video is titled "cats video')
    assert prompt.count("<video>") == 1
    assert prompt.count("<|im_end|>") == 1
    assert prompt.endswith("<|im_start|>assistant\n")


def test_model_that_is_neither_local_nor_buildable_raises_model_unavailable(
    tmp_path: Path,
) -> None:
    config = ExtractorConfig(model=str(tmp_path / "no-such-model"))

    with pytest.raises(ModelUnavailableError, match="no-such-model"):
        VideoLLMExtractor(config, device="cpu")


def _shrunk(architecture: dict) -> dict:
    """A preset's architecture at toy width (same family, image size, patch, token ids, vocab)."""
    small = copy.deepcopy(architecture)
    text, vision = small["text_config"], small["vision_config"]
    text.update(
        hidden_size=32, intermediate_size=64, num_hidden_layers=30, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    if "head_dim" in text:
        text["head_dim"] = 16
    if "mrope_section" in text.get("rope_parameters", {}):
        text["rope_parameters"]["mrope_section"] = [2, 3, 3]  # 16 / 2 rotary pairs per head
    if "depth" in vision:  # Qwen-VL's own ViT
        vision.update(
            hidden_size=16, intermediate_size=32, depth=2, num_heads=1, out_hidden_size=32
        )
        vision.pop("fullatt_block_indexes", None)
        if "deepstack_visual_indexes" in vision:
            vision["deepstack_visual_indexes"] = [1]
    else:
        vision.update(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=1
        )
    return small


@pytest.mark.parametrize(
    ("preset", "frames", "video_tokens"),
    [
        ("llava-onevision-7b", 1, 196 + 1),  # 384 / 14 -> 27 x 27, pooled to 14 x 14, + newline
        ("llava-next-video-7b", 1, 144),  # 336 / 14 -> 24 x 24, pooled to 12 x 12
        ("qwen2_5_vl-7b", 2, 256),  # one 2-frame patch: 448 / 14 = 32, merged 2 x 2 -> 16 x 16
        ("qwen3_vl-8b", 2, 196),  # one 2-frame patch: 448 / 16 = 28, merged 2 x 2 -> 14 x 14
    ],
)
def test_preset_architecture_builds_a_random_weight_model_of_its_family(
    preset: str, frames: int, video_tokens: int
) -> None:
    base = load_preset(preset)
    config = base.replace(
        model=f"not-in-cache/{preset}",
        architecture=_shrunk(base.architecture),
        torch_dtype="float32",
        frames=frames,
        random_weights=True,
    )
    clip = np.zeros((frames, config.resolution, config.resolution, 3), dtype=np.uint8)

    extractor = VideoLLMExtractor(config, device="cpu")
    inputs = extractor.model_inputs(clip, "a title")
    features = extractor.extract(clip, "a title")

    assert extractor.random_weights
    assert extractor.model.config.model_type == base.architecture["model_type"]
    video_id = base.architecture.get("video_token_id", base.architecture.get("video_token_index"))
    assert int((inputs["input_ids"] == video_id).sum()) == video_tokens
    assert features.features.shape == (6, 64, 32)


def test_missing_model_is_not_built_with_random_weights_unless_asked() -> None:
    config = load_preset("llava-onevision-7b").replace(model="not-in-cache/onevision")

    with pytest.raises(ModelUnavailableError, match="random_weights"):
        VideoLLMExtractor(config, device="cpu")


def test_random_weights_change_the_fingerprint() -> None:
    config = load_preset("llava-onevision-7b")

    assert config.fingerprint() != config.replace(random_weights=True).fingerprint()
