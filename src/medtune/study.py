"""The study: base eval -> SFT -> pairs -> DPO -> SFT and DPO eval -> statistics -> report.

Every stage writes into the run directory and is skipped when it is committed
there, so an interrupted study (even killed with SIGKILL) resumes where it
stopped. Files are written atomically, and each step's commit marker is the
last file it writes (rundir.py).

    RUN/config.yaml
    RUN/<task>/base/{predictions.jsonl, predictions_shifted.jsonl, metrics.json}
    RUN/<task>/sft/{model/, train_log.json, predictions.jsonl, predictions_shifted.jsonl, metrics.json}
    RUN/<task>/pairs/{pairs.jsonl, stats.json}   (from a clinician review: the mined ones in pairs/before_review/)
    RUN/<task>/dpo/{model/, train_log.json, predictions.jsonl, predictions_shifted.jsonl, metrics.json}
    RUN/review/review.sqlite  the clinicians' judgments (`medtune review`, docs/review.md)
    RUN/results.json, RUN/report.md, RUN/report.html
    RUN/tracking/{tensorboard/, mlruns/}  with tracking.report_to (tracking.py, docs/tracking.md)

predictions_shifted.jsonl holds the answers to the shifted test split, where the task has one; metrics.json
holds both splits' metrics. A task's settings are the run's with its ``per_task`` ones on top.
"""

from __future__ import annotations

import gc
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
import yaml

from . import __version__
from .config import Config, dump_config, without_retired
from .data import task_data
from .distributed import on_main, world_size
from .errors import MedtuneError
from .evaluate.metrics import label_breakdown, stage_metrics
from .evaluate.predict import predict_each
from .evaluate.stats import add_findings, compare_stages, verdict
from .io import read_json, read_jsonl, write_json, write_jsonl, write_text
from .models import (Compute, check_lora_targets, load_model, load_quantized, load_tokenizer, quantization_config,
                     read_model_info, resolve_base, resolve_compute)
from .progress import console
from .review.stats import with_review
from .rundir import EVALUATED, MINED, STAGES, TRAINED, is_done, open_run
from .tasks import get_task
from .tasks.common import Task
from .tracking import check_installed, for_stage, log_results

RESULTS_VERSION = 4  # docs/results.md; 2: per_class/confusion, p_holm, effect sizes, multiple_testing; 3: findings,
# min_effect, the verdict's kind and split, the shifted split; 4: the clinician review per task, the verdict's
# decided_by and review_agrees


def stage_dir(cfg: Config, task: Task, stage: str) -> Path:
    return Path(cfg.run_dir) / task.name / stage


def model_ref(cfg: Config, task: Task, stage: str) -> str | Path:
    return cfg.model if stage == "base" else stage_dir(cfg, task, stage) / "model"


def is_trained(cfg: Config, task: Task, stage: str) -> bool:
    return is_done(stage_dir(cfg, task, stage), TRAINED)


@dataclass
class Held:
    """A model a stage left in memory for the next stage of this process, and the folder or name it stands for."""

    key: str
    loaded: tuple  # (model, tokenizer, info), as load_model gives them
    trained: bool  # as its training left it: made what loading its folder gives before it is handed on


@dataclass
class Run:
    """One process's study, handed from stage to stage: the configuration, where and how it computes (resolved
    once), the task data the doctor checked (once per task), and the model the last stage left in memory, so
    the next stage that wants that model need not load it again. One model at most is held, and it is let go
    before any other model loads."""

    cfg: Config
    compute: Compute
    data: dict[str, dict] = field(default_factory=dict)
    held: Held | None = None

    def load(self, ref: str | Path):
        """``load_model(ref)``, or the model the previous stage held for ``ref``; the caller owns it (a training
        stage changes it in place, so it is never held twice)."""
        held, self.held = self.held, None
        if held is not None and held.key == model_key(ref):
            model, tokenizer, info = held.loaded
            if held.trained:
                from .accel.handoff import as_loaded

                model = as_loaded(model)
            return model, tokenizer, info
        del held
        gc.collect()  # the model let go, before the next one loads
        return load_model(ref, self.compute.device, self.compute.weights)

    def hold(self, ref: str | Path, loaded: tuple, trained: bool = False) -> None:
        self.held = Held(model_key(ref), loaded, trained)

    def hand_on(self, folder: Path, trained, tokenizer, method: str) -> None:
        """The model a training stage saved in ``folder``, for the next stage, where the run uses the
        ``trained_handoff`` piece. Not for QLoRA (its saved stage loads with full-precision weights, not the
        4-bit ones it trained on), nor where the weights are held below fp32 (a GPU's bf16: loading the
        folder merges the adapters in fp32, ``load_model``)."""
        if self.compute.uses("trained_handoff") and method != "qlora" and self.compute.weights == torch.float32:
            self.hold(folder, (trained, tokenizer, read_model_info(folder)), trained=True)

    def release(self) -> None:
        self.held = None
        gc.collect()


def model_key(ref: str | Path) -> str:
    path = Path(ref)
    return str(path.resolve()) if path.exists() else str(ref)


def stage_data(run: Run, task: Task) -> dict:
    """The task's data, checked by the doctor once per run; recorded in RUN/<task>/data.json."""
    if task.name not in run.data:
        cfg = run.cfg.for_task(task.name)
        tokenizer = load_tokenizer(resolve_base(cfg.model))
        data = task_data(cfg, task, tokenizer, cfg.sft.max_length)
        for line in data["info"]["warnings"][:10]:
            console.print(f"[yellow]{line}[/]")
        on_main(write_json, Path(cfg.run_dir) / task.name / "data.json", data["info"])
        run.data[task.name] = data
    return run.data[task.name]


# ------------------------------------------------------------------ stages

def evaluate_stage(run: Run, task: Task, stage: str, force: bool = False,
                   model_path: str | Path | None = None) -> dict:
    """Evaluate a stage's model (or ``model_path``) on the test set; returns metrics."""
    cfg = run.cfg.for_task(task.name)
    out = stage_dir(cfg, task, stage)
    if is_done(out, EVALUATED) and not force:
        return read_json(out / EVALUATED)
    ref = model_path or model_ref(cfg, task, stage)
    if stage != "base" and model_path is None and not is_trained(cfg, task, stage):
        raise MedtuneError(f"{task.name}: the {stage} model has not been trained yet (run `medtune {stage}` first)")
    return evaluate_together(run, task, {stage: ref})[stage]


def evaluate_tuned(run: Run, task: Task) -> None:
    """The SFT and DPO models on the test set, the ones not evaluated yet. With the ``shared_trunk`` piece and
    DPO's adapters on the top layers only (``dpo.lora_layers``), both in one pass, the layers below DPO's
    adapters, which DPO left as SFT made them, computed once for both; otherwise one model at a time, so two
    are never held at once (QLoRA too: it is chosen to fit one model in memory)."""
    cfg = run.cfg.for_task(task.name)
    stages = [s for s in ("dpo", "sft") if not is_done(stage_dir(cfg, task, s), EVALUATED)]
    if (len(stages) == 2 and cfg.dpo.lora_layers and cfg.sft.method == "lora"
            and run.compute.uses("shared_trunk")):  # DPO's model first: its stage may have held it
        evaluate_together(run, task, {s: model_ref(cfg, task, s) for s in stages})
        return
    for stage in stages:
        evaluate_stage(run, task, stage)


def evaluate_together(run: Run, task: Task, refs: dict[str, str | Path]) -> dict[str, dict]:
    """Evaluate each stage's model (``refs``: stage -> model) on the same test items in one pass, the shifted
    split's with them where the task has one; writes each stage's predictions and metrics."""
    cfg = run.cfg.for_task(task.name)
    data = stage_data(run, task)
    splits = {"test": data["test"], "shifted": data["shifted"]}
    examples = [ex for rows in splits.values() for ex in rows]
    start = time.perf_counter()
    if eval_backend(run, task) == "vllm":
        all_rows = vllm_rows(run, task, refs, examples)
    else:
        loaded = [run.load(ref) for ref in refs.values()]  # the first may be the one a stage held
        tokenizer = loaded[0][1]
        all_rows = predict_each([model for model, _, _ in loaded], tokenizer, task, examples, run.compute,
                                cfg.eval.batch_size,
                                desc=f"{task.name}: eval {' + '.join(s for s in STAGES if s in refs)}",
                                label_answers=cfg.eval.label_answers)
        run.hold(list(refs.values())[-1], loaded[-1])
        del loaded
    elapsed = time.perf_counter() - start
    saved, n_test = {}, len(splits["test"])
    for (stage, ref), rows in zip(refs.items(), all_rows):
        together = {"evaluated_with": [s for s in refs if s != stage]} if len(refs) > 1 else {}
        answered = {"label_answers": cfg.eval.label_answers} if task.labels is not None else {}
        saved[stage] = on_main(write_evaluation, cfg, task, stage_dir(cfg, task, stage), examples, rows, n_test,
                               {"stage": stage, "model": str(ref)},
                               {"elapsed_s": elapsed, "precision": run.compute.precision,
                                "accel": sorted(run.compute.accel), **answered, **together})
    return saved


def eval_backend(run: Run, task: Task) -> str:
    """hf or vllm (evaluate/vllm_backend.py); choosing among a label task's answers needs transformers."""
    from .distributed import world_size
    from .evaluate.vllm_backend import resolve_backend

    cfg = run.cfg.for_task(task.name)
    if cfg.eval.label_answers == "choose" and task.labels is not None:
        return "hf"
    return resolve_backend(cfg.eval.backend, run.compute.device, world_size())


def vllm_rows(run: Run, task: Task, refs: dict[str, str | Path], examples: list[dict]) -> list[list[dict]]:
    """Each stage's scored answers from vLLM, one model at a time (nothing else held on the GPU)."""
    from .evaluate.predict import score_row
    from .evaluate.vllm_backend import vllm_answers

    cfg = run.cfg.for_task(task.name)
    run.release()
    tokenizer = load_tokenizer(resolve_base(cfg.model))
    prompts = [task.messages(ex) for ex in examples]
    out = []
    for stage, ref in refs.items():
        answers = vllm_answers(ref, tokenizer, prompts, task.max_new_tokens, stage_dir(cfg, task, stage) / "vllm_model",
                               cfg.seed)
        out.append([score_row(task, ex, answer) for ex, answer in zip(examples, answers)])
    return out


def write_evaluation(cfg: Config, task: Task, out: Path, examples: list[dict], rows: list[dict], n_test: int,
                     head: dict, tail: dict) -> dict:
    """One model's scored answers to both test splits (the first ``n_test`` rows are the test split's) as
    predictions.jsonl, predictions_shifted.jsonl and metrics.json in ``out``; ``head`` and ``tail`` go into
    metrics.json before and after the metrics. Returns metrics.json as written."""
    rows, grading = regrade_summaries(cfg, task, examples, rows)
    shifted = {}
    if len(rows) > n_test:
        write_jsonl(out / "predictions_shifted.jsonl", rows[n_test:])
        shifted = {"shifted": {"metrics": stage_metrics(task, rows[n_test:], cfg.stats.bootstrap_samples, cfg.seed),
                               **label_breakdown(task, rows[n_test:])}}
    rows = rows[:n_test]
    metrics = stage_metrics(task, rows, cfg.stats.bootstrap_samples, cfg.seed)
    write_jsonl(out / "predictions.jsonl", rows)
    write_json(out / EVALUATED, {**head, "metrics": metrics, **grading, **label_breakdown(task, rows), **tail,
                                 **shifted})
    return read_json(out / EVALUATED)


def regrade_summaries(cfg: Config, task: Task, examples: list[dict], rows: list[dict]) -> tuple[list[dict], dict]:
    """A graded task (summarization) with ``eval.grader: llm``: the LLM judge re-grades each row (built-in
    fields kept). Returns the rows and what metrics.json records about the grader ({} for other tasks)."""
    if not task.graded:
        return rows, {}
    if cfg.eval.grader != "llm":
        return rows, {"grader": "builtin"}
    from .evaluate.judge import Judge, regrade_rows

    judge = Judge.from_settings(cfg.eval.judge, Path(cfg.run_dir), rubric=task.rubric)
    rows = regrade_rows(judge, examples, rows, task.reference)
    return rows, {"grader": "llm", "judge": {"base_url": judge.base_url, "answered_by": sorted(judge.answered_by),
                                             "model": judge.model,
                                             "parse_failures": sum(r["judge_parse_failed"] for r in rows),
                                             "requests": judge.requests}}


def sft_stage(run: Run, task: Task, force: bool = False) -> dict:
    from .train.sft import train_sft

    cfg = run.cfg.for_task(task.name)
    out = stage_dir(cfg, task, "sft")
    if is_trained(cfg, task, "sft") and not force:
        return read_json(out / TRAINED)
    examples = stage_data(run, task)["train"]
    if cfg.sft.method == "qlora":
        run.release()
        model, tokenizer, _ = load_quantized(cfg.model, run.compute.device, out / "scratch_model", run.compute.dtype)
    else:
        model, tokenizer, _ = run.load(cfg.model)
    summary, trained = train_sft(model, tokenizer, cfg.model, task, examples, cfg.sft, out, run.compute, cfg.seed,
                                 tracking=for_stage(cfg, out))
    run.hand_on(out / "model", trained, tokenizer, cfg.sft.method)
    return summary


def round_dirs(cfg: Config, task: Task, k: int) -> tuple[Path, Path]:
    """Round k's pairs and DPO folders. Round 1 mines into ``pairs/``; the last round trains ``dpo/``."""
    pairs, dpo = stage_dir(cfg, task, "pairs"), stage_dir(cfg, task, "dpo")
    return (pairs if k == 1 else pairs / f"round_{k}"), (dpo if k == cfg.dpo.rounds else dpo / f"round_{k}")


def round_parent(cfg: Config, task: Task, k: int) -> Path:
    """The model round k starts from (and mines its pairs with): SFT, then the previous round's DPO."""
    return stage_dir(cfg, task, "sft") / "model" if k == 1 else round_dirs(cfg, task, k - 1)[1] / "model"


def pairs_stage(run: Run, task: Task, force: bool = False, round_k: int = 1) -> dict:
    from .train.pairs import mine_pairs, needs_model

    cfg = run.cfg.for_task(task.name)
    out = round_dirs(cfg, task, round_k)[0]
    if is_done(out, MINED) and not force:
        return read_json(out / MINED)
    parent = round_parent(cfg, task, round_k)
    if not is_done(parent.parent, TRAINED):
        raise MedtuneError(f"{task.name}: pairs are mined from the model's own errors; train {parent.parent.name} "
                           f"first (`medtune {'sft' if round_k == 1 else 'dpo'}`)")
    examples = stage_data(run, task)["train"]
    start = time.perf_counter()
    loaded = run.load(parent) if needs_model(cfg.pairs.strategy) else (None, None, None)
    model, tokenizer, _ = loaded
    pairs, stats = mine_pairs(model, tokenizer, task, examples, cfg.pairs, cfg.eval.batch_size, cfg.seed + round_k - 1,
                              run.compute)
    if model is not None:
        run.hold(parent, loaded)
    stats.update(round=round_k, mined_with=str(parent), elapsed_s=time.perf_counter() - start)
    on_main(write_pairs, out, pairs, stats)
    console.print(f"{task.name}: {stats['pairs']} pair(s) from {stats['prompts_tried']} prompt(s) "
                  f"({', '.join(f'{k}: {v}' for k, v in stats['pairs_per_source'].items()) or 'none'}); "
                  f"{stats['prompts_without_pair']} prompt(s) gave no pair")
    return stats


def review_pairs_stage(run: Run, task: Task, review_dir: Path) -> dict:
    """Round 1's pairs from the clinicians' judgments of ``review_dir``'s test answers, in place of the mined
    ones, which are kept in pairs/before_review/ (docs/review.md). The next DPO trains on test items: its
    metrics on this test set are no fair estimate."""
    from .review.pairs import pairs_from_judgments, read_answers
    from .review.stats import DB_NAME, run_judgments

    cfg = run.cfg.for_task(task.name)
    judgments = run_judgments(review_dir)
    if judgments is None:
        raise MedtuneError(f"{review_dir}: no clinician review to make pairs from (no {review_dir / DB_NAME}); "
                           f"run `medtune review {review_dir}` first")
    judged = [j for j in judgments if j["task"] == task.name]
    if not judged:
        raise MedtuneError(f"{review_dir}: the clinician review has no judgments of {task.name}")
    if not is_trained(cfg, task, "sft"):
        raise MedtuneError(f"{task.name}: DPO starts from the SFT model; train it first (`medtune sft`)")
    start = time.perf_counter()
    data = stage_data(run, task)
    examples = {ex["id"]: ex for ex in data["test"] + data["shifted"]}
    stages = sorted({s for j in judged for s in j["stages"]})
    pairs, found = pairs_from_judgments(task, judged, examples, read_answers(review_dir, task.name, stages))
    out = round_dirs(cfg, task, 1)[0]
    on_main(set_aside_mined, out)
    stats = {"strategy": "human", "from_review": str(review_dir), "trained_on_test_items": True, **found,
             "prompts_tried": 0, "samples_per_prompt": 0, "outputs": 0, "wrong_outputs": 0,
             "sft_error_rate_on_train": None, "pairs_per_source": {"human": len(pairs)} if pairs else {},
             "prompts_without_pair": found["judged_pairs"] - len(pairs), "round": 1,
             "elapsed_s": time.perf_counter() - start}
    on_main(write_pairs, out, pairs, stats)
    return stats


def set_aside_mined(out: Path) -> None:
    """Mined pairs that review pairs replace, copied to ``out``/before_review/ first; then the stage is
    un-committed, so that a kill before the new pairs are written leaves it undone, never half replaced."""
    if not is_done(out, MINED):
        return
    if not read_json(out / MINED).get("from_review"):
        aside = out / "before_review"
        aside.mkdir(parents=True, exist_ok=True)
        for name in ("pairs.jsonl", MINED):
            if (out / name).is_file():
                write_text(aside / name, (out / name).read_text(encoding="utf-8"))
    (out / MINED).unlink()


def write_pairs(out: Path, pairs: list[dict], stats: dict) -> None:
    write_jsonl(out / "pairs.jsonl", pairs)
    write_json(out / MINED, stats)  # commits the step: written last (rundir.py)


def dpo_stage(run: Run, task: Task, force: bool = False) -> dict:
    """DPO from the SFT model; with ``dpo.rounds`` N > 1, mine again from each round's model and repeat."""
    summary = {}
    for k in range(1, run.cfg.for_task(task.name).dpo.rounds + 1):
        if k > 1:
            pairs_stage(run, task, force, round_k=k)
        summary = dpo_round(run, task, force, k)
    return summary


def dpo_round(run: Run, task: Task, force: bool, k: int) -> dict:
    from .train.dpo import train_dpo

    cfg = run.cfg.for_task(task.name)
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
        run.release()
        model, tokenizer, info = load_quantized(parent, run.compute.device, out / "scratch_model", run.compute.dtype)
    else:
        model, tokenizer, info = run.load(parent)
    summary, trained = train_dpo(model, tokenizer, cfg.model, parent, info["kind"], task, pairs,
                                 cfg.dpo, out, run.compute, cfg.seed, examples=stage_data(run, task)["train"],
                                 tracking=for_stage(cfg, out))
    run.hand_on(out / "model", trained, tokenizer, info["kind"])
    return summary


def baselines_stage(run: Run, task: Task) -> dict:
    """Majority and TF-IDF baselines on the same test items, and on the shifted split's (seconds; no model)."""
    from .evaluate.baselines import all_baselines

    cfg = run.cfg.for_task(task.name)
    data = stage_data(run, task)

    def write() -> None:
        for split, name in (("test", "baselines.json"), ("shifted", "baselines_shifted.json")):
            path = Path(cfg.run_dir) / task.name / name
            if data[split] and not path.is_file():
                write_json(path, all_baselines(task, data["train"], data[split], cfg.seed))

    on_main(write)
    return read_json(Path(cfg.run_dir) / task.name / "baselines.json")


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
    stages, shifted_stages, rows = {}, {}, {"test": {}, "shifted": {}}
    for stage in STAGES:
        d = stage_dir(cfg, task, stage)
        if (d / "metrics.json").is_file():
            saved = read_json(d / "metrics.json")
            rows["test"][stage] = read_jsonl(d / "predictions.jsonl")
            stages[stage] = {"metrics": saved["metrics"], "model": saved["model"], "eval_s": saved.get("elapsed_s"),
                             "precision": saved.get("precision"), "label_answers": saved.get("label_answers"),
                             **label_breakdown(task, rows["test"][stage])}  # from the predictions: older runs get it too
            if "shifted" in saved:
                rows["shifted"][stage] = read_jsonl(d / "predictions_shifted.jsonl")
                shifted_stages[stage] = {"metrics": saved["shifted"]["metrics"],
                                         **label_breakdown(task, rows["shifted"][stage])}
        if (d / "train_log.json").is_file():
            log = read_json(d / "train_log.json")
            stages.setdefault(stage, {})["training"] = {k: v for k, v in log.items() if k != "log_history"}
    # each split is its own Holm family and has its own verdict; the config says which one the task's rests on
    judged = {split: judge_split(cfg, task, split_rows) for split, split_rows in rows.items()
              if split == "test" or split_rows}
    verdict_on = cfg.stats.verdict_on if cfg.stats.verdict_on in judged else "test"
    chosen = {**judged[verdict_on]["verdict"], "split": verdict_on}
    if verdict_on != cfg.stats.verdict_on:
        chosen["reason"] += " (Decided on the in-distribution test split: this task has no shifted split.)"
    out = {"description": task.description, "primary_metrics": applicable_primary(task, stages), "stages": stages,
           "comparisons": judged["test"]["comparisons"], "verdict": chosen,
           "multiple_testing": {"method": "holm", "alpha": cfg.stats.alpha,
                                "families": {"primary": [f"{c}/{m}" for c in judged["test"]["comparisons"]
                                                         for m in task.primary_metrics],
                                             "secondary": [f"{c}/{m.name}" for c in judged["test"]["comparisons"]
                                                           for m in task.metrics if m.name not in task.primary_metrics],
                                             "per_split": "the shifted split's comparisons form families of their own"}}}
    folder = Path(cfg.run_dir) / task.name
    if "shifted" in judged:
        out["shifted"] = {"stages": shifted_stages, **judged["shifted"]}
        if (folder / "baselines_shifted.json").is_file():
            out["shifted"]["baselines"] = read_json(folder / "baselines_shifted.json")
    if (folder / "baselines.json").is_file():
        out["baselines"] = read_json(folder / "baselines.json")
    pairs_stats = stage_dir(cfg, task, "pairs") / "stats.json"
    if pairs_stats.is_file():
        out["pairs"] = read_json(pairs_stats)
    review = task_review(cfg, task)
    if review is not None:
        out["review"] = review
    out["verdict"] = with_review(out["verdict"], review)  # the review decides only what the metrics left open
    return out


def task_review(cfg: Config, task: Task) -> dict | None:
    """The clinician review of this task's test answers (RUN/review/review.sqlite), summarised; None where the
    run has none."""
    from .review.stats import review_summary, run_judgments

    judgments = run_judgments(Path(cfg.run_dir))
    judged = [j for j in judgments or [] if j["task"] == task.name]
    if not judged:
        return None
    return review_summary(judged, cfg.stats.alpha, cfg.seed, cfg.stats.bootstrap_samples)[task.name]


def judge_split(cfg: Config, task: Task, rows: dict[str, list[dict]]) -> dict:
    """One test split's paired comparisons (with what each CI rules out) and the verdict they give."""
    comparisons = compare_stages(task, rows, cfg.stats.bootstrap_samples, cfg.seed)
    add_findings(task, comparisons, cfg.stats.alpha, cfg.stats.min_effect)
    return {"comparisons": comparisons, "verdict": verdict(task, comparisons, cfg.stats.alpha, cfg.stats.min_effect)}


def applicable_primary(task: Task, stages: dict) -> list[str]:
    """The primary metrics the data allows (a one-head triage file has one)."""
    present = {m for s in stages.values() for m in s.get("metrics", {})}
    return [m for m in task.primary_metrics if m in present] or task.primary_metrics


def write_results(cfg: Config, elapsed_s: float | None = None) -> dict:
    """results.json, report.md and report.html from the run directory. ``elapsed_s``: the study's wall time;
    a rebuild without it keeps the one recorded."""
    from .report import write_reports

    path = Path(cfg.run_dir) / "results.json"
    if elapsed_s is None and path.is_file():
        elapsed_s = read_json(path).get("elapsed_s")
    results = {
        "schema_version": RESULTS_VERSION,
        "medtune_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": cfg.model_dump(mode="json"),
        "versions": versions(),
        "tasks": {task.name: task_results(cfg, task) for task in map(get_task, cfg.tasks)},
        **({"elapsed_s": elapsed_s} if elapsed_s is not None else {}),
    }
    write_json(path, results)
    write_reports(Path(cfg.run_dir), results)  # report.md and report.html
    log_results(cfg, results, path)  # to TensorBoard or MLflow where tracking.report_to names them
    return results


# ------------------------------------------------------------------ the whole study

def check_run_dir(cfg: Config) -> None:
    """A run directory belongs to one configuration: refuse to mix stages made with another."""
    saved_path = Path(cfg.run_dir) / "config.yaml"
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        # retired keys were written by earlier versions; they change no finished stage
        saved = without_retired(saved) if isinstance(saved, dict) else {}
        current = cfg.model_dump(mode="json")
        # these do not change finished stages (precision and accel: within the number format's rounding)
        ignore = {"tasks", "run_dir", "device", "precision", "accel", "eval", "stats", "tracking"}
        diff = [k for k in current if k not in ignore and saved.get(k) != current[k]]
        # the stages' answers are compared item by item: all generated, or all chosen
        if (saved.get("eval") or {}).get("label_answers", "generate") != cfg.eval.label_answers:
            diff.append("eval.label_answers")
        if diff:
            raise MedtuneError(
                f"{saved_path}: this run directory was made with a different configuration "
                f"(differs in: {', '.join(diff)}). Use a new --run-dir, or --restart to start it over.")
    write_text(saved_path, dump_config(cfg))


def preflight(cfg: Config, compute: Compute, tasks: list[Task], training: bool = True) -> None:
    """What can be checked without a model, checked before any model loads or any file is written: the model
    folder, and for training the adapters' target modules, QLoRA's needs and the pair settings."""
    from .train.pairs import check_pair_settings

    from .distributed import world_size
    from .evaluate.vllm_backend import resolve_backend

    resolve_base(cfg.model)
    check_installed(cfg.tracking.trackers())
    resolve_backend(cfg.eval.backend, compute.device, world_size())  # vllm asked for where it cannot run
    if not training:
        return
    if cfg.sft.method == "qlora":
        quantization_config(compute.device, compute.dtype)
    check_lora_targets(cfg.model, cfg.sft.lora_target_modules)
    check_pair_settings(tasks, cfg.pairs)
    check_batch_split(cfg, tasks)


def check_batch_split(cfg: Config, tasks: list[Task]) -> None:
    """Under several processes every task's SFT and DPO steps must divide among them (train/common.py)."""
    from .train.common import split_batch

    for task in tasks:
        settings = cfg.for_task(task.name)
        split_batch("sft", settings.sft.batch_size, settings.sft.grad_accum, world_size())
        split_batch("dpo", *settings.dpo.micro_batch(), world_size())


def run_study(cfg: Config, restart: bool = False) -> dict:
    compute = resolve_compute(cfg.device, cfg.precision, cfg.accel)
    preflight(cfg, compute, [get_task(name) for name in cfg.tasks])
    with open_run(Path(cfg.run_dir), restart):
        on_main(check_run_dir, cfg)
        return study_in(Run(cfg, compute))


def study_in(run: Run) -> dict:
    """The study in its run directory, which this process holds."""
    cfg, compute = run.cfg, run.compute
    processes = f", {world_size()} processes" if world_size() > 1 else ""
    console.print(f"[bold]medtune study[/] on {len(cfg.tasks)} task(s), model {cfg.model}, device {compute.device} "
                  f"({compute.precision}, accel {', '.join(sorted(compute.accel)) or 'off'}{processes}), "
                  f"preset {cfg.preset} -> {cfg.run_dir}", highlight=False)
    started = time.perf_counter()
    for name in cfg.tasks:  # the doctor checks every task's data before anything is trained
        stage_data(run, get_task(name))
    for name in cfg.tasks:
        task = get_task(name)
        console.rule(f"[bold]{task.name}")
        baselines_stage(run, task)
        evaluate_stage(run, task, "base")
        sft_stage(run, task)
        pairs_stage(run, task)
        dpo_stage(run, task)
        evaluate_tuned(run, task)
    run.release()
    return on_main(write_results, cfg, elapsed_s=time.perf_counter() - started)
