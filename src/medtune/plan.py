"""A study's plan, counted before anything runs: per task and stage, the steps, sequences and tokens it will
compute, and about how long that takes on this machine (``medtune study --dry-run``).

The time is a model, not a measurement: tokens trained, prompt tokens read and decoding steps taken, each
times a cost per unit fitted on measured runs of the 2-core reference CPU (benchmarks/plan_check.py), scaled
by how fast this machine multiplies matrices (a half-second probe). On a GPU the costs are not calibrated;
the plan still counts the work.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from .config import Config
from .models import Compute

# seconds per unit on the reference CPU (2 cores, AVX512-BF16, bf16 matmuls at REFERENCE_GFLOPS)
REFERENCE_GFLOPS = 385.0
COST = {
    "train_token": 2.2e-3,  # SFT: one token through forward and backward (LoRA, the embedded model)
    "dpo_token": 1.7e-3,  # DPO: one token of prompt, chosen or rejected, policy and reference passes
    "prompt_token": 1.6e-4,  # a prompt token read before decoding (batched)
    "decode_step": 0.24,  # one decoding step of a batch (every weight is read, whatever the rows)
    "fixed": 20.0,  # per task: loading and saving models, the doctor, baselines, DPO's set-up
}


UNITS = ("train_token", "dpo_token", "prompt_token", "decode_step")


@dataclass
class Step:
    """One stage of one task in the plan: the units of work it charges (UNITS) and their seconds."""

    task: str
    stage: str
    work: str  # what is computed, in words
    units: dict[str, float]
    fixed: float = 0.0  # seconds no unit accounts for

    @property
    def seconds(self) -> float:
        return sum(COST[name] * count for name, count in self.units.items()) + self.fixed


def matmul_gflops(dtype: torch.dtype, seconds: float = 0.5, size: int = 2048) -> float:
    """This machine's matrix-multiply rate at the study's number format (a short probe; the size
    benchmarks/run_all.py measures the reference rate with)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * size ** 3 * done / (time.perf_counter() - start) / 1e9


def token_counts(tokenizer, task, examples: list[dict]) -> tuple[float, float, float]:
    """Mean prompt tokens (chat template included), mean and 95th-percentile reference-answer tokens."""
    from .generate import encode_prompts

    sample = examples[:200]
    prompts = [len(ids) for ids in encode_prompts(tokenizer, [task.messages(ex) for ex in sample])]
    answers = sorted(len(tokenizer(task.reference(ex), add_special_tokens=False)["input_ids"]) + 1 for ex in sample)
    return statistics.mean(prompts), statistics.mean(answers), answers[int(0.95 * (len(answers) - 1))]


def generation_units(items: int, prompt: float, steps: float, batch_size: int, times: int = 1) -> dict[str, float]:
    """Answering ``items`` prompts ``times`` over: their tokens read, then ``steps`` decoding steps per batch."""
    return {"prompt_token": times * items * prompt, "decode_step": times * math.ceil(items / batch_size) * steps}


def sft_sequences(cfg: Config, train: int) -> int:
    s = cfg.sft
    return s.max_steps * s.batch_size * s.grad_accum if s.max_steps > 0 else math.ceil(s.epochs * train)


def task_plan(cfg: Config, task, data: dict, tokenizer) -> list[Step]:
    prompt, answer, long_answer = token_counts(tokenizer, task, data["train"])
    test = len(data["test"]) + len(data["shifted"])
    batch = cfg.eval.batch_size
    # a trained model stops after the answer; the base model often talks on to max_new_tokens
    trained_steps = min(task.max_new_tokens, long_answer + 2)
    steps = [Step(task.name, "eval base", f"{test} items, up to {task.max_new_tokens} new tokens",
                  generation_units(test, prompt, task.max_new_tokens, batch))]
    seqs = sft_sequences(cfg, len(data["train"]))
    tokens = seqs * (prompt + answer)
    steps.append(Step(task.name, "SFT", f"{seqs} sequences, {tokens / 1e3:.0f}k tokens", {"train_token": tokens}))
    mined = min(cfg.pairs.max_prompts or len(data["train"]), len(data["train"])) * cfg.pairs.samples
    steps.append(Step(task.name, "pairs", f"{mined} sampled answers", generation_units(mined, prompt, trained_steps, batch)))
    pairs = cfg.dpo.max_steps * cfg.dpo.batch_size * cfg.dpo.grad_accum if cfg.dpo.max_steps > 0 else \
        math.ceil(cfg.dpo.epochs * mined / max(cfg.pairs.samples, 1))
    dpo_tokens = pairs * (prompt + 2 * answer) * cfg.dpo.rounds
    # the held-out task check answers its prompts before DPO and at every evaluation
    checks = (pairs // max(cfg.dpo.batch_size, 1) // cfg.dpo.eval_steps + 1) * cfg.dpo.rounds \
        if cfg.dpo.task_check_prompts else 0
    steps.append(Step(task.name, "DPO", f"{pairs} pairs x {cfg.dpo.rounds} round(s), {dpo_tokens / 1e3:.0f}k tokens"
                      + (f", {checks} task checks of {cfg.dpo.task_check_prompts} prompts" if checks else ""),
                      {"dpo_token": dpo_tokens,
                       **generation_units(cfg.dpo.task_check_prompts, prompt, trained_steps, batch, checks)}))
    steps.append(Step(task.name, "eval SFT + DPO", f"{test} items x 2 models",
                      generation_units(test, prompt, trained_steps, batch, 2)))
    steps.append(Step(task.name, "loads, checks", "models loaded and saved, data checked, DPO set up", {},
                      COST["fixed"]))
    return steps


def plan_study(cfg: Config, compute: Compute, tasks: list, data: dict[str, dict], tokenizer) -> tuple[list[Step], dict]:
    """Every task's steps, their seconds scaled to this machine, and what the scaling rests on."""
    rate = matmul_gflops(compute.dtype if compute.device == "cpu" else torch.float32)
    scale = REFERENCE_GFLOPS / rate if compute.device == "cpu" else 1.0
    steps = [Step(s.task, s.stage, s.work, {name: count * scale for name, count in s.units.items()}, s.fixed * scale)
             for task in tasks for s in task_plan(cfg.for_task(task.name), task, data[task.name], tokenizer)]
    return steps, {"gflops": rate, "scale": scale, "calibrated": compute.device == "cpu"}
