"""What an extraction is: the extractor settings a feature-store version is fingerprinted by.

A preset names one prompt (`prompt_template`) or a prompt bank (`prompts`, paper §3.4: a small
set of canonical prompts per video). A bank is stored as one ordinary version per prompt (its
`members()`, each fingerprinted exactly as a single-prompt preset with that prompt would be) and
a bank version naming them (featurizer.store.bank)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORE_FORMAT_VERSION = 2  # featurizer.store.layout: 2 = sharded; 1 stays readable
PRESET_DIR = Path(__file__).parent / "presets"
VIDEO_MARKER = "<video>"  # where a prompt template puts the video (at most once)

DEFAULT_PROMPT = (
    '<video>\nThis short video is titled "{title}". Describe its topic, look and motion '
    "in one sentence."
)


@dataclass(frozen=True)
class ExtractorConfig:
    """Every setting that changes the stored features. Settings that only change speed
    (batch size, device, actor count) live elsewhere, so they never move the fingerprint."""

    model: str  # local checkpoint directory, or a hub id resolved from the local cache
    revision: str = "main"
    prompt_template: str = DEFAULT_PROMPT  # "{title}" is replaced by the item's title ("" if none)
    layers: tuple[int, ...] = (0, 4, 8, 12, 16, 20)  # hidden-state indices; 0 = embedding output
    k_tokens: int = 64  # rows kept per layer: (k_tokens - new_tokens) merged old + new_tokens new
    new_tokens: int = 16  # G greedily generated tokens whose hidden states are kept
    frames: int = 8  # T frames sampled uniformly over the whole video
    resolution: int = 224  # frames are decoded straight at resolution x resolution
    merge: str = "bipartite"  # how old tokens are reduced to k_tokens - new_tokens
    torch_dtype: str = "float32"  # compute dtype of the frozen model (features are stored float16)
    architecture: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # ^ the model's config values, for building it with random weights where no checkpoint exists
    random_weights: bool = False  # opt in to that build; fingerprinted, so such features never
    # share a store version with the real model's
    prompts: tuple[str, ...] = ()  # a prompt bank (several templates); then prompt_template is
    # the first of them, the bank's primary prompt

    def __post_init__(self) -> None:
        if not 0 < self.new_tokens < self.k_tokens:
            raise ValueError(
                f"new_tokens must be in (0, k_tokens): {self.new_tokens}, {self.k_tokens}"
            )
        layers = list(self.layers) if isinstance(self.layers, (list, tuple)) else None
        if not layers or any(not _is_int(i) or i < 0 for i in layers):
            raise ValueError(f"layers must be non-negative hidden-state indices: {self.layers}")
        if layers != sorted(set(layers)):
            raise ValueError(
                f"layers must name each hidden-state index once, in increasing order (the deepest "
                f"last): {list(self.layers)}"
            )
        object.__setattr__(self, "layers", tuple(int(i) for i in layers))
        for name in ("k_tokens", "new_tokens", "frames", "resolution"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"{name} must be a positive integer: {value!r}")
        for name in ("model", "revision", "merge", "torch_dtype"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string: {getattr(self, name)!r}")
        if not isinstance(self.prompt_template, str):
            raise ValueError(f"prompt_template must be a string: {self.prompt_template!r}")
        if self.prompts:
            prompts = tuple(self.prompts)
            if any(not isinstance(p, str) or not p.strip() for p in prompts):
                raise ValueError("prompts: every prompt of a bank is a non-empty template")
            repeated = sorted({p for p in prompts if prompts.count(p) > 1})
            if repeated:
                raise ValueError(f"prompts: the bank names {repeated[0]!r} twice")
            object.__setattr__(self, "prompts", prompts)
            object.__setattr__(self, "prompt_template", prompts[0])

        for prompt in self.prompts or (self.prompt_template,):
            if prompt.count(VIDEO_MARKER) > 1:
                raise ValueError(
                    f"{'prompts' if self.prompts else 'prompt_template'}: {prompt!r} has more "
                    f"than one {VIDEO_MARKER} marker (it says where the one video goes)"
                )

    @property
    def is_bank(self) -> bool:
        """A prompt bank (`prompts` given), even of one prompt."""
        return bool(self.prompts)

    def members(self) -> tuple[ExtractorConfig, ...]:
        """One single-prompt config per prompt of the bank, in the bank's order (a config of one
        prompt is its own only member)."""
        if not self.prompts:
            return (self,)
        return tuple(dataclasses.replace(self, prompts=(), prompt_template=p) for p in self.prompts)

    @property
    def old_tokens(self) -> int:
        return self.k_tokens - self.new_tokens

    def fingerprint_fields(self) -> dict[str, Any]:
        """The human-readable content of extractor.json that the fingerprint hashes. A bank's
        are its members' fingerprints in order (each hashes everything about its prompt)."""
        if self.prompts:
            return {
                "bank": [member.fingerprint() for member in self.members()],
                "store_format": STORE_FORMAT_VERSION,
            }
        return {
            "model": model_identity(self.model),
            "revision": self.revision,
            "prompt_template": self.prompt_template,
            "layers": list(self.layers),
            "k_tokens": self.k_tokens,
            "new_tokens": self.new_tokens,
            "frames": self.frames,
            "resolution": self.resolution,
            "merge": self.merge,
            "torch_dtype": self.torch_dtype,
            "random_weights": self.random_weights,
            "store_format": STORE_FORMAT_VERSION,
        }

    def fingerprint(self) -> str:
        return fingerprint_of(self.fingerprint_fields())

    def item_prompt(self, title: str | None) -> str:
        """One item's prompt text: the template with its title ("" if none) filled in. The
        extractor renders exactly this with the processor's chat template, which is the same
        for every item of a model, so this text is what differs per item."""
        return fill_prompt(self.prompt_template, title)

    def prompt_sha256(self, title: str | None) -> str:
        """The prompt half of an item's source identity (the video's sha256 is the other):
        a changed title changes it, and with it that item's row only."""
        return hashlib.sha256(self.item_prompt(title).encode("utf-8")).hexdigest()

    def replace(self, **changes: Any) -> ExtractorConfig:
        """A copy with `changes`; a new `prompt_template` alone makes a single-prompt config of
        a bank (the prompt replaces the bank's)."""
        if "prompt_template" in changes and "prompts" not in changes:
            changes["prompts"] = ()
        return dataclasses.replace(self, **changes)


def fingerprint_of(fields: dict[str, Any]) -> str:
    """A store version's name: the short hash of what it is (an extractor's fingerprint_fields,
    a bank's members, a view's derivation), as extractor.json's `fingerprinted` fields record."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fill_prompt(template: str, title: str | None) -> str:
    """A prompt template with its "{title}" filled in ("" without a title)."""
    return template.replace("{title}", "" if title is None else str(title))


def model_identity(model: str) -> str:
    """A stable name for a model: a hub id as written; a local directory by the hash of its
    config.json and its weight files' names and sizes (not its path, which differs per machine,
    and not its bytes, which would take minutes to hash for a 7B checkpoint)."""
    path = Path(model)
    if not (path / "config.json").is_file():
        return model
    h = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"local:{h.hexdigest()[:16]}"


def load_preset(name_or_path: str) -> ExtractorConfig:
    """A preset is a JSON file: a name from featurizer/presets/ or a path to one."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.json")))
        raise ValueError(f"unknown preset {name_or_path!r} (known: {known})")
    values = _read_json(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a preset is a JSON object")
    values.pop("description", None)
    if "layers" in values:
        values["layers"] = tuple(values["layers"])
    if "prompts" in values:
        if "prompt_template" in values:
            raise ValueError(
                f"{path}: give prompt_template (one prompt) or prompts (a bank), not both"
            )
        if not isinstance(values["prompts"], list) or not values["prompts"]:
            raise ValueError(f"{path}: prompts must be a non-empty list of prompt templates")
        values["prompts"] = tuple(values["prompts"])
    try:
        return ExtractorConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def model_values(config: ExtractorConfig) -> dict[str, Any]:
    """The model's config.json values (or the preset's architecture), without loading it."""
    values = config.architecture
    path = Path(config.model) / "config.json"
    if path.is_file():
        values = _read_json(path)
    if not isinstance(values, dict):
        raise ValueError(
            f"model {config.model!r}: no config.json there and no architecture in the preset"
        )
    return values


def hidden_size_of(config: ExtractorConfig) -> int:
    """The language model's width D, read from config.json (or the preset's architecture)
    without loading the model, so a store can be laid out before any actor starts. Older
    Qwen2.5-VL config.json files keep the text sizes at the top level."""
    values = model_values(config)
    text = values.get("text_config", values)
    if "hidden_size" not in text:
        raise ValueError(f"model {config.model!r}: config has no text_config.hidden_size")
    return int(text["hidden_size"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
