"""The variant registry (recmodel/variants.py) as the orchestration reads it: dagster_project
imports pipelines only, so the registry reaches it through here, unchanged."""

from recmodel.variants import (
    FLOOR_VARIANT,
    ID_VARIANT,
    MAIN_VARIANT,
    Variant,
    all_variants,
    bank_variant,
    get_variant,
    register,
    unregister,
    variant_names,
)

__all__ = [
    "FLOOR_VARIANT",
    "ID_VARIANT",
    "MAIN_VARIANT",
    "Variant",
    "all_variants",
    "bank_variant",
    "get_variant",
    "register",
    "unregister",
    "variant_names",
]
