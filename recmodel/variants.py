"""The variant registry: one record per variant of the ablation table (paper Table 4 plus two
baselines), and the one place a variant is named. The item encoder dispatches on a record's
fields; the CLI's choices, the Dagster assets and their descriptions, the sweep and the report's
tables, figures and colours all read this registry, so adding a variant is one `register` call.

    name                   encoder     view                    item vector
    popularity             popularity  -                       log(1 + train count), nothing learned
    id_only                id          -                       ID embedding (SASRec)
    last_layer_last_token  linear      last_layer_last_token   Linear(norm(last layer's last token))
    mean_pool_moe          layer_moe   mean                    CrossLayerMoE(projected mean over K)
    last_token_moe         layer_moe   last                    CrossLayerMoE(projected last token)
    full                   token_moe   tokens                  CrossLayerMoE(TokenCompressorExpert)
    full_id_fusion         token_moe   tokens                  full, gated with an ID embedding
    full_prompt_bank       token_moe   tokens                  full over a prompt bank's P rows
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODERS = ("popularity", "id", "linear", "layer_moe", "token_moe")
VIEWS = ("tokens", "mean", "last", "last_layer_last_token")  # recmodel.features.reduce_features


@dataclass(frozen=True)
class Variant:
    """What a variant is: how its item encoder is built and which features it reads, and how
    the report and Dagster name it."""

    name: str  # config.json's "variant", runs/<name>/, ranker_<name> in Dagster
    label: str  # its row in the report's tables and its figure legend
    description: str  # the Dagster asset's description; one sentence
    encoder: str  # one of ENCODERS
    view: str | None = None  # the part of an item's (L, K, D) rows it reads; None: no features
    id_fusion: bool = False  # gate the content vector with an ID embedding (fusion.IDFusion)
    prompt_bank: bool = False  # read every prompt of the store's prompt bank (PromptGate)
    color: str = "#8a94a6"  # its bars in the report's comparison figure

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"variant {self.name}: encoder must be one of {', '.join(ENCODERS)}")
        if (self.view is None) != (self.encoder in ("popularity", "id")):
            raise ValueError(f"variant {self.name}: a content encoder needs a view, others none")
        if self.view is not None and self.view not in VIEWS:
            raise ValueError(f"variant {self.name}: view must be one of {', '.join(VIEWS)}")

    @property
    def learned(self) -> bool:
        return self.encoder != "popularity"

    @property
    def uses_features(self) -> bool:
        return self.view is not None

    @property
    def uses_moe(self) -> bool:
        return self.encoder in ("layer_moe", "token_moe")

    @property
    def splits_tokens(self) -> bool:
        """Reads each layer's K tokens as K - G merged old ones and G new ones."""
        return self.encoder == "token_moe"


_REGISTRY: dict[str, Variant] = {}

MAIN_VARIANT = "full"  # the report's main run, the compact views' variant, the default
FLOOR_VARIANT = "popularity"  # every learned variant must beat it (the metric floor check)
ID_VARIANT = "id_only"  # the content-free baseline the report compares with


def register(variant: Variant) -> Variant:
    """Add `variant` after the others (the report's row order); its name must be new."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name} is registered already")
    _REGISTRY[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove a variant (a test's own); the built-in ones stay."""
    _REGISTRY.pop(name, None)


def all_variants() -> tuple[Variant, ...]:
    return tuple(_REGISTRY.values())


def variant_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown variant {name!r}; choose one of: {', '.join(_REGISTRY)}"
        ) from None


def bank_variant() -> Variant | None:
    """The variant that reads a prompt bank, if one is registered."""
    return next((v for v in _REGISTRY.values() if v.prompt_bank), None)


register(
    Variant(
        "popularity",
        "Popularity",
        "Train-count ranking: nothing learned; the floor every variant must beat.",
        encoder="popularity",
        color="#c4cad4",
    )
)
register(
    Variant(
        "id_only",
        "ID only (SASRec)",
        "SASRec over learned item-ID embeddings (no video features).",
        encoder="id",
        color="#6b7585",
    )
)
register(
    Variant(
        "last_layer_last_token",
        "Last layer, last token",
        "The last tapped layer's last token, one linear projection, no MoE.",
        encoder="linear",
        view="last_layer_last_token",
        color="#9ecae1",
    )
)
register(
    Variant(
        "mean_pool_moe",
        "Mean pooling + MoE",
        "Mean over all K tokens per layer, then the cross-layer MoE.",
        encoder="layer_moe",
        view="mean",
        color="#6baed6",
    )
)
register(
    Variant(
        "last_token_moe",
        "Last token + MoE",
        "The last token per layer, then the cross-layer MoE.",
        encoder="layer_moe",
        view="last",
        color="#3182bd",
    )
)
register(
    Variant(
        "full",
        "LinkedOut (full)",
        "LinkedOut: Token Compressor Experts (old/new token branches) and the cross-layer "
        "knowledge-fusion MoE item encoder under a SASRec ranker.",
        encoder="token_moe",
        view="tokens",
        color="#d9480f",
    )
)
register(
    Variant(
        "full_id_fusion",
        "LinkedOut + ID fusion",
        "LinkedOut fused with an ID embedding by a learned gate (the DFF study).",
        encoder="token_moe",
        view="tokens",
        id_fusion=True,
        color="#f08c00",
    )
)
register(
    Variant(
        "full_prompt_bank",
        "LinkedOut + prompt bank",
        "LinkedOut over the store's prompt bank: every video read under each canonical prompt, "
        "mixed per item by a learned prompt gate before the cross-layer MoE.",
        encoder="token_moe",
        view="tokens",
        prompt_bank=True,
        color="#a61e4d",
    )
)
