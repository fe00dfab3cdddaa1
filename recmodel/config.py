"""Configs of the learned half: what the model is (ModelConfig) and how it is trained (TrainConfig).

Both are plain dataclasses of numbers and strings, so they go into config.json and model.pt
as-is and come back with `from_dict` (no pickled classes, so `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from recmodel.variants import MAIN_VARIANT, Variant, get_variant

NEGATIVES = ("auto", "exact", "cached")
PLACEMENTS = ("PACK", "SPREAD", "STRICT_SPREAD")
RENDEZVOUS = ("tcp", "file")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def _field(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = 0,
    below: float | None = None,
    positive: bool = False,
) -> Any:
    """A config field: its default, the help text the CLI and Dagster show, its check (one of
    `choices`; else at least `minimum`, less than `below`, > 0 when `positive`)."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    elif minimum is not None:
        meta["minimum"] = minimum
    if below is not None:
        meta["below"] = below
    if positive:
        meta["positive"] = True
    return field(default=default, metadata=meta)


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):  # noqa: ANN206 - returns cls
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**values)


@dataclass
class ModelConfig(_Serializable):
    """The item encoder and the ranker. Feature fields describe the store rows (L, K, D, G);
    id_only and popularity ignore them. Every field is checked like TrainConfig's, so a bad
    value is refused naming it before a model is built."""

    variant: str = _field(MAIN_VARIANT, "the ablation variant (variants.py)", minimum=None)
    n_items: int = _field(0, "catalog size (items are indexed 0..n_items-1)")
    # feature layout of one item: L tapped layers x K tokens x D hidden; the last G of the K
    # rows of each layer are the new (generated) tokens, the first K - G the merged old ones
    n_layers: int = _field(6, "L: tapped layers per item", minimum=1)
    n_tokens: int = _field(64, "K: tokens per tapped layer", minimum=1)
    feature_dim: int = _field(4096, "D: the video model's hidden width", minimum=1)
    n_new: int = _field(16, "G: generated (new) tokens among the K of each layer")
    n_prompts: int = _field(
        1, "a prompt bank's P prompts, each with its own (L, K, D) rows", minimum=1
    )
    # widths: d_model is the item-vector width dz and the ranker width (scores are dot products)
    d_model: int = _field(64, "width of item vectors and of the ranker", minimum=1)
    n_queries_old: int = _field(4, "learnable queries of the old-token attention pool", minimum=1)
    n_queries_new: int = _field(2, "learnable queries of the new-token attention pool", minimum=1)
    pool_heads: int = _field(2, "attention heads of the token pools", minimum=1)
    expert_mult: int = _field(
        2, "hidden width of each layer expert's MLP, in multiples of d_model", minimum=1
    )
    gate_hidden: int = _field(64, "hidden width of the layer gate's MLP", minimum=1)
    id_dropout: float = _field(
        0.2, "ID fusion: share of warm items trained as if cold (fusion.py)", below=1.0
    )
    # ranker (SASRec)
    n_blocks: int = _field(2, "transformer blocks of the ranker", minimum=1)
    n_heads: int = _field(2, "attention heads of the ranker", minimum=1)
    max_history: int = _field(
        10, "most recent items of a user's history the ranker reads", minimum=1
    )
    dropout: float = _field(0.1, "dropout of the ranker", below=1.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        spec = get_variant(self.variant)
        # each field alone is valid here, so the checks across fields cannot divide by zero
        if self.d_model % self.n_heads or self.d_model % self.pool_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads} "
                f"and pool_heads={self.pool_heads}"
            )
        if spec.splits_tokens and not 0 < self.n_new < self.n_tokens:
            raise ValueError(
                f"variant {self.variant} splits K={self.n_tokens} tokens into old and new: "
                f"needs 0 < n_new < K, got n_new={self.n_new}"
            )

    @property
    def spec(self) -> Variant:
        """The variant's record (variants.py)."""
        return get_variant(self.variant)

    @property
    def uses_features(self) -> bool:
        return self.spec.uses_features

    @property
    def uses_moe(self) -> bool:
        return self.spec.uses_moe


@dataclass
class TrainConfig(_Serializable):
    """How a variant is trained. The defaults are for short runs on one or a few devices and
    any catalog size: AdamW at 1e-3 for both groups after a linear warmup of 10 optimizer
    steps (AdamW's first steps are lr-sized whatever the gradient, and its second-moment
    estimate needs a few steps), then a constant rate, stopped by validation NDCG@10 (patience
    10, at most 80 epochs). Nothing depends on the dataset's size: the warmup counts steps, not
    epochs, and the end is found on validation. The supplementary's Table 6 (lr 1e-4 encoders /
    1e-5 head, 100 epochs, no warmup) suits 8 GPUs for 100 epochs: `--config paper`
    (pipelines/training/configs/paper.yaml). Weight decay 0.1, clip 5.0, batch 256 and seed 42
    are Table 6's.

    Parameter groups: "encoder" = everything that turns an item into a vector (ID embeddings,
    Token Compressor Experts, layer experts, gate, ID-fusion gate, missing-content vector);
    "head" = the recommendation module (the SASRec ranker).

    Negatives (full or sampled softmax) are the items with at least one training interaction;
    cold-start items stay out of the loss (negatives.py says why). `negatives` says where their
    vectors come from: "exact" encodes every negative with gradients at every step (the
    one-shot computation; its cost grows with the catalog), "cached" takes them from a no-grad
    cache of every item's vector refreshed every `cache_refresh_steps` steps or once per epoch
    (cross-batch negatives, negatives.py), "auto" is exact while a step's items fit the memory
    budget's activation share, else cached.

    Each field's help text is what `linkedout train --help` and the Dagster launchpad show."""

    lr_encoder: float = _field(1e-3, "learning rate of the item encoder group")
    lr_head: float = _field(1e-3, "learning rate of the ranker (head) group")
    weight_decay: float = _field(0.1, "AdamW weight decay on matrices and embeddings")
    grad_clip: float = _field(5.0, "clip the global gradient norm to this", positive=True)
    lr_gamma: float = _field(
        1.0, "multiply the learning rates by this every epoch (1: constant)", positive=True
    )
    warmup_steps: int = _field(10, "linear learning-rate warmup over this many optimizer steps")
    batch_size: int = _field(
        256, "training sequences per optimizer step, over all workers", minimum=1
    )
    epochs: int = _field(80, "most epochs to train", minimum=1)
    max_steps: int = _field(0, "stop after this many optimizer steps in all (0: no limit)")
    patience: int = _field(
        10, "stop after this many epochs without a better valid NDCG@10", minimum=1
    )
    seed: int = _field(42, "seed of weights, shuffling, negatives and dropout")
    full_softmax_max_items: int = _field(
        4096, "full softmax while at most this many items are negatives, else sampled"
    )
    n_negatives: int = _field(1024, "shared negatives per step of the sampled softmax", minimum=1)
    negative_power: float = _field(0.75, "sampled negatives ~ training count ** this")
    negatives: str = _field(
        "auto", "where negatives' vectors come from: exact | cached | auto", choices=NEGATIVES
    )
    cache_refresh_steps: int = _field(
        0, "cached negatives: recompute the item-vector cache every N steps (0: once per epoch)"
    )
    align_weight: float = _field(0.0, "weight of the alignment term (0: off)")
    uniform_weight: float = _field(0.0, "weight of the uniformity term (0: off)")
    memory_budget_bytes: int = _field(
        0,
        "resident memory of one training process: bytes, or 12GiB, 512M (0: half of this "
        "machine's memory, shared by its training processes)",
    )
    micro_batch_items: int = _field(
        0, "most items per encoder call with gradients (0: what the budget's share holds)"
    )
    device: str = _field("auto", "cpu | cuda | auto (cuda where available)", choices=DEVICES)
    precision: str = _field(
        "auto",
        "item encoder precision: fp32 | bf16 | auto (bf16 on cuda, fp32 on cpu)",
        choices=PRECISIONS,
    )
    eval_batch_size: int = _field(512, "most users scored at once in evaluation", minimum=1)
    encode_batch_size: int = _field(256, "most items per encoder call without gradients", minimum=1)
    placement: str = _field(
        "PACK",
        "where Ray Train puts workers > 1: PACK (as few nodes as fit) | SPREAD | STRICT_SPREAD "
        "(one worker a node)",
        choices=PLACEMENTS,
    )
    rendezvous: str = _field(
        "tcp",
        "how Ray Train workers > 1 meet: tcp (torch's store on rank 0, on every interface) | "
        "file (a file in the run directory, which every worker must see; opens no socket)",
        choices=RENDEZVOUS,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))

    # Fields that may change between an interrupted run and its resumption: they change how
    # much is held or computed at once, not what is computed.
    RESUMABLE_CHANGES = (
        "epochs",
        "max_steps",
        "patience",
        "memory_budget_bytes",
        "micro_batch_items",
        "eval_batch_size",
        "encode_batch_size",
        "placement",
        "rendezvous",
    )

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed."""
        values = self.to_dict()
        for name in self.RESUMABLE_CHANGES:
            values.pop(name)
        return values


_BYTES = re.compile(
    r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?:([KMGT])(i)?)?(B)?\s*", re.IGNORECASE
)


def parse_bytes(value: str | int | float) -> int:
    """A byte count: an integer, or a number with a unit ("12GiB", "512M", "1.5 GB"). K, M, G, T
    alone or with iB are powers of 1024, with B of 1000. 0 is 0 (the caller's "automatic"); any
    other amount is at least one byte and, without a unit, a whole number of them, so that a
    typo never becomes 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = repr(value) if isinstance(value, float) else value if isinstance(value, str) else ""
    found = _BYTES.fullmatch(text)
    amount, prefix = math.nan, None
    if found:
        number, prefix, binary, unit = found.groups()
        power = "KMGT".index(prefix.upper()) + 1 if prefix else 0
        amount = float(number) * (1000 if unit and not binary else 1024) ** power
    if not math.isfinite(amount):
        raise ValueError(f"not a byte count: {value!r} (e.g. 12GiB, 512M, 1000000)")
    if amount == 0:
        return 0
    if amount < 1:
        raise ValueError(f"{value!r} is less than one byte (0 means automatic)")
    if not prefix and amount != int(amount):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(amount)


def checked_value(f: dataclasses.Field, value: Any) -> Any:
    """`value` as field `f` of ModelConfig or TrainConfig takes it, checked alone (a search
    space checks each value it may try), or a ValueError naming the field."""
    return _checked(f, value)


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """`value` for field `f`, converted where a config file may spell it as text (YAML reads
    1e-4 as a string), or a ValueError naming the field."""
    meta = f.metadata
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind == "int" and f.name.endswith("_bytes"):
            value = parse_bytes(value)
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be an integer, got {value!r}")
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"must be a number, got {value!r}")
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"must be finite, got {value!r}")
        elif kind == "str" and not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
    except ValueError as exc:
        raise ValueError(f"{f.name}: {exc}") from None
    if "choices" in meta and value not in meta["choices"]:
        raise ValueError(f"{f.name}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if "minimum" in meta and value < meta["minimum"]:
        raise ValueError(f"{f.name}: must be >= {meta['minimum']}, got {value!r}")
    if "below" in meta and not value < meta["below"]:
        raise ValueError(f"{f.name}: must be < {meta['below']}, got {value!r}")
    if meta.get("positive") and not value > 0:
        raise ValueError(f"{f.name}: must be > 0, got {value!r}")
    return value
