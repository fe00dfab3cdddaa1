"""Hidden-state capture from a frozen video LLM: old + new tokens at the tapped layers, merged to
K rows per layer (the paper's section 3.2).

For one video, its title and one or more prompts (a prompt bank, §3.4):

1. each prompt (a template, "{title}" filled in) is rendered with the processor's chat template
   as one user turn holding the video and the text, plus the assistant prefix; the processor
   runs once per video (frames, and the first prompt's text), the other prompts' texts are
   tokenized alone and set after the same expanded video tokens;
2. `featurizer.capture` runs the part the prompts share (system turn, video) once, then every
   prompt's own text and G greedy steps in one batch (G = `config.new_tokens`; end-of-turn is
   masked so every video gets exactly G new tokens);
3. for every tapped hidden-state index l (0 = embedding output, num_layers = after the final
   norm): a prompt's n_old states (n_old, D) are merged to K - G rows by bipartite soft matching
   (`featurizer.merge.merge_tokens`), the G new-token states (G, D) are kept, and the two are
   stacked to (K, D); all layers give (L, K, D), stored as float16, one row per prompt.

The model is a local checkpoint of a supported family (`featurizer.families`: LLaVA-OneVision,
LLaVA-NeXT-Video, Qwen2.5-VL, Qwen3-VL), loaded by `featurizer.loading` (nothing is downloaded;
a preset's `architecture` with `random_weights` builds it untrained, its processor by
`featurizer.families.build_processor`). Features from such a model carry no world knowledge; a
warning says so once at load time.

What differs per family (frame sizing, frame times, chat template, special tokens) is data in
`featurizer.families`; this module has one code path. Layer indices are hidden-state indices
whatever the family's depth (0 = embedding output; Qwen3-VL's DeepStack adds visual features
inside its first decoder layers, after index 0).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featurizer.capture import PromptStates, capture_prompts, common_prefix_length
from featurizer.config import VIDEO_MARKER, ExtractorConfig, fill_prompt
from featurizer.decode import FrameTiming
from featurizer.families import check_frames, family_of, video_kwargs
from featurizer.loading import load_model
from featurizer.merge import merge_tokens

log = logging.getLogger(__name__)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class VideoFeatures:
    """One video's stored features: (L, K, D) float16; rows [0, K - G) are merged old tokens,
    rows [K - G, K) the G new tokens, in generation order."""

    features: np.ndarray  # (L, K, D) float16
    n_old: int  # prompt length (video + text tokens) before merging
    n_new: int  # G new tokens kept


class VideoLLMExtractor:
    """Loads the processor and the frozen model once; `extract` turns frames + title into
    `VideoFeatures`. Eval mode, no gradients, inference mode throughout."""

    def __init__(self, config: ExtractorConfig, device: str | None = None) -> None:
        self.config = config
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if config.torch_dtype not in _DTYPES:
            raise ValueError(
                f"unknown torch_dtype {config.torch_dtype!r} (known: {', '.join(_DTYPES)})"
            )
        self.dtype = _DTYPES[config.torch_dtype]
        self.processor, self.model, self.random_weights = load_model(
            config, self.device, self.dtype
        )
        self.family = family_of(self.model.config.model_type, config.model)
        check_frames(self.family, self.model.config, config.frames, config.resolution)
        text_config = self.model.config.get_text_config()
        self.hidden_size: int = int(text_config.hidden_size)
        self.num_layers: int = int(text_config.num_hidden_layers)
        too_deep = [i for i in config.layers if i > self.num_layers]
        if too_deep:
            raise ValueError(
                f"tapped layers {too_deep} are beyond the model's depth: hidden-state indices run "
                f"0..{self.num_layers} (0 = embedding output) for {config.model!r}"
            )
        tokenizer = self.processor.tokenizer
        self._eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else self._eos_id
        self._stop_ids = _stop_ids(tokenizer.eos_token_id, self.model.generation_config)
        self._video_token = getattr(self.processor, "video_token", VIDEO_MARKER)
        self._video_token_id = tokenizer.convert_tokens_to_ids(self._video_token)

    # ----------------------------------------------------------------------------- prompts
    def render_prompt(self, title: str | None, template: str | None = None) -> str:
        """The chat-formatted text of one prompt (`template`, default the config's prompt) for
        one video. The template's "<video>" marker (if any,
        at most one) says a video goes with the text; the family's chat template decides where
        (every supported family puts it before the turn's text) and with which tokens (Qwen-VL:
        <|vision_start|><|video_pad|><|vision_end|>). Special-token strings in the title are
        neutralized, so a title can neither add a video slot nor close the turn."""
        title = "" if title is None else str(title)
        tokenizer = self.processor.tokenizer
        specials = {VIDEO_MARKER, self._video_token, "<image>", *tokenizer.all_special_tokens}
        specials |= set(tokenizer.get_added_vocab())  # <|im_start|>, <|box_start|>... too
        for special in sorted(specials, key=len, reverse=True):
            title = title.replace(special, special.strip("<>|"))
        text = fill_prompt(template or self.config.prompt_template, title)  # one marker at most
        text = re.sub(re.escape(VIDEO_MARKER) + r"\s*", "", text, count=1).strip()
        conversation = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}
        ]
        return self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )

    def model_inputs(
        self,
        frames: np.ndarray,
        title: str | None,
        timing: FrameTiming | None = None,
        template: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Processor output for one video and one prompt, on the model's device (pixel values
        in its dtype). `timing` places the frames in time for the families that read it
        (Qwen-VL); without it the frames are taken as 1 s apart."""
        _check_frames(frames)
        if timing is not None and len(timing.indices) != len(frames):
            raise ValueError(f"timing has {len(timing.indices)} frames, the clip {len(frames)}")
        extra = video_kwargs(
            self.family, self.model.config, len(frames), self.config.resolution, timing
        )
        batch = self.processor(
            text=[self.render_prompt(title, template)],
            videos=[frames],
            return_tensors="pt",
            **extra,
        )
        inputs = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        for key in ("pixel_values_videos", "pixel_values"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.dtype)
        return inputs

    # ---------------------------------------------------------------------------- features
    def extract(
        self, frames: np.ndarray, title: str | None, timing: FrameTiming | None = None
    ) -> VideoFeatures:
        """(T, H, W, 3) uint8 frames + title -> VideoFeatures with (L, K, D) float16 features,
        for the config's prompt."""
        return self.extract_prompts(frames, title, timing, [self.config.prompt_template])[0]

    def extract_prompts(
        self,
        frames: np.ndarray,
        title: str | None,
        timing: FrameTiming | None,
        templates: Sequence[str],
    ) -> list[VideoFeatures]:
        """One video under several prompts (templates, in order) -> one VideoFeatures each. The
        video is processed and run through the model once for all of them (module docstring)."""
        return [self._merge(s) for s in self.prompt_states(frames, title, timing, templates)]

    @torch.inference_mode()
    def prompt_states(
        self,
        frames: np.ndarray,
        title: str | None,
        timing: FrameTiming | None,
        templates: Sequence[str],
    ) -> list[PromptStates]:
        """The hidden states `extract_prompts` merges: per prompt, its whole prompt's states and
        its G new tokens' states at the tapped layers."""
        if not templates:
            return []
        cfg = self.config
        inputs = self.model_inputs(frames, title, timing, templates[0])
        sequences = self._prompt_sequences(inputs, frames, title, timing, templates)
        return capture_prompts(
            self.model,
            inputs,
            sequences,
            cfg.layers,
            cfg.new_tokens,
            self._stop_ids,
            self._pad_id,
        )

    def extract_batch(self, videos: Sequence[tuple[np.ndarray, str | None]]) -> list[VideoFeatures]:
        """One `VideoFeatures` per (frames, title), in order. A loop over `extract` for now:
        batching videos needs their prompts (of different lengths) padded like a bank's
        suffixes, worth it on a GPU, not on the CPU; the results must stay equal to the
        per-video ones (tests pin `extract`)."""
        return [self.extract(frames, title) for frames, title in videos]

    def _prompt_sequences(
        self,
        inputs: dict[str, torch.Tensor],
        frames: np.ndarray,
        title: str | None,
        timing: FrameTiming | None,
        templates: Sequence[str],
    ) -> list[torch.Tensor]:
        """Every prompt's whole token sequence (1-D): the first prompt's from the processor;
        the others' as the same expanded video tokens followed by their own text tokenized
        alone (the text after the video placeholder: the template ends the video there, so
        tokenizing it alone gives the tokens the processor would). Where a tokenizer does not
        split that way (checked on the first prompt), the processor tokenizes each prompt."""
        first = inputs["input_ids"][0]
        rendered = [self.render_prompt(title, t) for t in templates]
        tails = [self._tail_ids(text) for text in rendered]
        n_head = len(first) - len(tails[0])
        video_positions = (first == self._video_token_id).nonzero()
        consistent = (
            tails[0] is not None
            and torch.equal(first[n_head:].cpu(), tails[0])
            and len(video_positions)
            and int(video_positions[-1]) < n_head
        )
        if not consistent or any(t is None for t in tails):
            sequences = [first] + [
                self.model_inputs(frames, title, timing, t)["input_ids"][0] for t in templates[1:]
            ]
        else:
            head = first[:n_head]
            sequences = [first] + [torch.cat([head, t.to(head.device)]) for t in tails[1:]]
        shared = common_prefix_length(sequences)
        if len(video_positions) and int(video_positions[-1]) >= shared:
            raise ValueError(
                "the prompts differ before the end of the video tokens; a bank's prompts may "
                "differ only in the text after the video"
            )
        for template, sequence in zip(templates, sequences, strict=True):
            if len(sequence) <= self.config.old_tokens:
                raise ValueError(
                    f"prompt has {len(sequence)} tokens, fewer than the {self.config.old_tokens} "
                    f"old rows to keep ({template[:60]!r})"
                )
        return sequences

    def _tail_ids(self, rendered: str) -> torch.Tensor | None:
        """Token ids of the rendered prompt after its (last) video placeholder; None without one."""
        at = rendered.rfind(self._video_token)
        if at < 0:
            return None
        tail = rendered[at + len(self._video_token) :]
        ids = self.processor.tokenizer(tail, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def _merge(self, prompt: PromptStates) -> VideoFeatures:
        """One prompt's states -> its (L, K, D) float16 row."""
        cfg = self.config
        if prompt.n_old < cfg.old_tokens:
            raise ValueError(
                f"prompt has {prompt.n_old} tokens, fewer than the {cfg.old_tokens} old rows to keep"
            )
        rows = []
        for j in range(len(cfg.layers)):
            old = merge_tokens(prompt.old[j].float(), cfg.old_tokens)  # (K - G, D)
            rows.append(torch.cat([old, prompt.new[j].float().to(old.device)]))  # (K, D)
        features = torch.stack(rows).to(torch.float16).cpu().numpy()  # (L, K, D)
        if not np.isfinite(features).all():
            bad = [cfg.layers[i] for i in range(len(rows)) if not np.isfinite(features[i]).all()]
            raise ValueError(f"hidden states at layers {bad} are not finite in float16")
        return VideoFeatures(features=features, n_old=prompt.n_old, n_new=cfg.new_tokens)

    @torch.inference_mode()
    def prompt_hidden_states(
        self, frames: np.ndarray, title: str | None, timing: FrameTiming | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The plain forward's hidden states over the prompt: (num_layers + 1) tensors (n_old, D),
        index 0 = embedding output. The rows `extract` stores come from the same states."""
        out = self.model(**self.model_inputs(frames, title, timing), output_hidden_states=True)
        return tuple(h[0] for h in out.hidden_states)


def _stop_ids(eos_token_id: int | None, generation_config: Any) -> list[int]:
    """The tokens that would end the model's answer: the tokenizer's EOS and the checkpoint's
    generation EOS ids (Qwen-VL lists two), masked so that every video gets G new tokens."""
    ids = {eos_token_id} if eos_token_id is not None else set()
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    return sorted(ids)


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{type(frames).__name__} {getattr(frames, 'shape', '')}"
        raise ValueError(f"frames must be a (T, H, W, 3) array, got {got}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
