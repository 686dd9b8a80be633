"""The study configuration: one YAML file validated with pydantic.

Precedence, lowest first: the preset (``quick``, ``standard`` or ``full``), the user's YAML
file, command-line flags. Unknown keys are errors, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import MedtuneError
from .progress import console
from .tasks import TASK_NAMES, get_task
from .tasks.spec import DataFiles


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def steps_setting(value: int) -> int:
    if value == 0:
        raise ValueError("0 steps would train nothing; use -1 to train for `epochs`, or a number of steps >= 1")
    return value


TaskData = DataFiles  # a user's own files for one task: the same keys as a task spec's data section


class DataSettings(Strict):
    train_limit: int | None = Field(None, ge=1, description="use at most this many training examples per task")
    test_limit: int | None = Field(None, ge=1, description="evaluate on at most this many test examples per task")
    strict: bool = Field(False, description="treat data warnings as errors")
    tasks: dict[str, TaskData] = Field(default_factory=dict, description="your own files per task id; otherwise "
                                       "the bundled data, or the data a task spec names")


class SFTSettings(Strict):
    method: Literal["lora", "qlora", "full"] = Field("lora", description="lora; qlora: the same adapters on 4-bit "
                                                     "NF4 base weights (a CUDA GPU and bitsandbytes); full: every weight")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    lora_layers: int | None = Field(None, ge=1, description="adapters on the last N decoder layers only "
                                    "(a shorter backward pass; null: all layers)")
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: train for `epochs`")

    @field_validator("max_steps")
    @classmethod
    def some_steps(cls, value: int) -> int:
        return steps_setting(value)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    save_steps: int = Field(25, ge=1, description="checkpoint interval, for resuming an interrupted run")
    gradient_checkpointing: bool = Field(False, description="save memory on big models at ~30% speed")


class PairSettings(Strict):
    strategy: Literal["model_errors", "label_swap", "judge_ranked", "human"] = Field(
        "model_errors", description="model_errors: the model's own wrong outputs; label_swap: a wrong label; "
        "judge_ranked (summarization): best vs worst graded sample; human: pairs from human_file only")
    samples: int = Field(2, ge=1, description="outputs sampled per training prompt")
    temperature: float = Field(1.0, ge=0)
    max_prompts: int | None = Field(None, ge=1)
    label_swap_fallback: bool = Field(True, description="label tasks: a wrong label when the model made no error")
    min_grade_gap: int = Field(1, ge=1, description="judge_ranked: best and worst grades must differ this much")
    human_file: Path | None = Field(None, description="your own preference pairs (prompt/chosen/rejected, "
                                    "or OpenAI preference JSONL), added to the mined ones")


DPO_LOSSES = ("sigmoid", "ipo", "robust", "hinge", "sigmoid+sft", "apo_zero")


class DPOSettings(Strict):
    loss_type: Literal[DPO_LOSSES] = Field(  # type: ignore[valid-type]
        "sigmoid+sft", description="sigmoid (DPO), ipo, robust (needs label_smoothing), hinge, "
        "sigmoid+sft (DPO plus an NLL term on chosen, weight sft_weight), apo_zero")
    beta: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="robust DPO: assumed share of flipped labels")
    sft_weight: float = Field(1.0, gt=0, description="sigmoid+sft: weight of the NLL term on chosen")
    learning_rate: float = Field(5e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: train for `epochs`")
    batch_size: int = Field(4, ge=1, description="pairs per optimizer step (per grad_accum)")

    @field_validator("max_steps")
    @classmethod
    def some_steps(cls, value: int) -> int:
        return steps_setting(value)
    pairs_per_forward: int | None = Field(
        None, ge=1, description="pairs in one forward pass; a batch runs as gradient-accumulated micro-batches "
        "of this many pairs (same update). null: half the batch, so DPO's activations stay at or below SFT's")
    grad_accum: int = Field(1, ge=1)
    precompute_reference: Literal["auto", "always", "never"] = Field(
        "auto", description="the pairs' reference log-probs computed once before training (TRL's "
        "precompute_ref_log_probs), instead of a reference forward each time a pair is seen. auto: when a pair "
        "is seen more than once (epochs, held-out evaluations), and always with full fine-tuning, which then "
        "needs no reference copy of the model")
    max_length: int = Field(1024, ge=16, description="prompt + completion, in tokens")
    truncation: Literal["drop", "error"] = Field(
        "drop", description="a pair longer than max_length is dropped with a warning (drop) or stops the run "
        "(error); a completion is never cut silently")
    rounds: int = Field(1, ge=1, description="iterative on-policy DPO: generate -> mine errors -> DPO, N times")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_layers: int | None = Field(None, ge=1, description="adapters on the last N decoder layers only")
    save_steps: int = Field(25, ge=1)
    gradient_checkpointing: bool = False
    heldout_fraction: float = Field(0.15, ge=0, lt=1, description="pairs kept out of training to watch "
                                    "reward accuracy, margin and the chosen log-prob")
    eval_steps: int = Field(4, ge=1, description="evaluate on the held-out pairs every N steps")
    collapse_guard: bool = Field(True, description="watch for a falling chosen log-prob on held-out pairs")
    collapse_threshold: float = Field(0.5, gt=0, description="nats per chosen token the held-out chosen "
                                      "log-prob may fall below its start before the guard fires")
    task_check_prompts: int = Field(64, ge=0, description="prompts DPO does not train on (at most) the model answers at "
                                    "every evaluation, scored by the task; the guard watches that accuracy and keeps "
                                    "the best weights by it. The held-out pairs' prompts first, then training "
                                    "examples without a training pair (0: off; needs at least 16)")
    task_drop_threshold: float = Field(0.05, gt=0, lt=1, description="a task check fails when the held-out task "
                                       "accuracy falls this much below its value before DPO, significantly "
                                       "(exact McNemar p < 0.05); it also fails when the model answers one label "
                                       "to 90% of the prompts though their references are more varied")
    task_check_patience: int = Field(2, ge=1, description="task checks in a row that must fail before the guard "
                                     "fires (a failing last check counts alone): DPO can dip and recover")
    stop_on_collapse: bool = Field(True, description="when the guard fires: stop and keep the best held-out "
                                   "weights, by task accuracy where it is checked, else by reward accuracy "
                                   "(otherwise only warn)")

    @model_validator(mode="after")
    def whole_micro_batches(self):
        if self.pairs_per_forward is not None and self.batch_size % self.pairs_per_forward:
            raise ValueError(f"pairs_per_forward ({self.pairs_per_forward}) must divide batch_size "
                             f"({self.batch_size}) so every micro-batch is the same size")
        return self

    def micro_batch(self) -> tuple[int, int]:
        """(pairs per forward, gradient accumulation steps) that make one optimizer step of batch_size pairs."""
        per_forward = self.pairs_per_forward or max(
            [d for d in range(1, self.batch_size // 2 + 1) if self.batch_size % d == 0], default=1)
        return per_forward, self.grad_accum * (self.batch_size // per_forward)

    @model_validator(mode="after")
    def robust_needs_smoothing(self):
        if self.loss_type == "robust" and self.label_smoothing == 0:
            raise ValueError("loss_type robust needs label_smoothing > 0 (e.g. 0.1); with 0 it is plain sigmoid DPO")
        return self


class JudgeSettings(Strict):
    """An OpenAI-compatible chat-completions endpoint that grades summaries (eval.grader: llm)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the endpoint's base URL (…/v1)")
    model: str = Field("judge", description="the model name the endpoint serves")
    api_key_env: str = Field("MEDTUNE_JUDGE_API_KEY",
                             description="NAME of the environment variable holding the API key (unset: no key)")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries on connection errors, 429 and 5xx")
    backoff_s: float = Field(1.0, ge=0, description="first back-off wait; doubles each retry")
    cache_dir: Path | None = Field(None, description="where answers are cached (default RUN/judge_cache)")


class EvalSettings(Strict):
    batch_size: int = Field(32, ge=1, description="sequences decoded together; their prompts are computed a "
                            "quarter at a time, and a last batch of a quarter or less joins the one before")
    backend: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="what generates the evaluation's answers: hf (transformers), vllm (vLLM's offline "
        "engine on a merged copy of the stage's model; one CUDA GPU), or auto (vllm where it can run, else hf). "
        "Pair mining and label_answers: choose always use transformers")
    label_answers: Literal["generate", "choose"] = Field(
        "generate", description="how the label tasks are answered. generate: free text, read by the task's parser "
        "(as the study of Savage et al.; an answer no label can be read from is wrong). choose: among the task's "
        "well-formed answers, the one greedy decoding prefers: the generated answer wherever that is well-formed, "
        "a label where it would not be; faster than generating")
    grader: Literal["builtin", "llm"] = Field("builtin", description="summary grader: built-in rubric or LLM judge")
    judge: JudgeSettings = JudgeSettings()


class StatsSettings(Strict):
    alpha: float = Field(0.05, gt=0, lt=1)
    bootstrap_samples: int = Field(2000, ge=100)
    min_effect: dict[str, float] = Field(
        default_factory=dict, description="metric name -> the smallest difference that matters, used both ways "
        "by the verdict (docs/statistics.md); unnamed metrics keep their default: 0.05 for accuracy, macro-F1 and "
        "fact coverage, 0.25 for the Likert grade")
    verdict_on: Literal["test", "shifted"] = Field(
        "test", description="the test split the verdict rests on: test (in-distribution) or shifted (written "
        "with other wording than train, where the task has one); the report shows both")

    @field_validator("min_effect")
    @classmethod
    def positive_effects(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v > 0}
        if bad:
            raise ValueError(f"min_effect must be above 0, got {bad}")
        return value


TRACKERS = ("tensorboard", "mlflow")


class TrackingSettings(Strict):
    """Experiment tracking (docs/tracking.md): SFT's and DPO's training curves, and each task's results,
    in TensorBoard event files or an MLflow store. Off by default; nothing is sent anywhere unless
    `mlflow_tracking_uri` names a server."""

    report_to: Literal["none", "tensorboard", "mlflow"] | list[Literal["tensorboard", "mlflow"]] = Field(
        "none", description="none, tensorboard, mlflow, or a list of them (each needs its package: "
        "pip install 'medtune[track]')")
    dir: Path | None = Field(None, description="where the local tracking files go: DIR/tensorboard/TASK/STAGE "
                             "and MLflow's file store DIR/mlruns (null: RUN/tracking)")
    mlflow_tracking_uri: str | None = Field(None, description="an MLflow tracking server or store to log to "
                                            "(http://..., sqlite:///...; null: the local file store DIR/mlruns)")
    experiment: str | None = Field(None, description="the MLflow experiment (null: medtune); runs of different "
                                   "run directories in one experiment are told apart by their medtune.run_dir tag")

    @field_validator("report_to", mode="before")
    @classmethod
    def known_trackers(cls, value):
        """One clear message for a wrong name, before pydantic tries each branch of the union."""
        value = "none" if value is False else value  # YAML's off
        names = value if isinstance(value, list) else [value]
        unknown = [n for n in names if n not in TRACKERS and not (n == "none" and not isinstance(value, list))]
        if unknown:
            raise ValueError(f"unknown tracker(s) {unknown}; report_to is none, {', '.join(TRACKERS)} or a list "
                             "of them")
        if isinstance(value, list) and (not value or len(set(value)) < len(value)):
            raise ValueError("give each tracker once, or none")
        return value

    @model_validator(mode="after")
    def mlflow_settings_need_mlflow(self):
        unused = [key for key in ("mlflow_tracking_uri", "experiment") if getattr(self, key) is not None]
        if unused and "mlflow" not in self.trackers():
            raise ValueError(f"{' and '.join(unused)} set, but report_to does not name mlflow")
        return self

    def trackers(self) -> list[str]:
        """The trackers named, in order; [] for none."""
        if isinstance(self.report_to, list):
            return list(self.report_to)
        return [] if self.report_to == "none" else [self.report_to]


class Config(Strict):
    model: str = Field("embedded", description="'embedded', a local HF model folder, or a hub id")
    run_dir: Path = Path("runs/demo")
    preset: Literal["quick", "standard", "full"] = "quick"
    tasks: list[str] = Field(default_factory=lambda: list(TASK_NAMES))
    seed: int = Field(0, ge=0, le=2 ** 32 - 1, description="one seed for data subsets, training and sampling "
                      "(numpy's range: 0 to 2^32 - 1)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the matmuls' number format. auto: bf16 on a GPU that has it and on a CPU that "
                            "multiplies bf16 in hardware (AVX512-BF16 or AMX), fp32 elsewhere. A CPU keeps fp32 "
                            "weights either way: it trains under autocast and generates with a bf16 copy")
    accel: Literal["auto", "off"] | list[str] = Field(
        "auto", description="speed work that reaches into the libraries (medtune/accel/, docs/performance.md). "
        "auto: each piece where it was measured to pay, with the library versions it was tested with; off: "
        "stock TRL, PEFT and transformers code only; or a list of piece names")
    data: DataSettings = DataSettings()
    sft: SFTSettings = SFTSettings()
    pairs: PairSettings = PairSettings()
    dpo: DPOSettings = DPOSettings()
    eval: EvalSettings = EvalSettings()
    stats: StatsSettings = StatsSettings()
    tracking: TrackingSettings = TrackingSettings()
    per_task: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="task id -> the settings that differ for that task, in the sections "
        "data, sft, pairs and dpo; e.g. {summarization: {sft: {max_steps: 10}}} (a long-text task needs fewer "
        "steps than a label task). A preset's per-task settings give way to any setting you give yourself")

    @field_validator("accel", mode="before")
    @classmethod
    def yaml_off(cls, value):
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value  # YAML's off

    @field_validator("accel")
    @classmethod
    def known_pieces(cls, value):
        if isinstance(value, list):
            from .accel import PIECES

            unknown = [p for p in value if p not in PIECES]
            if unknown:
                raise ValueError(f"unknown speed piece(s) {unknown}; known: {', '.join(PIECES)}")
        return value

    @field_validator("tasks")
    @classmethod
    def known_tasks(cls, value: list[str]) -> list[str]:
        """Bundled task ids and task spec files (read now, so a broken spec stops the run before anything)."""
        if not value:
            raise ValueError("no task chosen")
        ids = []
        for name in value:
            try:
                ids.append(get_task(name).name)
            except MedtuneError as exc:
                raise ValueError(str(exc)) from None
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"task id(s) {repeated} given more than once")
        return value

    @model_validator(mode="after")
    def per_task_settings(self):
        ids = {get_task(name).name for name in self.tasks} | set(TASK_NAMES)
        for name, settings in self.per_task.items():
            if name not in ids:
                raise ValueError(f"per_task names {name!r}, which is not a bundled task or one of this run's tasks")
            other = sorted(set(settings) - PER_TASK_SECTIONS) if isinstance(settings, dict) else settings
            if other:
                raise ValueError(f"per_task.{name} may set the sections {sorted(PER_TASK_SECTIONS)}, not {other}")
            try:
                self.for_task(name)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"per_task.{name}: {problems}") from None
        return self

    def for_task(self, name: str) -> "Config":
        """The settings one task runs with: these, with its ``per_task`` ones on top."""
        if not self.per_task.get(name):
            return self
        return Config.model_validate({**deep_merge(self.model_dump(), self.per_task[name]), "per_task": {}})

    @model_validator(mode="after")
    def data_for_chosen_tasks(self):
        ids = {get_task(name).name for name in self.tasks}
        unknown = sorted(set(self.data.tasks) - ids - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"data.tasks names {unknown}, which is not a bundled task or one of this run's tasks "
                             f"({', '.join(sorted(ids))})")
        return self


PER_TASK_SECTIONS = {"data", "sft", "pairs", "dpo"}

# Quick: the demo, sized so that SFT's gain over the base model is decided on each bundled task;
# standard: a CPU afternoon with the proportions of the seed study (its wall times on two CPU cores and the
# frontier behind the quick sizes: docs/performance.md); full: whole datasets and paper-like epochs (a GPU).
# Summarization's notes are long: fewer steps and items buy the same certainty there (its gain is large).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data": {"train_limit": 320, "test_limit": 80},
        # no LoRA dropout: a few dozen steps need no regularizer, and on a CPU it costs a large share of a step
        "sft": {"max_steps": 24, "batch_size": 8, "learning_rate": 1e-3, "max_length": 512, "lora_dropout": 0.0},
        "pairs": {"samples": 2, "temperature": 1.0, "max_prompts": 32},
        # adapters on the top 8 layers shorten DPO's backward pass, and with accel its reference pass, which
        # starts from the policy pass's hidden state below them (accel/shared_trunk.py)
        # no held-out task check: answering 64 prompts before and after a few steps would cost minutes
        "dpo": {"max_steps": 6, "batch_size": 8, "learning_rate": 2e-4, "max_length": 512, "eval_steps": 6,
                "lora_layers": 8, "task_check_prompts": 0},
        "stats": {"bootstrap_samples": 1000},
        # the same 24 steps as two epochs over 96 examples teach these two more than a pass over 320
        "per_task": {"summarization": {"data": {"test_limit": 40}, "sft": {"max_steps": 10, "batch_size": 4},
                                       "pairs": {"max_prompts": 8},
                                       "dpo": {"max_steps": 2, "batch_size": 4, "eval_steps": 2}},
                     "text_classification": {"data": {"train_limit": 96}},
                     "clinical_reasoning": {"data": {"train_limit": 96}}},
    },
    "standard": {
        "data": {"train_limit": 640, "test_limit": 200},
        "sft": {"max_steps": 48, "batch_size": 8, "learning_rate": 1e-3, "max_length": 512, "lora_dropout": 0.0},
        "pairs": {"samples": 4, "temperature": 1.0, "max_prompts": 96},
        "dpo": {"max_steps": 24, "batch_size": 8, "learning_rate": 2e-4, "max_length": 640, "eval_steps": 8,
                "lora_layers": 8, "task_check_prompts": 64},
        "stats": {"bootstrap_samples": 2000},
        "per_task": {"summarization": {"data": {"test_limit": 100}, "sft": {"max_steps": 16},
                                       "pairs": {"max_prompts": 24}, "dpo": {"max_steps": 8}}},
    },
    "full": {
        "data": {"train_limit": None, "test_limit": None},
        "sft": {"epochs": 3, "max_steps": -1, "learning_rate": 2e-4},
        "pairs": {"samples": 4, "max_prompts": None},
        # hundreds of DPO steps: a held-out evaluation (15% of the pairs, plus the task check) every 4
        # steps would cost more than the training itself
        "dpo": {"epochs": 2, "max_steps": -1, "learning_rate": 5e-5, "eval_steps": 25},
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


# keys earlier versions wrote into RUN/config.yaml, now set otherwise: read and left out, with a notice
RETIRED = {("sft", "share_prefix"): "the `accel` piece shared_prompt", ("dpo", "share_prompt"): "the `accel` pieces "
           "shared_prompt and shared_trunk"}


def without_retired(user: dict, source: str | None = None) -> dict:
    """The settings without retired keys; with a source (a user's file), a notice for each one left out."""
    for (section, key), now in RETIRED.items():
        if isinstance(user.get(section), dict) and key in user[section]:
            user = {**user, section: {k: v for k, v in user[section].items() if k != key}}
            if source:
                console.print(f"{source}: {section}.{key} is retired and left out; it is now {now} "
                              "(docs/performance.md)", highlight=False)
    return user


def preset_for(preset: dict, user: dict) -> dict:
    """The preset without the per-task settings the user's own settings replace: a size you set yourself
    (say data.test_limit) holds for every task, a preset's summarization too."""
    per_task = {}
    for task, sections in preset.get("per_task", {}).items():
        kept = {section: {k: v for k, v in keys.items() if k not in (user.get(section) or {})}
                for section, keys in sections.items()}
        per_task[task] = {section: keys for section, keys in kept.items() if keys}
    return {**preset, "per_task": per_task} if per_task else preset


def load_config(path: Path | None = None, overrides: dict | None = None, source: str | None = None) -> Config:
    """Preset defaults < YAML file < overrides (CLI flags), validated."""
    user = without_retired(read_yaml(path), str(path)) if path else {}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    merged_user = deep_merge(user, overrides)
    preset = merged_user.get("preset", "quick")
    if preset not in PRESETS:
        raise MedtuneError(f"{source or path or 'config'}: preset: {preset!r} is not one of {sorted(PRESETS)}")
    merged = deep_merge(preset_for(PRESETS[preset], merged_user), merged_user)
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
            got = err.get("input")
            lines.append(f"  - {key}: {msg}" + ("" if isinstance(got, dict) else f" (got {got!r})"))
    return "\n".join(lines)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
