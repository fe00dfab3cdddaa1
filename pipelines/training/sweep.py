"""The sweep: every variant (or those named) trained on the same split and catalog with the same
settings into RUNS/<variant>/, so their full-ranking metrics compare; `sweep` then writes the
report of the main run beside them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipelines.errors import PipelineError, user_facing
from pipelines.report import ReportPaths, write_report
from pipelines.training.run import train_run
from recmodel.variants import MAIN_VARIANT, get_variant, variant_names


@user_facing
def train_sweep(
    dataset: Path | str,
    store: Path | str | None,
    out_root: Path,
    variants: Sequence[str] | None = None,
    **train_options: Any,
) -> dict[str, dict[str, Any]]:
    """`variants` (default: every registered one) into out_root/<variant>/ with the same
    `train_options` (train_run's: epochs, config, model_overrides, train_overrides, progress,
    fresh, verify_store); variant -> metrics. An unknown variant is refused before anything
    trains; a content variant is skipped, with a note, when there is no store."""
    specs = [get_variant(v) for v in (variant_names() if variants is None else variants)]
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if spec.uses_features and store is None:
            tqdm.write(f"sweep: skipping {spec.name}: it needs a feature store")
            continue
        run = Path(out_root) / spec.name
        out[spec.name] = train_run(dataset, store, run, variant=spec.name, **train_options).metrics
    return out


@user_facing
def sweep(
    dataset: Path | str,
    store: Path | str | None,
    out: Path,
    variants: Sequence[str] | None = None,
    main_variant: str | None = None,
    **train_options: Any,
) -> ReportPaths:
    """train_sweep, then the report of the main run (`main_variant`; by default the main
    variant when swept) written into its directory. A finished run is only re-exported unless
    `fresh`; a store that would not verify is refused unless `verify_store` is False."""
    variants = list(dict.fromkeys(variants or variant_names()))
    if not variants:
        raise PipelineError("no variants to sweep")
    main = _pick_main(variants, main_variant)
    trained = train_sweep(dataset, store, out, variants, **train_options)
    if main not in trained:
        raise PipelineError(f"the main variant {main} was not trained (it needs a feature store)")
    return write_report(Path(out) / main)


def _pick_main(variants: Sequence[str], main_variant: str | None) -> str:
    if main_variant:
        if main_variant not in variants:
            raise PipelineError(
                f"main variant {main_variant!r} is not among the swept variants "
                f"({', '.join(variants)})"
            )
        return main_variant
    if MAIN_VARIANT in variants:
        return MAIN_VARIANT
    learned = [v for v in variants if get_variant(v).learned]
    return (learned or list(variants))[-1]
