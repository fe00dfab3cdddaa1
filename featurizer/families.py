"""The video-LLM families the extractor reads, as data: what differs per family lives here, so
`featurizer.extractor` has one code path for all of them.

A family is a Hugging Face `model_type`. Per family this module holds:
- its tokenizer's special tokens, their roles, and the ids the real checkpoints give them;
- its chat template (where a turn puts the video), for processors built here;
- how its processor is built from a model config (`build_processor`: the real processor class,
  sized from the vision config), for tiny checkpoints and random-weight builds of a preset;
- how frames reach its processor (`video_kwargs`, `check_frames`):
  - LLaVA-OneVision and LLaVA-NeXT-Video resize every frame to their vision tower's fixed square
    input (`vision_config.image_size`), so a preset's resolution must be that size;
  - Qwen2.5-VL and Qwen3-VL patch frames on a dynamic grid (`video_grid_thw`: frames / 2 in time,
    resolution / patch in space, then 2 x 2 merged), position them with multimodal rotary
    embeddings from the frames' times, and Qwen3-VL writes each frame pair's time into the prompt
    ("<1.2 seconds>"). The preset's resolution is kept exactly (it must be a multiple of
    patch x merge: 28 for Qwen2.5-VL, 32 for Qwen3-VL); the frames go in as sampled, with their
    real times (`FrameTiming`), and the processor samples nothing itself. An odd frame count is
    padded by the processor repeating the last frame (temporal patches are 2 frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featurizer.decode import FrameTiming

if TYPE_CHECKING:  # transformers is imported where it is used: the CLI lists families without it
    from transformers import PretrainedConfig, PreTrainedTokenizerFast, ProcessorMixin


class UnsupportedFamilyError(ValueError):
    """A checkpoint whose model_type is not one of SUPPORTED_FAMILIES."""


@dataclass(frozen=True)
class Family:
    model_type: str
    specials: tuple[str, ...]  # in the order the real tokenizer numbers them
    roles: Mapping[str, str | None]  # bos/eos/pad/unk -> special token
    real_ids: Mapping[str, int]  # ids the real tokenizer gives those specials
    config_ids: Mapping[str, str]  # special token -> the model config attribute holding its id
    chat_template: str
    dynamic_resolution: bool  # Qwen-VL: grid patching, frame times; else a fixed tower size
    min_frames: int = 1  # Qwen3-VL's processor refuses a clip shorter than one 2-frame patch
    token_attributes: Mapping[str, str] = field(default_factory=dict)  # processor-read names


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


def _qwen_vl_template(video: str, default_system: bool) -> str:
    """Qwen2-VL's chat format (contents in order). Qwen2.5-VL opens with a default system turn;
    Qwen3-VL does not. Qwen3-VL's processor (transformers 5.x) writes <|vision_start|> and
    <|vision_end|> around every frame pair itself, so its template puts the pad token alone."""
    system = (
        "{% if messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        if default_system
        else ""
    )
    return (
        system + "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for content in message['content'] %}"
        "{% if content['type'] == 'video' %}{{ '" + video + "' }}"
        "{% elif content['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{{ '<|im_end|>\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )


# Qwen2 (LLaVA-OneVision): <|endoftext|> pads, <|im_end|> ends a turn (EOS); <image>/<video> were
# appended after the Qwen2 vocabulary.
_QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
_QWEN_ROLES = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
# Qwen2.5-VL and Qwen3-VL share the Qwen2 tokenizer's special block, 151643..151656.
_QWEN_VL_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
_QWEN_VL_IDS = {token: 151643 + i for i, token in enumerate(_QWEN_VL_SPECIALS)}
_QWEN_VL_CONFIG_IDS = {
    "<|image_pad|>": "image_token_id",
    "<|video_pad|>": "video_token_id",
    "<|vision_start|>": "vision_start_token_id",
    "<|vision_end|>": "vision_end_token_id",
}
_QWEN_VL_ATTRIBUTES = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}
_LLAVA_ATTRIBUTES = {"image_token": "<image>", "video_token": "<video>"}
_LLAVA_CONFIG_IDS = {"<image>": "image_token_id", "<video>": "video_token_id"}


def _qwen_vl_family(
    model_type: str, video: str, default_system: bool, min_frames: int = 1
) -> Family:
    """Qwen2.5-VL and Qwen3-VL share tokenizer layout and processor inputs; templates differ."""
    return Family(
        model_type=model_type,
        specials=_QWEN_VL_SPECIALS,
        roles=_QWEN_ROLES,
        real_ids=_QWEN_VL_IDS,
        config_ids=_QWEN_VL_CONFIG_IDS,
        chat_template=_qwen_vl_template(video, default_system),
        dynamic_resolution=True,
        min_frames=min_frames,
        token_attributes=_QWEN_VL_ATTRIBUTES,
    )


FAMILIES: dict[str, Family] = {
    "llava_onevision": Family(
        model_type="llava_onevision",
        specials=_QWEN2_SPECIALS,
        roles=_QWEN_ROLES,
        real_ids={
            "<|endoftext|>": 151643,
            "<|im_start|>": 151644,
            "<|im_end|>": 151645,
            "<image>": 151646,
            "<video>": 151647,
        },  # fmt: skip
        config_ids=_LLAVA_CONFIG_IDS,
        chat_template=QWEN_CHAT_TEMPLATE,
        dynamic_resolution=False,
        token_attributes=_LLAVA_ATTRIBUTES,
    ),
    "llava_next_video": Family(
        # LLaMA/Vicuna: <unk>=0, <s>=1, </s>=2; <video>/<image> were appended at 32000/32001.
        model_type="llava_next_video",
        specials=("<unk>", "<s>", "</s>", "<video>", "<image>"),
        roles={"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"},
        real_ids={"<unk>": 0, "<s>": 1, "</s>": 2, "<video>": 32000, "<image>": 32001},
        config_ids=_LLAVA_CONFIG_IDS,
        chat_template=VICUNA_CHAT_TEMPLATE,
        dynamic_resolution=False,
        token_attributes=_LLAVA_ATTRIBUTES,
    ),
    "qwen2_5_vl": _qwen_vl_family(
        "qwen2_5_vl", "<|vision_start|><|video_pad|><|vision_end|>", default_system=True
    ),
    "qwen3_vl": _qwen_vl_family("qwen3_vl", "<|video_pad|>", default_system=False, min_frames=2),
}
SUPPORTED_FAMILIES = tuple(FAMILIES)


def family_of(model_type: str | None, model: str = "") -> Family:
    """The family of a model_type; anything else is one line naming it and the supported ones."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    where = f"model {model!r} has " if model else ""
    raise UnsupportedFamilyError(
        f"{where}model_type {model_type!r}, which is not a supported video-LLM family "
        f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
    )


# ------------------------------------------------------------------------------------ frames
def frame_factor(model_config: PretrainedConfig | Mapping[str, Any]) -> int:
    """The pixel step a dynamic-resolution family's frame sides must be multiples of."""
    return int(_vision(model_config, "patch_size")) * int(
        _vision(model_config, "spatial_merge_size")
    )


def check_frames(
    family: Family,
    model_config: PretrainedConfig | Mapping[str, Any],
    frames: int,
    resolution: int,
) -> None:
    """Raise ValueError where the family would not read the preset's frames as they are: too
    few, or not at its resolution. `model_config`: the loaded config, or its config.json values
    (checked before any actor starts)."""
    name = family.model_type
    if frames < family.min_frames:
        raise ValueError(
            f"frames {frames}: {name} reads frames in 2-frame patches and needs at least "
            f"{family.min_frames}"
        )
    if family.dynamic_resolution:
        factor = frame_factor(model_config)
        if resolution < factor or resolution % factor:
            raise ValueError(
                f"resolution {resolution} is not a multiple of {factor} (patch x merge), which "
                f"{name} patches frames on; use e.g. {max(factor, resolution // factor * factor)}"
            )
        return
    size = int(_vision(model_config, "image_size"))
    if resolution != size:
        raise ValueError(
            f"resolution {resolution} but {name}'s vision tower reads {size}x{size} frames (its "
            f"processor would resize them); set the preset's resolution to {size}"
        )


def _vision(model_config: PretrainedConfig | Mapping[str, Any], key: str) -> Any:
    if isinstance(model_config, Mapping):
        return model_config["vision_config"][key]
    return getattr(model_config.vision_config, key)


def video_kwargs(
    family: Family,
    model_config: PretrainedConfig,
    frames: int,
    resolution: int,
    timing: FrameTiming | None,
) -> dict[str, Any]:
    """Keyword arguments for the processor call of one video, beyond text and frames: for the
    Qwen-VL families the frames' real times (M-RoPE positions; Qwen3-VL's timestamps), no
    re-sampling, and a size window that keeps resolution x resolution as it is."""
    if not family.dynamic_resolution:
        return {}
    from transformers.video_utils import VideoMetadata

    timing = timing or FrameTiming.one_per_second(frames)
    factor = frame_factor(model_config)
    metadata = VideoMetadata(
        total_num_frames=timing.total_frames,
        fps=timing.fps,
        frames_indices=list(timing.indices),
        width=resolution,
        height=resolution,
    )
    return {
        "video_metadata": [metadata],
        "do_sample_frames": False,
        "size": {"shortest_edge": factor * factor, "longest_edge": (frames + 2) * resolution**2},
        "cap_pixels_per_frame": False,
    }


# ------------------------------------------------------------------------ tokenizer, processor
def build_tokenizer(
    family: Family, fixed_ids: Mapping[str, int] | None = None
) -> PreTrainedTokenizerFast:
    """The locally trained tokenizer wrapped as a transformers fast tokenizer with the family's
    special-token roles and the attributes its processor reads (image_token, video_token...).
    `fixed_ids` places the specials there (e.g. `family.real_ids`); without it they follow the
    trained vocabulary."""
    from transformers import PreTrainedTokenizerFast

    from featurizer.tokenizer import train_tokenizer

    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(family.specials, fixed_ids),
        **family.roles,
        extra_special_tokens=dict(family.token_attributes),
        padding_side="left",
        model_max_length=32768,
    )


def config_token_ids(family: Family, model_config: PretrainedConfig) -> dict[str, int]:
    """The family's real special ids, with those a model config names taken from the config."""
    ids = dict(family.real_ids)
    for token, attribute in family.config_ids.items():
        value = getattr(model_config, attribute, None)
        if value is not None:
            ids[token] = int(value)
    return ids


def build_processor(
    model_config: PretrainedConfig, tokenizer: PreTrainedTokenizerFast | None = None
) -> ProcessorMixin:
    """A real processor of the model's family, sized from its config (vision image size, patch,
    merge, token ids, feature-select strategy). Without a tokenizer, one is trained here with its
    special tokens at the config's ids."""
    family = family_of(model_config.model_type)
    if tokenizer is None:
        tokenizer = build_tokenizer(family, config_token_ids(family, model_config))
    vision = model_config.vision_config
    name = family.model_type
    if name == "llava_onevision":
        from transformers import (
            LlavaOnevisionImageProcessor,
            LlavaOnevisionProcessor,
            LlavaOnevisionVideoProcessor,
        )

        size, patch = int(vision.image_size), int(vision.patch_size)
        square = {"height": size, "width": size}
        return LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(
                size=square, image_grid_pinpoints=model_config.image_grid_pinpoints
            ),
            tokenizer=tokenizer,
            video_processor=LlavaOnevisionVideoProcessor(size=square),
            num_image_tokens=(size // patch) ** 2,  # SigLIP has no CLS token
            vision_feature_select_strategy=model_config.vision_feature_select_strategy,
            chat_template=family.chat_template,
            vision_aspect_ratio=model_config.vision_aspect_ratio,
        )
    if name == "llava_next_video":
        from transformers import (
            LlavaNextImageProcessor,
            LlavaNextVideoProcessor,
            LlavaNextVideoVideoProcessor,
        )

        size, patch = int(vision.image_size), int(vision.patch_size)
        edge, crop = {"shortest_edge": size}, {"height": size, "width": size}
        return LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(size=edge, crop_size=crop),
            image_processor=LlavaNextImageProcessor(
                size=edge, crop_size=crop, image_grid_pinpoints=model_config.image_grid_pinpoints
            ),
            tokenizer=tokenizer,
            chat_template=family.chat_template,
            patch_size=patch,
            vision_feature_select_strategy=model_config.vision_feature_select_strategy,
            num_additional_image_tokens=1,  # CLIP's CLS token
        )
    from transformers import Qwen2VLImageProcessor

    grid = {
        "patch_size": int(vision.patch_size),
        "merge_size": int(vision.spatial_merge_size),
        "temporal_patch_size": int(vision.temporal_patch_size),
    }
    image_processor = Qwen2VLImageProcessor(**grid)
    if name == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

        return Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(**grid),
            chat_template=family.chat_template,
        )
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**grid, cap_pixels_per_frame=False),
        chat_template=family.chat_template,
    )
