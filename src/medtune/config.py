"""The study configuration: one YAML file validated with pydantic.

Precedence, lowest first: the preset (``quick`` or ``full``), the user's YAML
file, command-line flags. Unknown keys are errors, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import MedtuneError
from .tasks import TASK_NAMES


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskData(Strict):
    """A user's own data for one task (CSV, JSONL, Parquet or a save_to_disk folder)."""

    train: Path
    test: Path | None = Field(None, description="without it, a seeded stratified split of `train` is made")
    map: dict[str, str] = Field(default_factory=dict, description="canonical column -> your column")
    test_fraction: float = Field(0.2, gt=0, lt=1)


class DataSettings(Strict):
    train_limit: int | None = Field(None, ge=1, description="use at most this many training examples per task")
    test_limit: int | None = Field(None, ge=1, description="evaluate on at most this many test examples per task")
    strict: bool = Field(False, description="treat data warnings as errors")
    tasks: dict[str, TaskData] = Field(default_factory=dict, description="your own files per task; bundled otherwise")

    @field_validator("tasks")
    @classmethod
    def known_task_names(cls, value: dict) -> dict:
        unknown = [t for t in value if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known tasks: {', '.join(TASK_NAMES)}")
        return value


class SFTSettings(Strict):
    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: train for `epochs`")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    save_steps: int = Field(25, ge=1, description="checkpoint interval, for resuming an interrupted run")
    gradient_checkpointing: bool = Field(False, description="save memory on big models at ~30% speed")


class PairSettings(Strict):
    strategy: Literal["model_errors"] = "model_errors"
    samples: int = Field(2, ge=1, description="outputs sampled per training prompt")
    temperature: float = Field(1.0, ge=0)
    max_prompts: int | None = Field(None, ge=1)
    label_swap_fallback: bool = Field(True, description="label tasks: a wrong label when the model made no error")


class DPOSettings(Strict):
    loss_type: str = "sigmoid"
    beta: float = Field(0.1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    save_steps: int = Field(25, ge=1)
    gradient_checkpointing: bool = False

    @field_validator("loss_type")
    @classmethod
    def known_loss(cls, value: str) -> str:
        known = {"sigmoid", "ipo", "robust", "hinge", "apo_zero", "sigmoid_norm", "bco_pair", "exo_pair"}
        if value not in known:
            raise ValueError(f"unknown DPO loss {value!r}; choose one of {sorted(known)}")
        return value


class EvalSettings(Strict):
    batch_size: int = Field(16, ge=1)


class StatsSettings(Strict):
    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap_samples: int = Field(2000, ge=100)


class Config(Strict):
    model: str = Field("embedded", description="'embedded', a local HF model folder, or a hub id")
    run_dir: Path = Path("runs/demo")
    preset: Literal["quick", "full"] = "quick"
    tasks: list[str] = Field(default_factory=lambda: list(TASK_NAMES))
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataSettings = DataSettings()
    sft: SFTSettings = SFTSettings()
    pairs: PairSettings = PairSettings()
    dpo: DPOSettings = DPOSettings()
    eval: EvalSettings = EvalSettings()
    stats: StatsSettings = StatsSettings()

    @field_validator("tasks")
    @classmethod
    def known_tasks(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known tasks: {', '.join(TASK_NAMES)}")
        if not value:
            raise ValueError("no task chosen")
        return value


# Quick: sized so the five-task study on the embedded model finishes in about
# ten minutes on two CPU cores and still shows what SFT does (see README).
# Full: whole datasets and paper-like epochs.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"train_limit": 160, "test_limit": 60},
        "sft": {"max_steps": 30, "batch_size": 8, "learning_rate": 3e-4, "max_length": 512},
        "pairs": {"samples": 2, "temperature": 1.0, "max_prompts": 32},
        "dpo": {"max_steps": 12, "batch_size": 4, "learning_rate": 1e-4, "max_length": 512},
        "stats": {"bootstrap_samples": 1000},
    },
    "full": {
        "data": {"train_limit": None, "test_limit": None},
        "sft": {"epochs": 3, "max_steps": -1, "learning_rate": 2e-4},
        "pairs": {"samples": 4, "max_prompts": None},
        "dpo": {"epochs": 2, "max_steps": -1, "learning_rate": 5e-5},
        "stats": {"bootstrap_samples": 5000},
    },
}


def deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedtuneError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedtuneError(f"{path}: cannot read config file ({exc})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MedtuneError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MedtuneError(f"{path}: the config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config(path: Path | None = None, overrides: dict | None = None, source: str | None = None) -> Config:
    """Preset defaults < YAML file < overrides (CLI flags), validated."""
    user = read_yaml(path) if path else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged_user = deep_merge(user, overrides)
    preset = merged_user.get("preset", "quick")
    if preset not in PRESETS:
        raise MedtuneError(f"{source or path or 'config'}: preset: {preset!r} is not one of {sorted(PRESETS)}")
    merged = deep_merge(PRESETS[preset], merged_user)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise MedtuneError(format_validation_error(exc, source or str(path or "config"))) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check the spelling; see configs/example.yaml)")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  - {key}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
