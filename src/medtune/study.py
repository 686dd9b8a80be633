"""The study: base eval -> SFT -> pairs -> DPO -> SFT and DPO eval -> statistics -> report.

Every stage writes into the run directory and is skipped when it is committed
there, so an interrupted study (even killed with SIGKILL) resumes where it
stopped. Files are written atomically, and each step's commit marker is the
last file it writes (rundir.py).

    RUN/config.yaml
    RUN/<task>/base/{predictions.jsonl, metrics.json}
    RUN/<task>/sft/{model/, train_log.json, predictions.jsonl, metrics.json}
    RUN/<task>/pairs/{pairs.jsonl, stats.json}
    RUN/<task>/dpo/{model/, train_log.json, predictions.jsonl, metrics.json}
    RUN/results.json, RUN/report.md, RUN/report.html
"""

from __future__ import annotations

import gc
import platform
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch
import yaml

from . import __version__
from .config import Config, dump_config
from .data import task_data
from .errors import MedtuneError
from .evaluate.metrics import label_breakdown, stage_metrics
from .evaluate.predict import predict_each
from .evaluate.stats import compare_stages, verdict
from .io import read_json, read_jsonl, write_json, write_jsonl, write_text
from .models import (MODEL_INFO, as_loaded, check_lora_targets, dtype_for, load_model, load_quantized, load_tokenizer,
                     quantization_config, precision_name, read_model_info, resolve_base, resolve_compute)
from .progress import console
from .rundir import EVALUATED, MINED, STAGES, TRAINED, is_done, open_run
from .tasks import get_task
from .tasks.common import Task

RESULTS_VERSION = 2  # docs/results.md; 2: per_class/confusion, p_holm, effect sizes, multiple_testing


def stage_dir(cfg: Config, task: Task, stage: str) -> Path:
    return Path(cfg.run_dir) / task.name / stage


def model_ref(cfg: Config, task: Task, stage: str) -> str | Path:
    return cfg.model if stage == "base" else stage_dir(cfg, task, stage) / "model"


def is_trained(cfg: Config, task: Task, stage: str) -> bool:
    return is_done(stage_dir(cfg, task, stage), TRAINED)


def free(*objects) -> None:
    del objects
    gc.collect()


# The model a stage leaves for the next stage of this process: the model it trained (as loading it from
# its folder would give it), or the one it only read (evaluation, pair mining). Each task loaded a model
# six times, each load of a stage merging its adapters again (2-3 s a load of the embedded model on 2 CPU
# cores, about 1 s of it the merge; docs/performance.md); now only the base model is loaded.
# One model at most is held, and it is dropped before any other model loads: peak memory is unchanged.
_held: dict = {}


def held_key(ref: str | Path) -> str:
    path = Path(ref)
    return str(path.resolve()) if path.exists() else str(ref)


def load_stage_model(ref: str | Path, device: str):
    """``load_model(ref, device)``, or the model the previous stage held for ``ref``; the caller owns it
    (a training stage changes it in place, so it is never held twice)."""
    key = held_key(ref)
    if _held.get("key") == key:
        model, tokenizer, info = _held.pop("loaded")
        trained = _held.pop("trained")
        _held.clear()
        return (as_loaded(model) if trained else model), tokenizer, info
    release_held()
    return load_model(ref, device)


def hold(ref: str | Path, loaded: tuple, trained: bool = False) -> None:
    """Keep a model for the next stage: one a stage only read (evaluation, pair mining), or one it trained
    (``trained``: made what loading ``ref`` gives when a stage asks for it, so a lone `medtune sft` does
    not merge adapters for nothing)."""
    release_held()
    _held.update(key=held_key(ref), loaded=loaded, trained=trained)


def hand_on(folder: Path, trained, tokenizer, method: str) -> None:
    """Hold the model a training stage saved in ``folder`` for the next stage. Not for QLoRA: its saved
    stage loads with full-precision weights, not the 4-bit ones it trained on. Nor where the device holds
    weights below fp32 (a GPU's bf16): merged in memory, the adapters would be added to those; loading the
    folder merges them in fp32 (``load_model``)."""
    device = next(trained.parameters()).device.type
    if method != "qlora" and dtype_for(device) == torch.float32:
        hold(folder, (trained, tokenizer, read_json(folder / MODEL_INFO)), trained=True)


def release_held() -> None:
    _held.clear()
    gc.collect()


_checked: dict[tuple[str, str], dict] = {}


def stage_data(cfg: Config, task: Task) -> dict:
    """The task's data, checked by the doctor once per process; recorded in RUN/<task>/data.json."""
    key = (str(cfg.run_dir), task.name)
    if key not in _checked:
        tokenizer = load_tokenizer(resolve_base(cfg.model))
        data = task_data(cfg, task, tokenizer, cfg.sft.max_length)
        for line in data["info"]["warnings"][:10]:
            console.print(f"[yellow]{line}[/]")
        write_json(Path(cfg.run_dir) / task.name / "data.json", data["info"])
        _checked[key] = data
    return _checked[key]


# ------------------------------------------------------------------ stages

def evaluate_stage(cfg: Config, task: Task, stage: str, device: str, force: bool = False,
                   model_path: str | Path | None = None) -> dict:
    """Evaluate a stage's model (or ``model_path``) on the test set; returns metrics."""
    out = stage_dir(cfg, task, stage)
    if is_done(out, EVALUATED) and not force:
        return read_json(out / EVALUATED)
    ref = model_path or model_ref(cfg, task, stage)
    if stage != "base" and model_path is None and not is_trained(cfg, task, stage):
        raise MedtuneError(f"{task.name}: the {stage} model has not been trained yet (run `medtune {stage}` first)")
    return evaluate_together(cfg, task, {stage: ref}, device)[stage]


def evaluate_tuned(cfg: Config, task: Task, device: str) -> None:
    """The SFT and DPO models on the test set, the ones not evaluated yet. With DPO's adapters on the top
    layers only (``dpo.lora_layers``: the quick preset's 8 of 30), the prompts' layers below them, which DPO
    left as SFT made them, run once for both; otherwise one model at a time, so two are never held at once
    (QLoRA too: it is chosen to fit one model in memory)."""
    stages = [s for s in ("dpo", "sft") if not is_done(stage_dir(cfg, task, s), EVALUATED)]
    if len(stages) == 2 and cfg.dpo.lora_layers and cfg.sft.method == "lora":  # DPO's model first: its stage held it
        evaluate_together(cfg, task, {s: model_ref(cfg, task, s) for s in stages}, device)
        return
    for stage in stages:
        evaluate_stage(cfg, task, stage, device)


def evaluate_together(cfg: Config, task: Task, refs: dict[str, str | Path], device: str) -> dict[str, dict]:
    """Evaluate each stage's model (``refs``: stage -> model) on the same test items in one pass, the
    layers they hold alike computed once; writes each stage's predictions and metrics."""
    examples = stage_data(cfg, task)["test"]
    start = time.perf_counter()
    loaded = [load_stage_model(ref, device) for ref in refs.values()]  # the first may be the one a stage held
    tokenizer = loaded[0][1]
    all_rows = predict_each([model for model, _, _ in loaded], tokenizer, task, examples, cfg.eval.batch_size,
                            desc=f"{task.name}: eval {' + '.join(s for s in STAGES if s in refs)}",
                            label_answers=cfg.eval.label_answers)
    hold(list(refs.values())[-1], loaded[-1])
    elapsed = time.perf_counter() - start
    saved = {}
    for (stage, ref), rows in zip(refs.items(), all_rows):
        out = stage_dir(cfg, task, stage)
        rows, grading = regrade_summaries(cfg, task, examples, rows)
        metrics = stage_metrics(task, rows, cfg.stats.bootstrap_samples, cfg.seed)
        together = {"evaluated_with": [s for s in refs if s != stage]} if len(refs) > 1 else {}
        answered = {"label_answers": cfg.eval.label_answers} if task.labels is not None else {}
        write_jsonl(out / "predictions.jsonl", rows)
        write_json(out / "metrics.json", {"stage": stage, "model": str(ref), "metrics": metrics, **grading,
                                          **label_breakdown(task, rows), "elapsed_s": elapsed,
                                          "precision": precision_name(device), **answered, **together})
        saved[stage] = read_json(out / "metrics.json")
    return saved


def regrade_summaries(cfg: Config, task: Task, examples: list[dict], rows: list[dict]) -> tuple[list[dict], dict]:
    """Summarization with ``eval.grader: llm``: the LLM judge re-grades each row (built-in fields kept).
    Returns the rows and what metrics.json records about the grader ({} for other tasks)."""
    if task.name != "summarization":
        return rows, {}
    if cfg.eval.grader != "llm":
        return rows, {"grader": "builtin"}
    from .evaluate.judge import Judge, regrade_rows

    judge = Judge.from_settings(cfg.eval.judge, Path(cfg.run_dir))
    rows = regrade_rows(judge, examples, rows)
    return rows, {"grader": "llm", "judge": {"base_url": judge.base_url, "answered_by": sorted(judge.answered_by),
                                             "model": judge.model,
                                             "parse_failures": sum(r["judge_parse_failed"] for r in rows),
                                             "requests": judge.requests}}


def sft_stage(cfg: Config, task: Task, device: str, force: bool = False) -> dict:
    from .train.sft import train_sft

    out = stage_dir(cfg, task, "sft")
    if is_trained(cfg, task, "sft") and not force:
        return read_json(out / TRAINED)
    examples = stage_data(cfg, task)["train"]
    if cfg.sft.method == "qlora":
        release_held()
        model, tokenizer, _ = load_quantized(cfg.model, device, out / "scratch_model")
    else:
        model, tokenizer, _ = load_stage_model(cfg.model, device)
    summary, trained = train_sft(model, tokenizer, cfg.model, task, examples, cfg.sft, out, device, cfg.seed)
    hand_on(out / "model", trained, tokenizer, cfg.sft.method)
    free(model, trained)
    return summary


def round_dirs(cfg: Config, task: Task, k: int) -> tuple[Path, Path]:
    """Round k's pairs and DPO folders. Round 1 mines into ``pairs/``; the last round trains ``dpo/``."""
    pairs, dpo = stage_dir(cfg, task, "pairs"), stage_dir(cfg, task, "dpo")
    return (pairs if k == 1 else pairs / f"round_{k}"), (dpo if k == cfg.dpo.rounds else dpo / f"round_{k}")


def round_parent(cfg: Config, task: Task, k: int) -> Path:
    """The model round k starts from (and mines its pairs with): SFT, then the previous round's DPO."""
    return stage_dir(cfg, task, "sft") / "model" if k == 1 else round_dirs(cfg, task, k - 1)[1] / "model"


def pairs_stage(cfg: Config, task: Task, device: str, force: bool = False, round_k: int = 1) -> dict:
    from .train.pairs import mine_pairs, needs_model

    out = round_dirs(cfg, task, round_k)[0]
    if is_done(out, MINED) and not force:
        return read_json(out / MINED)
    parent = round_parent(cfg, task, round_k)
    if not is_done(parent.parent, TRAINED):
        raise MedtuneError(f"{task.name}: pairs are mined from the model's own errors; train {parent.parent.name} "
                           f"first (`medtune {'sft' if round_k == 1 else 'dpo'}`)")
    examples = stage_data(cfg, task)["train"]
    start = time.perf_counter()
    model, tokenizer, _ = loaded = (load_stage_model(parent, device) if needs_model(cfg.pairs.strategy)
                                    else (None, None, None))
    pairs, stats = mine_pairs(model, tokenizer, task, examples, cfg.pairs, cfg.eval.batch_size, cfg.seed + round_k - 1)
    if model is not None:
        hold(parent, loaded)
    stats.update(round=round_k, mined_with=str(parent), elapsed_s=time.perf_counter() - start)
    write_jsonl(out / "pairs.jsonl", pairs)
    write_json(out / "stats.json", stats)
    console.print(f"{task.name}: {stats['pairs']} pair(s) from {stats['prompts_tried']} prompt(s) "
                  f"({', '.join(f'{k}: {v}' for k, v in stats['pairs_per_source'].items()) or 'none'}); "
                  f"{stats['prompts_without_pair']} prompt(s) gave no pair")
    return stats


def dpo_stage(cfg: Config, task: Task, device: str, force: bool = False) -> dict:
    """DPO from the SFT model; with ``dpo.rounds`` N > 1, mine again from each round's model and repeat."""
    summary = {}
    for k in range(1, cfg.dpo.rounds + 1):
        if k > 1:
            pairs_stage(cfg, task, device, force, round_k=k)
        summary = dpo_round(cfg, task, device, force, k)
    return summary


def dpo_round(cfg: Config, task: Task, device: str, force: bool, k: int) -> dict:
    from .train.dpo import train_dpo

    pairs_dir, out = round_dirs(cfg, task, k)
    if is_done(out, TRAINED) and not force:
        return read_json(out / TRAINED)
    if not is_done(pairs_dir, MINED):
        raise MedtuneError(f"{task.name}: no preference pairs yet (run `medtune pairs` first)")
    pairs_file = pairs_dir / "pairs.jsonl"
    pairs = checked_pairs(cfg, task, pairs_file)
    if not pairs:
        raise MedtuneError(f"{task.name}: pair mining produced no pairs ({pairs_file}); DPO has nothing to learn from. "
                           "Sample more outputs (pairs.samples), raise pairs.temperature, or add pairs.max_prompts.")
    parent = round_parent(cfg, task, k)
    if read_model_info(parent)["kind"] == "qlora":  # DPO trains as SFT did: adapters on 4-bit weights
        release_held()
        model, tokenizer, info = load_quantized(parent, device, out / "scratch_model")
    else:
        model, tokenizer, info = load_stage_model(parent, device)
    summary, trained = train_dpo(model, tokenizer, cfg.model, parent, info["kind"], task, pairs,
                                 cfg.dpo, out, device, cfg.seed, examples=stage_data(cfg, task)["train"])
    hand_on(out / "model", trained, tokenizer, info["kind"])
    free(model, trained)
    return summary


def baselines_stage(cfg: Config, task: Task) -> dict:
    """Majority and TF-IDF baselines on the same test items (seconds; no model)."""
    from .evaluate.baselines import all_baselines

    path = Path(cfg.run_dir) / task.name / "baselines.json"
    if not path.is_file():
        data = stage_data(cfg, task)
        write_json(path, all_baselines(task, data["train"], data["test"], cfg.seed))
    return read_json(path)


def checked_pairs(cfg: Config, task: Task, pairs_file: Path) -> list[dict]:
    """Pairs as DPO will see them, after the doctor's checks (truncation collapse included)."""
    from .data import raise_on_problems
    from .data.doctor import check_pairs_file

    tokenizer = load_tokenizer(resolve_base(cfg.model))
    diag = check_pairs_file(pairs_file, tokenizer=tokenizer, max_length=cfg.dpo.max_length,
                            system_prompt=task.system_prompt, mined=True)
    raise_on_problems([diag], cfg.data.strict, stopped="DPO has not started")
    for line in diag.lines()[:10]:
        console.print(f"[yellow]{line}[/]")
    return [p for p in diag.records if p["chosen"] != p["rejected"]]


# ------------------------------------------------------------------ results

def versions() -> dict:
    out = {"python": platform.python_version(), "medtune": __version__}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "scikit-learn", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def task_results(cfg: Config, task: Task) -> dict:
    stages, rows = {}, {}
    for stage in STAGES:
        d = stage_dir(cfg, task, stage)
        if (d / "metrics.json").is_file():
            saved = read_json(d / "metrics.json")
            rows[stage] = read_jsonl(d / "predictions.jsonl")
            stages[stage] = {"metrics": saved["metrics"], "model": saved["model"], "eval_s": saved.get("elapsed_s"),
                             "precision": saved.get("precision"), "label_answers": saved.get("label_answers"),
                             **label_breakdown(task, rows[stage])}  # from the predictions: older runs get it too
        if (d / "train_log.json").is_file():
            log = read_json(d / "train_log.json")
            stages.setdefault(stage, {})["training"] = {k: v for k, v in log.items() if k != "log_history"}
    comparisons = compare_stages(task, rows, cfg.stats.bootstrap_samples, cfg.seed)
    out = {"description": task.description, "primary_metrics": applicable_primary(task, stages), "stages": stages,
           "comparisons": comparisons, "verdict": verdict(task, comparisons, cfg.stats.alpha),
           "multiple_testing": {"method": "holm", "alpha": cfg.stats.alpha,
                                "families": {"primary": [f"{c}/{m}" for c in comparisons for m in task.primary_metrics],
                                             "secondary": [f"{c}/{m.name}" for c in comparisons for m in task.metrics
                                                           if m.name not in task.primary_metrics]}}}
    baselines = Path(cfg.run_dir) / task.name / "baselines.json"
    if baselines.is_file():
        out["baselines"] = read_json(baselines)
    pairs_stats = stage_dir(cfg, task, "pairs") / "stats.json"
    if pairs_stats.is_file():
        out["pairs"] = read_json(pairs_stats)
    return out


def applicable_primary(task: Task, stages: dict) -> list[str]:
    """The primary metrics the data allows (a one-head triage file has one)."""
    present = {m for s in stages.values() for m in s.get("metrics", {})}
    return [m for m in task.primary_metrics if m in present] or task.primary_metrics


def write_results(cfg: Config) -> dict:
    from .report import write_reports

    results = {
        "schema_version": RESULTS_VERSION,
        "medtune_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": cfg.model_dump(mode="json"),
        "versions": versions(),
        "tasks": {name: task_results(cfg, get_task(name)) for name in cfg.tasks},
    }
    write_json(Path(cfg.run_dir) / "results.json", results)
    write_reports(Path(cfg.run_dir), results)  # report.md and report.html
    return results


# ------------------------------------------------------------------ the whole study

def check_run_dir(cfg: Config) -> None:
    """A run directory belongs to one configuration: refuse to mix stages made with another."""
    saved_path = Path(cfg.run_dir) / "config.yaml"
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
        current = cfg.model_dump(mode="json")
        ignore = {"tasks", "run_dir", "device", "precision", "eval", "stats"}  # these do not change finished stages
        diff = [k for k in current if k not in ignore and saved.get(k) != current[k]]
        # the stages' answers are compared item by item: all generated, or all chosen
        if (saved.get("eval") or {}).get("label_answers", "generate") != cfg.eval.label_answers:
            diff.append("eval.label_answers")
        if diff:
            raise MedtuneError(
                f"{saved_path}: this run directory was made with a different configuration "
                f"(differs in: {', '.join(diff)}). Use a new --run-dir, or --restart to start it over.")
    write_text(saved_path, dump_config(cfg))


@contextmanager
def imports_frozen():
    """The garbage collector skips the objects that exist now, for the duration of the block.

    Importing torch, transformers and TRL leaves about 560,000 long-lived objects, and every full
    collection walks them all: 0.27 s on 2 CPU cores. A study collects about 12 times per task to free
    its models (and Python collects on its own as it allocates), so that was seconds per task spent
    re-checking imports (docs/performance.md). Models loaded inside the block are still collected."""
    from .train import dpo, pairs, sft, shared_prompt  # noqa: F401 -- the training stack is long-lived too

    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def preflight(cfg: Config, device: str, tasks: list[Task], training: bool = True) -> None:
    """What can be checked without a model, checked before any model loads or any file is written: the model
    folder, and for training the adapters' target modules, QLoRA's needs and the pair settings."""
    from .train.pairs import check_pair_settings

    resolve_base(cfg.model)
    if not training:
        return
    if cfg.sft.method == "qlora":
        quantization_config(device)
    check_lora_targets(cfg.model, cfg.sft.lora_target_modules)
    check_pair_settings(tasks, cfg.pairs)


def run_study(cfg: Config, restart: bool = False) -> dict:
    device = resolve_compute(cfg.device, cfg.precision)
    preflight(cfg, device, [get_task(name) for name in cfg.tasks])
    with open_run(Path(cfg.run_dir), restart):
        check_run_dir(cfg)
        return study_in(cfg, device)


def study_in(cfg: Config, device: str) -> dict:
    """The study in its run directory, which this process holds."""
    run_dir = Path(cfg.run_dir)
    console.print(f"[bold]medtune study[/] on {len(cfg.tasks)} task(s), model {cfg.model}, device {device} "
                  f"({precision_name(device)}), "
                  f"preset {cfg.preset} -> {run_dir}")
    started = time.perf_counter()
    with imports_frozen():
        for name in cfg.tasks:  # the doctor checks every task's data before anything is trained
            stage_data(cfg, get_task(name))
        for name in cfg.tasks:
            task = get_task(name)
            console.rule(f"[bold]{name}")
            baselines_stage(cfg, task)
            evaluate_stage(cfg, task, "base", device)
            sft_stage(cfg, task, device)
            pairs_stage(cfg, task, device)
            dpo_stage(cfg, task, device)
            evaluate_tuned(cfg, task, device)
        release_held()
        results = write_results(cfg)
    results["elapsed_s"] = time.perf_counter() - started
    return results
