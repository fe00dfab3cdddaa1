"""Training configuration as a user writes it: a YAML or JSON file (or the name of one shipped in
pipelines/training/configs/, like extractor presets), then flags or run-config values on top.

    # train.yaml: any TrainConfig field, plus `workers` and a `model:` mapping of ModelConfig
    # fields (widths, queries, blocks); what is not named keeps its default (Table 6's)
    batch_size: 128
    lr_encoder: 3e-4
    negatives: cached
    cache_refresh_steps: 200
    memory_budget_bytes: 12GiB
    model: {d_model: 128}

Precedence: TrainConfig's defaults < the file < explicit values (CLI flags, Dagster run
config). Every value is checked by TrainConfig / ModelConfig, and an error names the file and
the field.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError, one_line
from recmodel.config import ModelConfig, TrainConfig
from recmodel.variants import get_variant

CONFIGS_DIR = Path(__file__).parent / "configs"
DEMO_CONFIG = "demo"  # the demo's tuned settings: configs/demo.yaml
# ModelConfig fields a config file may set; the rest follow from the store and the variant
FROM_THE_DATA = {"variant", "n_items", "n_layers", "n_tokens", "feature_dim", "n_new", "n_prompts"}
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in FROM_THE_DATA)


@dataclass
class TrainingValues:
    """What a config file and explicit values say, before the dataset fills in the rest."""

    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    workers: int | None = None
    source: str = "defaults"  # where the values came from, for messages and config.json


def train_fields() -> Iterator[dataclasses.Field]:
    """TrainConfig's fields, each with metadata["help"] (and "choices" where it has some)."""
    yield from dataclasses.fields(TrainConfig)


def config_path(spec: str | Path) -> Path:
    """A shipped config's name (`demo`) or a YAML/JSON file."""
    path = Path(spec)
    if path.suffix.lower() in {".yaml", ".yml", ".json"} or path.exists():
        return path
    shipped = CONFIGS_DIR / f"{spec}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
    raise PipelineError(f"training config {spec!r}: no such file, and not one of: {names}")


def read_config_file(spec: str | Path) -> TrainingValues:
    """The values in a config file, checked (unknown names, types, ranges) with the file named."""
    path = config_path(spec)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineError(f"training config {path}: cannot read it ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PipelineError(f"training config {path}: not valid JSON ({exc})") from None
    else:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise PipelineError(
                f"training config {path}: not valid YAML ({at}{problem or one_line(exc)})"
            ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PipelineError(f"training config {path}: expected a mapping of field: value")
    values = split_values(raw, str(path))
    values.source = str(path)
    return values


def split_values(raw: Mapping[str, Any], where: str) -> TrainingValues:
    """Sort `raw` into TrainConfig fields, ModelConfig fields (under `model`) and `workers`;
    check each value. `where` names the source in errors."""
    train_names = {f.name for f in train_fields()}
    values = TrainingValues(source=where)
    for name, value in raw.items():
        if name == "model":
            if not isinstance(value, Mapping):
                raise PipelineError(f"{where}: model: expected a mapping of ModelConfig fields")
            unknown = sorted(set(value) - set(MODEL_FIELDS))
            if unknown:
                raise PipelineError(
                    f"{where}: model: unknown field(s) {', '.join(unknown)}; "
                    f"known: {', '.join(MODEL_FIELDS)}"
                )
            values.model.update(value)
        elif name == "workers":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PipelineError(f"{where}: workers: must be an integer >= 1, got {value!r}")
            values.workers = value
        elif name in train_names:
            values.train[name] = value
        else:
            raise PipelineError(
                f"{where}: unknown field {name!r}; see `linkedout train --help` for the fields"
            )
    check(values, where)
    return values


def check(values: TrainingValues, where: str) -> None:
    """Each value through TrainConfig's and ModelConfig's own checks, one at a time, so the
    error names the field that failed."""
    for name, value in values.train.items():
        try:
            TrainConfig(**{name: value})
        except (TypeError, ValueError) as exc:
            raise PipelineError(f"{where}: {exc}") from None
    if values.model:
        try:
            ModelConfig(**values.model)
        except (TypeError, ValueError) as exc:
            raise PipelineError(f"{where}: model: {exc}") from None


def merge(base: TrainingValues, explicit: Mapping[str, Any] | None, where: str) -> TrainingValues:
    """`base` (a file's values) with `explicit` values on top."""
    if not explicit:
        return base
    top = split_values(explicit, where)
    return TrainingValues(
        train={**base.train, **top.train},
        model={**base.model, **top.model},
        workers=top.workers if top.workers is not None else base.workers,
        source=base.source if base.source != "defaults" else where,
    )


def training_values(
    config: str | Path | None, explicit: Mapping[str, Any] | None = None
) -> TrainingValues:
    """The file's values (none when `config` is None: Table 6's defaults) with `explicit` on
    top."""
    base = read_config_file(config) if config is not None else TrainingValues()
    return merge(base, explicit, "training settings")


def build_configs(
    variant: str, n_items: int, store_info: dict[str, Any], values: TrainingValues
) -> tuple[ModelConfig, TrainConfig]:
    shape: dict[str, Any] = {}
    if store_info.get("shape"):
        L, K, D = store_info["shape"]
        shape = {"n_layers": L, "n_tokens": K, "feature_dim": D, "n_new": store_info["new_tokens"]}
        if get_variant(variant).prompt_bank:
            shape["n_prompts"] = len(store_info["prompts"])
    try:
        model_cfg = ModelConfig(variant=variant, n_items=n_items, **{**shape, **values.model})
        return model_cfg, TrainConfig(**values.train)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"training configuration ({values.source}): {exc}") from None


def resolve_settings(
    config: str | Path | None = None,
    epochs: int | None = None,
    workers: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
) -> TrainingValues:
    """A config file's values with explicit ones on top."""
    explicit: dict[str, Any] = dict(train_overrides or {})
    if model_overrides:
        explicit["model"] = dict(model_overrides)
    if epochs is not None:
        explicit["epochs"] = epochs
    if workers is not None:
        explicit["workers"] = workers
    return training_values(config, explicit)
