"""Hidden-state capture for several prompts of one video that share a prefix (the paper's prompt
bank, §3.4): the shared part runs once, each prompt adds only its own text and generated tokens.

Every supported chat template puts the video before the prompt's text, so under causal
attention the hidden states of the system turn and the video tokens are the same for every
prompt. For P prompts of one video, as token sequences s_1..s_P:

1. prefix: the longest common prefix of the sequences (at least the video; at most one token
   short of the shortest, so every prompt keeps a token of its own), run once with the
   processor's pixel inputs -> its hidden states at every layer and its KV cache;
2. suffixes: the P remainders in one batch over the cache repeated P times. They differ in
   length, so each is padded on its left, between the prefix and its first token: the padding
   is masked out and positions continue from the prefix (pads take no position), so every row's
   last position is its prompt's last token;
3. G greedy steps for all P rows at once (the model's end-of-turn tokens masked, so every
   prompt gets exactly G new tokens; the last generated token is never fed back, so G states
   need G steps after the prompt, as with `generate(min_new_tokens=G + 1)`).

Positions, as `generate` gives them over the whole prompt. Models with plain rotary positions
place token t at t. Qwen-VL's multimodal rotary positions (M-RoPE, the model's own
`get_rope_index`) give the video tokens positions by time and grid, and the text after the
video one position each from where the video's end leaves it; a generated token goes one past
the largest position of its whole prompt (video times included), then one per step. So a
suffix starts one past the prefix's last token, and a prompt's new tokens one past the larger of
its last token and the prefix's largest position.

With one prompt this is a plain prompt forward and G decoding steps. The states equal those of
`generate` up to float rounding (different matmul shapes); the tests pin both.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

# processor outputs that run along the token sequence (sliced to the prefix); the rest (pixel
# values, grids, frame times) belong to the video, which the prefix holds whole
TOKEN_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class PromptStates:
    """One prompt's hidden states at the tapped layers."""

    old: list[torch.Tensor]  # per tapped layer: (n_old, D), the whole prompt (prefix + suffix)
    new: torch.Tensor  # (L, G, D): the G generated tokens' states per tapped layer

    @property
    def n_old(self) -> int:
        return int(self.old[0].shape[0])


def common_prefix_length(sequences: list[torch.Tensor]) -> int:
    """Tokens all `sequences` (1-D) share at their start, at most one short of the shortest."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    n = 0
    while n < limit and all(int(s[n]) == int(first[n]) for s in sequences[1:]):
        n += 1
    return n


@torch.inference_mode()
def capture_prompts(
    model: Any,
    inputs: dict[str, torch.Tensor],
    sequences: list[torch.Tensor],
    layers: tuple[int, ...],
    new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
) -> list[PromptStates]:
    """States of every prompt in `sequences` (1-D token ids, each a whole prompt: the video
    expanded as the processor expands it, then the text). `inputs` is the processor's output for
    one of them (its pixel inputs are the video's); its token inputs are cut to the shared
    prefix, which must hold every video token."""
    device = inputs["input_ids"].device
    P, G = len(sequences), new_tokens
    prefix_len = common_prefix_length(sequences)
    cache_key = _cache_keyword(model)
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = None  # computed afresh from this video's prefix
    prefix_inputs = {
        key: value[:, :prefix_len] if key in TOKEN_INPUTS else value
        for key, value in inputs.items()
    }
    out = model(**prefix_inputs, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    prefix_states = [out.hidden_states[layer][0] for layer in layers]  # L x (prefix_len, D)
    cache = _cache_of(out)
    first_position, prefix_top = _prefix_positions(inner, prefix_inputs)

    # suffixes: (P, S) ids, left-padded after the prefix; mask over prefix + suffix
    suffixes = [s[prefix_len:].to(device) for s in sequences]
    lengths = torch.tensor([len(s) for s in suffixes], device=device)  # (P,)
    S = int(lengths.max())
    ids = torch.full((P, S), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((P, prefix_len + S), dtype=torch.long, device=device)
    mask[:, :prefix_len] = 1
    positions = torch.full((P, S), first_position, dtype=torch.long, device=device)
    for i, suffix in enumerate(suffixes):
        n = len(suffix)
        ids[i, S - n :] = suffix
        mask[i, prefix_len + S - n :] = 1
        positions[i, S - n :] = first_position + torch.arange(n, device=device)
    if P > 1:
        cache.batch_repeat_interleave(P)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache_position=torch.arange(prefix_len, prefix_len + S, device=device),
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=1,
        **{cache_key: cache},
    )
    suffix_states = [out.hidden_states[layer] for layer in layers]  # L x (P, S, D)
    old = [
        [torch.cat([prefix_states[j], suffix_states[j][i, S - int(lengths[i]) :]]) for j in range(len(layers))]
        for i in range(P)
    ]  # fmt: skip

    new = []  # G x (L, P, D)
    new_position = torch.clamp(first_position + lengths - 1, min=prefix_top) + 1  # (P,)
    tokens = _greedy(out.logits, stop_ids)  # (P,)
    past = prefix_len + S
    for step in range(G):
        mask = torch.cat([mask, mask.new_ones((P, 1))], dim=1)
        out = model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=(new_position + step)[:, None],
            cache_position=torch.tensor([past], device=device),
            use_cache=True,
            output_hidden_states=True,
            logits_to_keep=1,
            **{cache_key: _cache_of(out)},
        )
        past += 1
        new.append(torch.stack([out.hidden_states[layer][:, -1] for layer in layers]))
        if step + 1 < G:
            tokens = _greedy(out.logits, stop_ids)
    new_states = torch.stack(new, dim=2)  # (L, P, G, D)
    return [PromptStates(old=old[i], new=new_states[:, i]) for i in range(P)]


def _greedy(logits: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """(P, 1, V) logits -> (P,) next tokens, never an end-of-turn token."""
    scores = logits[:, -1].float()
    if stop_ids:
        scores[:, stop_ids] = -float("inf")
    return scores.argmax(dim=-1)


def _prefix_positions(inner: Any, prefix_inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(the position after the prefix's last token, the prefix's largest position): from the
    model's own multimodal rotary index where it has one (Qwen-VL), else the token count."""
    n = int(prefix_inputs["input_ids"].shape[1])
    rope_index = getattr(inner, "get_rope_index", None)
    if rope_index is None:
        return n, n - 1
    accepted = inspect.signature(rope_index).parameters
    positions, _ = rope_index(**{k: v for k, v in prefix_inputs.items() if k in accepted})
    return int(positions[0, 0, -1]) + 1, int(positions.max())


def _cache_keyword(model: Any) -> str:
    """transformers 5 names the KV cache argument `cache` (`past_key_values` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    """The output's KV cache: `cache` in transformers 5 (where `past_key_values` is deprecated)."""
    cache = getattr(out, "cache", None) if "cache" in out else None
    return cache if cache is not None else out.past_key_values
