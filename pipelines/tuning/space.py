"""A hyperparameter search space as a user writes it: a YAML file naming TrainConfig fields, and
ModelConfig fields under `model:` (the layout of a training config file), each with one
distribution:

    lr_encoder: {loguniform: [1.0e-4, 3.0e-3]}
    weight_decay: {choice: [0.0, 0.01, 0.1]}
    batch_size: {grid: [64, 256]}          # every value, for each of --trials samples
    warmup_steps: {randint: [0, 50]}       # integers low <= x < high
    model: {dropout: {uniform: [0.0, 0.3]}}

Every value a distribution can take is checked by the field's own check (type, bounds,
choices) when the file is read, so a typo is one line naming the file and field, not sixteen
failed trials. Checks across fields (d_model divisible by n_heads) happen in each trial, where
a failing combination is that trial's error. Settings that size a trial's resources or its run
(`workers`, `memory_budget_bytes`, `device`, `epochs`) are fixed for the whole search, not
searched: every trial gets the same budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import PipelineError
from pipelines.training.settings import MODEL_FIELDS
from recmodel.config import ModelConfig, TrainConfig, checked_value

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
NOT_SEARCHED = ("memory_budget_bytes", "device", "epochs", "placement", "rendezvous", "seed")
MODEL_PREFIX = "model."

DEFAULT_SPACE_YAML = """\
# linkedout tune's default search space: the settings that move a short run most.
lr_encoder: {loguniform: [2.0e-4, 5.0e-3]}
lr_head: {loguniform: [2.0e-4, 5.0e-3]}
weight_decay: {choice: [0.0, 0.01, 0.1]}
batch_size: {choice: [64, 128, 256]}
warmup_steps: {choice: [0, 10, 50]}
model: {dropout: {uniform: [0.0, 0.4]}}
"""


@dataclass(frozen=True)
class Dimension:
    """One searched setting: `name` is a TrainConfig field or `model.<ModelConfig field>`."""

    name: str
    kind: str  # one of DISTRIBUTIONS
    values: tuple[Any, ...]  # choice/grid: the values; uniform/loguniform/randint: (low, high)

    def domain(self) -> Any:
        """The Ray Tune domain (imported here: reading a space needs no Ray)."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        low, high = self.values
        if self.kind == "uniform":
            return tune.uniform(low, high)
        if self.kind == "loguniform":
            return tune.loguniform(low, high)
        return tune.randint(low, high)


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str  # the file, or "the default space"

    @property
    def grid_size(self) -> int:
        """Trials per sample: every combination of the grid dimensions' values."""
        return math.prod(len(d.values) for d in self.dimensions if d.kind == "grid")

    def param_space(self) -> dict[str, Any]:
        """Ray Tune's param_space: one flat key per dimension."""
        return {d.name: d.domain() for d in self.dimensions}

    def describe(self) -> dict[str, Any]:
        """What the search records (linkedout-tune.json): name -> {kind: values}."""
        return {d.name: {d.kind: list(d.values)} for d in self.dimensions}


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's flat parameters -> (TrainConfig values, ModelConfig values)."""
    train, model = {}, {}
    for name, value in params.items():
        if name.startswith(MODEL_PREFIX):
            model[name[len(MODEL_PREFIX) :]] = value
        else:
            train[name] = value
    return train, model


def read_space(path: str | Path | None) -> SearchSpace:
    """The space in `path` (None: the default space), every value checked."""
    import yaml

    if path is None:
        return parse_space(yaml.safe_load(DEFAULT_SPACE_YAML), "the default space")
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PipelineError(f"search space {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"search space {path}: not valid YAML{at}") from None
    return parse_space(raw, str(path))


def parse_space(raw: Any, where: str) -> SearchSpace:
    if not isinstance(raw, Mapping) or not raw:
        raise PipelineError(f"search space {where}: expected a mapping of field: distribution")
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name: f for f in dataclasses.fields(ModelConfig) if f.name in MODEL_FIELDS}
    dimensions = []
    for name, spec in raw.items():
        if name == "model":
            if not isinstance(spec, Mapping):
                raise PipelineError(f"search space {where}: model: expected a mapping of fields")
            for sub, sub_spec in spec.items():
                if sub not in model_fields:
                    raise PipelineError(
                        f"search space {where}: model.{sub}: not a model field a run may set "
                        f"({', '.join(MODEL_FIELDS)})"
                    )
                dimensions.append(_dimension(f"model.{sub}", model_fields[sub], sub_spec, where))
            continue
        if name in NOT_SEARCHED or name == "workers":
            raise PipelineError(
                f"search space {where}: {name}: fixed for the whole search, not searched "
                "(give it as a flag or in --config)"
            )
        if name not in train_fields:
            raise PipelineError(
                f"search space {where}: unknown field {name!r}; see `linkedout train --help`"
            )
        dimensions.append(_dimension(name, train_fields[name], spec, where))
    return SearchSpace(tuple(dimensions), where)


def _dimension(name: str, f: dataclasses.Field, spec: Any, where: str) -> Dimension:
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise PipelineError(
            f"search space {where}: {name}: expected one of "
            f"{', '.join('{' + d + ': [...]}' for d in DISTRIBUTIONS)}, got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise PipelineError(f"search space {where}: {name}: {kind} needs a list of values")
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2:
            raise PipelineError(f"search space {where}: {name}: {kind} needs [low, high]")
        kind_of = f.type if isinstance(f.type, str) else f.type.__name__
        if kind != "randint" and kind_of != "float":
            raise PipelineError(
                f"search space {where}: {name}: an integer field; use randint, choice or grid"
            )
        if kind == "randint" and kind_of != "int":
            raise PipelineError(f"search space {where}: {name}: randint is for integer fields")
    try:
        checked = tuple(checked_value(f, v) for v in values)
    except ValueError as exc:
        prefix = MODEL_PREFIX if name.startswith(MODEL_PREFIX) else ""
        raise PipelineError(f"search space {where}: {prefix}{exc}") from None
    if kind in ("uniform", "loguniform", "randint"):
        low, high = checked
        if not low < high or (kind == "loguniform" and not low > 0):
            bounds = "0 < low < high" if kind == "loguniform" else "low < high"
            raise PipelineError(
                f"search space {where}: {name}: {kind} needs {bounds}, got [{low}, {high}]"
            )
    return Dimension(name, kind, checked)
