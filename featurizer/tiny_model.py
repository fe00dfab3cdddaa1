"""Tiny checkpoints: the real architecture of each supported family at toy size, random weights.

`build_tiny_checkpoint(dir, family=F)` writes a directory that loads like any local Hugging Face
checkpoint (`AutoProcessor` / `AutoModelForImageTextToText`, offline): the family's real model
class with a 2-layer vision tower and a 24-layer language model 64 wide, seeded random weights, a
byte-level BPE tokenizer trained here (`featurizer.tokenizer`), and the family's real processor
class with its chat template (`featurizer.families.build_processor`). Its features carry no world
knowledge: they exercise the pipeline's shapes, plumbing and determinism, not recommendation
quality.

| family            | vision tower          | frame input              | tokens per 8 frames at 224 |
|-------------------|-----------------------|--------------------------|----------------------------|
| llava_onevision   | SigLIP, patch 14      | 224 x 224, pooled 2 x 2  | 8 x 64 + 1 = 513           |
| llava_next_video  | CLIP, patch 14        | 224 x 224, pooled 2 x 2  | 8 x 64 = 512               |
| qwen2_5_vl        | Qwen2.5-VL ViT, 14    | dynamic, 2 frames x 28 px | 4 x 8 x 8 = 256            |
| qwen3_vl          | Qwen3-VL ViT, 16      | dynamic, 2 frames x 32 px | 4 x 7 x 7 = 196            |

The default family, `llava_onevision`, is the demo's checkpoint: its tokenizer numbers its
specials right after the trained vocabulary (1024..), which the demo's store fingerprints
depend on. The other families' tokenizers put their specials at the real
checkpoints' ids (Qwen's <|video_pad|> = 151656, LLaVA-NeXT-Video's <video> = 32000), so a tiny
checkpoint speaks its family's token-id layout; their embedding tables are sized to match.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

from featurizer.families import FAMILIES, SUPPORTED_FAMILIES, build_processor, build_tokenizer

DEFAULT_FAMILY = "llava_onevision"
TINY_IMAGE_SIZE = 224
TINY_TEXT_LAYERS = 24
TINY_HIDDEN = 64
_TINY_TEXT = {  # shared by every family's language model
    "hidden_size": TINY_HIDDEN,
    "intermediate_size": 128,
    "num_hidden_layers": TINY_TEXT_LAYERS,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
_TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}


def grid_pinpoints(image_size: int, n: int = 6) -> list[list[int]]:
    """LLaVA-OneVision's any-res grid (1..6 tiles a side, 36 layouts) at another tile size."""
    return [[image_size * i, image_size * j] for i in range(1, n + 1) for j in range(1, n + 1)]


def _vocab_size(tokenizer: PreTrainedTokenizerFast) -> int:
    n_ids = max(tokenizer.get_vocab().values()) + 1
    return -(-n_ids // 64) * 64  # padded to a multiple of 64, as the llava-hf conversions do


def tiny_config(
    tokenizer: PreTrainedTokenizerFast, family: str = DEFAULT_FAMILY
) -> PretrainedConfig:
    """The family's config at toy size, with the tokenizer's special-token ids."""
    from transformers import AutoConfig

    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    text = {**_TINY_TEXT, "vocab_size": _vocab_size(tokenizer), **ids}
    if family == "llava_onevision":
        return AutoConfig.for_model(
            "llava_onevision",
            vision_config={
                "model_type": "siglip_vision_model", **_TINY_VISION, "num_attention_heads": 2,
                "image_size": TINY_IMAGE_SIZE, "patch_size": 14, "vision_use_head": False,
            },  # 224 / 14 = 16 -> 256 patches per frame, pooled 2x2 -> 64 tokens per frame
            text_config={
                "model_type": "qwen2", **text, "rope_theta": 1000000.0,
                "bos_token_id": tokenizer.pad_token_id,  # Qwen2 has no BOS; config names <|endoftext|>
            },
            image_token_index=tokenizer.image_token_id,
            video_token_index=tokenizer.video_token_id,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            image_grid_pinpoints=grid_pinpoints(TINY_IMAGE_SIZE),
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=False,
        )  # fmt: skip
    if family == "llava_next_video":
        return AutoConfig.for_model(
            "llava_next_video",
            vision_config={
                "model_type": "clip_vision_model", **_TINY_VISION, "num_attention_heads": 2,
                "image_size": TINY_IMAGE_SIZE, "patch_size": 14, "projection_dim": 32,
            },  # 256 patches per frame + CLS, average-pooled 2x2 -> 64 tokens per frame
            text_config={"model_type": "llama", **text, "bos_token_id": tokenizer.bos_token_id},
            image_token_index=tokenizer.image_token_id,
            video_token_index=tokenizer.video_token_id,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            spatial_pool_mode="average",
            spatial_pool_stride=2,
            image_grid_pinpoints=[[TINY_IMAGE_SIZE, 2 * TINY_IMAGE_SIZE]],
            tie_word_embeddings=False,
        )  # fmt: skip
    if family in ("qwen2_5_vl", "qwen3_vl"):
        # M-RoPE splits each head's 16 / 2 = 8 rotary frequencies over (time, height, width).
        rope = {"rope_type": "default", "mrope_section": [2, 3, 3]}
        vision = {
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
            "out_hidden_size": TINY_HIDDEN, "spatial_merge_size": 2, "temporal_patch_size": 2,
        }  # fmt: skip
        tokens = {
            "image_token_id": tokenizer.image_token_id,
            "video_token_id": tokenizer.video_token_id,
            "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
            "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        }
        if family == "qwen2_5_vl":
            return AutoConfig.for_model(
                "qwen2_5_vl",
                text_config={**text, "rope_parameters": {**rope, "rope_theta": 1000000.0},
                             "bos_token_id": tokenizer.pad_token_id},
                vision_config={**vision, "patch_size": 14, "window_size": 112,
                               "fullatt_block_indexes": [1], "tokens_per_second": 2},
                **tokens,
            )  # fmt: skip
        return AutoConfig.for_model(
            "qwen3_vl",
            text_config={**text, "head_dim": TINY_HIDDEN // 4, "bos_token_id": tokenizer.pad_token_id,
                         "rope_parameters": {**rope, "mrope_interleaved": True, "rope_theta": 5000000.0}},
            vision_config={**vision, "patch_size": 16, "num_position_embeddings": 196,
                           "deepstack_visual_indexes": [0, 1]},
            **tokens,
        )  # fmt: skip
    raise ValueError(f"unknown family {family!r} (supported: {', '.join(SUPPORTED_FAMILIES)})")


_README = """# Tiny {family} (random weights)

Written by `featurizer.tiny_model.build_tiny_checkpoint` (family {family}, seed {seed}) for
LinkedOut.

- Architecture: the real `{model_class}` at toy size: a 2-layer vision tower 32 wide and a
  {layers}-layer language model {hidden} wide.
- Weights: **random** (seeded). The model has **no world knowledge**; its hidden states and
  generated tokens mean nothing. It exists so the feature pipeline can run end to end on a CPU.
- Tokenizer: byte-level BPE trained locally with `tokenizers` on a small built-in corpus.
- Processor: `{processor_class}` with the family's chat template.

Load it like any local checkpoint (works with `HF_HUB_OFFLINE=1`):

    AutoProcessor.from_pretrained(path); AutoModelForImageTextToText.from_pretrained(path)
"""


class CheckpointExistsError(FileExistsError):
    """The target directory of build_tiny_checkpoint is not empty (and `force` was not given)."""


def build_tiny_checkpoint(
    out: Path, seed: int = 0, force: bool = False, family: str = DEFAULT_FAMILY
) -> Path:
    """Write the tiny checkpoint of `family` to `out` and return `out`. The same seed gives the
    same weights, tokenizer and processor. `out` must be missing or empty: anything there (another
    checkpoint, a user's model) is refused with CheckpointExistsError unless `force`, which
    overwrites the checkpoint's files."""
    out = Path(out)
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a checkpoint" if (out / "config.json").is_file() else "files"
        raise CheckpointExistsError(
            f"{out} already holds {what}: tiny-model would overwrite its files there; pass "
            "--force to do that, or choose an empty directory"
        )
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} (supported: {', '.join(SUPPORTED_FAMILIES)})")
    spec = FAMILIES[family]
    # The demo's tokenizer keeps its compact ids; the other families speak their real layout.
    tokenizer = build_tokenizer(spec, None if family == DEFAULT_FAMILY else spec.real_ids)
    config = tiny_config(tokenizer, family)
    processor = build_processor(config, tokenizer)
    out.mkdir(parents=True, exist_ok=True)

    fork_devices: list[int] = []  # seed the CPU generator only, leave the caller's RNG untouched
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id or tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "README.md").write_text(
        _README.format(
            family=family,
            seed=seed,
            model_class=type(model).__name__,
            processor_class=type(processor).__name__,
            layers=TINY_TEXT_LAYERS,
            hidden=TINY_HIDDEN,
        )
    )
    return out
