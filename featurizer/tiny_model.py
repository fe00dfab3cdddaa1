"""The tiny demo checkpoint: the real LLaVA-OneVision architecture at toy size, random weights.

`build_tiny_checkpoint(dir)` writes a directory that loads like any local Hugging Face checkpoint
(`AutoProcessor` / `AutoModelForImageTextToText`, offline): a SigLIP vision tower (2 layers) and a
Qwen2 language model (24 layers, width 64) with seeded random weights, a byte-level BPE tokenizer
trained here with the `tokenizers` library on a small built-in corpus, and the real
`LlavaOnevisionProcessor` with a Qwen-style chat template. Its features carry no world knowledge:
they exercise the pipeline's shapes, plumbing and determinism, not recommendation quality.

The same tokenizer/processor builders serve `featurizer.extractor` when a preset describes a large
model's architecture but no weights exist locally (`build_processor`): the tokenizer is trained
the same way, with its special tokens placed at the architecture's token ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlavaNextImageProcessor,
    LlavaNextVideoProcessor,
    LlavaNextVideoVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2Config,
    SiglipVisionConfig,
)

TINY_IMAGE_SIZE = 224
TINY_PATCH_SIZE = 14  # 224 / 14 = 16 -> 256 patches per frame, pooled 2x2 -> 64 tokens per frame
TINY_TEXT_LAYERS = 24
TINY_HIDDEN = 64
TOKENIZER_VOCAB = 1024  # trained BPE merges + the 256 byte symbols; specials come on top

# Special tokens per language-model family, in the order the real tokenizers number them, and the
# roles they play. Qwen2 (LLaVA-OneVision): <|endoftext|> pads, <|im_end|> ends a turn (EOS).
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
QWEN_ROLES = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
QWEN_FIXED_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
# LLaMA/Vicuna (LLaVA-NeXT-Video): <unk>=0, <s>=1, </s>=2; <video>/<image> were appended at 32000+.
LLAMA_SPECIALS = ("<unk>", "<s>", "</s>", "<video>", "<image>")
LLAMA_ROLES = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"}
LLAMA_FIXED_IDS = {"<unk>": 0, "<s>": 1, "</s>": 2}

# Qwen chat format as LLaVA-OneVision uses it: in each turn images first, then videos, then text.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Vicuna chat format as LLaVA-NeXT-Video-7B uses it: "USER: <video>\n{text} ASSISTANT:".
VICUNA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# What the tokenizer is trained on: the prompt, the chat roles, and the words demo titles are made
# of (topics, palettes, shapes, motion). Byte-level BPE still encodes any other text, byte by byte.
_CORPUS = """
This short video is titled "{title}". Describe its topic, look and motion in one sentence.
Describe the video. What happens in this video? Summarize the content of the clip.
system user assistant You are a helpful assistant.
The video shows a scene with colors, shapes and movement. It is a short clip about a topic.
cooking baking recipe kitchen food pasta cake soup salad breakfast dinner street food
sports football soccer basketball tennis running cycling swimming skiing surfing yoga workout
music concert guitar piano drums singing dance dancing party festival
travel city beach mountain forest river lake ocean sunset sunrise night skyline road trip
animals cat cats dog dogs puppy kitten bird birds fish horse pets wildlife zoo
gaming game games play esports tutorial review unboxing tech phone gadget science space
fashion makeup beauty style outfit hair art drawing painting craft diy design
comedy funny prank vlog daily life family kids baby school study news car cars driving
nature weather rain snow flowers garden plants farm timelapse slow motion highlights
red orange yellow green blue purple pink brown black white gray grey gold silver dark bright
circle circles square squares triangle triangles stripe stripes dot dots line lines grid wave
waves ring rings star stars spiral checkerboard gradient noise pattern texture
moving moves move motion still static fast slow spinning rotating bouncing sliding drifting
zooming panning flashing pulsing shaking flowing falling rising left right up down across
topic look palette shape shapes colour color colors light shadow background foreground
one two three four five six seven eight nine ten first second part episode day week best top
a an the of in on at to and or with for from by is are was it this that its their
"""


def corpus_lines() -> list[str]:
    lines = [line.strip() for line in _CORPUS.strip().splitlines() if line.strip()]
    return lines * 4  # repetition gives common words merges of their own


def train_tokenizer(
    specials: tuple[str, ...],
    fixed_ids: Mapping[str, int] | None = None,
    vocab_size: int = TOKENIZER_VOCAB,
) -> Tokenizer:
    """A byte-level BPE `tokenizers.Tokenizer` trained on the built-in corpus (deterministic).

    Without `fixed_ids` the special tokens are numbered right after the trained vocabulary, in the
    order given. With `fixed_ids` (token -> id, every special must have one) they sit at those ids,
    and the trained tokens take the smallest ids left free, so a small tokenizer can speak a large
    model's token-id layout (e.g. Qwen2's <video> = 151647)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_lines(), trainer)

    trained = sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])  # [(token, id)] by id
    if fixed_ids is None:
        special_ids = {tok: len(trained) + i for i, tok in enumerate(specials)}
    else:
        missing = [tok for tok in specials if tok not in fixed_ids]
        if missing:
            raise ValueError(f"no token id given for special tokens {missing}")
        special_ids = {tok: int(fixed_ids[tok]) for tok in specials}
    taken = set(special_ids.values())
    vocab: dict[str, int] = dict(special_ids)
    next_id = 0
    for token, _ in trained:
        while next_id in taken:
            next_id += 1
        vocab[token] = next_id
        next_id += 1

    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in _merges_of(bpe)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = bpe.pre_tokenizer
    tok.decoder = bpe.decoder
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def _merges_of(tok: Tokenizer) -> list:
    return json.loads(tok.to_str())["model"]["merges"]


def build_tokenizer(
    family: str = "qwen2", fixed_ids: Mapping[str, int] | None = None
) -> PreTrainedTokenizerFast:
    """The trained tokenizer wrapped as a transformers fast tokenizer, with its special-token roles
    and the `image_token` / `video_token` attributes the LLaVA processors look for.
    `family`: "qwen2" (LLaVA-OneVision) or "llama" (LLaVA-NeXT-Video)."""
    if family == "qwen2":
        specials, roles = QWEN_SPECIALS, QWEN_ROLES
    elif family == "llama":
        specials, roles = LLAMA_SPECIALS, LLAMA_ROLES
    else:
        raise ValueError(f"unknown tokenizer family {family!r} (known: qwen2, llama)")
    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(specials, fixed_ids),
        **roles,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        padding_side="left",
        model_max_length=32768,
    )


def grid_pinpoints(image_size: int, n: int = 6) -> list[list[int]]:
    """LLaVA-OneVision's any-res grid (1..6 tiles a side, 36 layouts) at another tile size."""
    return [[image_size * i, image_size * j] for i in range(1, n + 1) for j in range(1, n + 1)]


def build_processor(model_config: PretrainedConfig, tokenizer=None) -> ProcessorMixin:
    """A real processor of the model's family, sized from its config (vision image_size and
    patch_size, token ids, feature-select strategy). Without a tokenizer, one is trained here
    with its special tokens at the config's ids; with `tiny_config`, pass its tokenizer."""
    model_type = model_config.model_type
    vision = model_config.vision_config
    size, patch = int(vision.image_size), int(vision.patch_size)
    if model_type == "llava_onevision":
        if tokenizer is None:
            tokenizer = build_tokenizer("qwen2", _fixed_ids(model_config, QWEN_FIXED_IDS))
        square = {"height": size, "width": size}
        return LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(
                size=square, image_grid_pinpoints=model_config.image_grid_pinpoints
            ),
            tokenizer=tokenizer,
            video_processor=LlavaOnevisionVideoProcessor(size=square),
            num_image_tokens=(size // patch) ** 2,  # SigLIP has no CLS token
            vision_feature_select_strategy=model_config.vision_feature_select_strategy,
            chat_template=QWEN_CHAT_TEMPLATE,
            vision_aspect_ratio=model_config.vision_aspect_ratio,
        )
    if model_type == "llava_next_video":
        if tokenizer is None:
            tokenizer = build_tokenizer("llama", _fixed_ids(model_config, LLAMA_FIXED_IDS))
        edge, crop = {"shortest_edge": size}, {"height": size, "width": size}
        return LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(size=edge, crop_size=crop),
            image_processor=LlavaNextImageProcessor(
                size=edge, crop_size=crop, image_grid_pinpoints=model_config.image_grid_pinpoints
            ),
            tokenizer=tokenizer,
            chat_template=VICUNA_CHAT_TEMPLATE,
            patch_size=patch,
            vision_feature_select_strategy=model_config.vision_feature_select_strategy,
            num_additional_image_tokens=1,  # CLIP's CLS token
        )
    raise ValueError(
        f"no processor recipe for model type {model_type!r} (known: llava_onevision, "
        "llava_next_video); use a local checkpoint that ships its processor"
    )


def _fixed_ids(model_config: PretrainedConfig, base: Mapping[str, int]) -> dict[str, int]:
    return {
        **base,
        "<image>": int(model_config.image_token_id),
        "<video>": int(model_config.video_token_id),
    }


def tiny_config(tokenizer: PreTrainedTokenizerFast) -> LlavaOnevisionConfig:
    """LLaVA-OneVision at toy size: SigLIP 2 layers x 32 wide, Qwen2 24 layers x 64 wide."""
    n_ids = max(tokenizer.get_vocab().values()) + 1
    vocab_size = -(-n_ids // 64) * 64  # padded to a multiple of 64, as the llava-hf conversions do
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=TINY_PATCH_SIZE,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=TINY_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=TINY_TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.pad_token_id,  # Qwen2 has no BOS; its config names <|endoftext|>
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=grid_pinpoints(TINY_IMAGE_SIZE),
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )


_README = """# Tiny LLaVA-OneVision (random weights)

Written by `featurizer.tiny_model.build_tiny_checkpoint` (seed {seed}) for the LinkedOut demo.

- Architecture: the real `LlavaOnevisionForConditionalGeneration` at toy size: SigLIP vision
  tower (2 layers, width 32, {size}x{size} input, patch {patch} -> {patches} patches per frame)
  and a Qwen2 language model ({layers} layers, width {hidden}).
- Weights: **random** (seeded). The model has **no world knowledge**; its hidden states and
  generated tokens mean nothing. It exists so the feature pipeline can run end to end on a CPU.
- Tokenizer: byte-level BPE trained locally with `tokenizers` on a small built-in corpus.
- Processor: `LlavaOnevisionProcessor`; a video of T frames becomes T*64 + 1 `<video>` tokens.

Load it like any local checkpoint (works with `HF_HUB_OFFLINE=1`):

    AutoProcessor.from_pretrained(path); AutoModelForImageTextToText.from_pretrained(path)
"""


class CheckpointExistsError(FileExistsError):
    """The target directory of build_tiny_checkpoint is not empty (and `force` was not given)."""


def build_tiny_checkpoint(out: Path, seed: int = 0, force: bool = False) -> Path:
    """Write the tiny checkpoint to `out` and return `out`. The same seed gives the same
    weights, tokenizer and processor. `out` must be missing or empty: anything there (another
    checkpoint, a user's model) is refused with CheckpointExistsError unless `force`, which
    overwrites the checkpoint's files."""
    out = Path(out)
    if not force and out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a checkpoint" if (out / "config.json").is_file() else "files"
        raise CheckpointExistsError(
            f"{out} already holds {what}: tiny-model would overwrite its files there; pass "
            "--force to do that, or choose an empty directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer("qwen2")
    config = tiny_config(tokenizer)
    processor = build_processor(config, tokenizer)

    fork_devices: list[int] = []  # seed the CPU generator only, leave the caller's RNG untouched
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "README.md").write_text(
        _README.format(
            seed=seed,
            size=TINY_IMAGE_SIZE,
            patch=TINY_PATCH_SIZE,
            patches=(TINY_IMAGE_SIZE // TINY_PATCH_SIZE) ** 2,
            layers=TINY_TEXT_LAYERS,
            hidden=TINY_HIDDEN,
        )
    )
    return out
