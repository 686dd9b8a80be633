"""Direct Preference Optimization with TRL's DPOTrainer, starting from the SFT model.

LoRA (default): the SFT model is merged, a fresh adapter is trained on top, and
TRL uses the same network with the adapter disabled as the reference, so the
reference is exactly the SFT model and no second copy sits in memory. Full
fine-tuning: every pair's reference log-probs are computed with the SFT model
before training, so no reference copy is kept.

Where a pair would be scored twice or more (epochs, held-out evaluations), its
reference log-probs are computed once before training (``precompute_reference``).

A share of the pairs is held out. Every ``eval_steps`` steps TRL's evaluation
reports reward accuracy, margin and the chosen/rejected log-probs on them; the
collapse guard watches the chosen log-prob (DPO can push chosen *and* rejected
down together, which degrades the model while the loss still improves).
"""

from __future__ import annotations

import copy
import math
import random
import shutil
from collections import Counter
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from safetensors.torch import load_file, save_file
from transformers import PrinterCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..errors import MedtuneError
from ..evaluate.metrics import head_keys
from ..evaluate.predict import predict
from ..evaluate.stats import mcnemar_exact
from ..distributed import on_main, world_size
from ..io import read_json, write_json
from ..models import lora_config, save_model_info
from ..progress import console
from ..tasks.common import Task
from ..tracking import tracked
from .common import (RichProgress, batch_args, clean_checkpoints, close_tensorboard, common_args, resume_point,
                     save_trained, sped_up)


def loss_args(settings) -> dict:
    """medtune's loss names -> DPOConfig arguments (TRL computes every loss)."""
    if settings.loss_type == "sigmoid+sft":
        return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.sft_weight]}
    args = {"loss_type": [settings.loss_type]}
    if settings.loss_type == "robust":
        args["label_smoothing"] = settings.label_smoothing
    return args


def dpo_rows(task: Task, pairs: list[dict]) -> list[dict]:
    """TRL's conversational preference format, with the task's system prompt."""
    return [
        {"prompt": [{"role": "system", "content": task.system_prompt}, {"role": "user", "content": p["prompt"]}],
         "chosen": [{"role": "assistant", "content": p["chosen"]}],
         "rejected": [{"role": "assistant", "content": p["rejected"]}]}
        for p in pairs
    ]


def pair_lengths(tokenizer, row: dict) -> tuple[int, int, int]:
    """Token counts of (prompt, prompt+chosen, prompt+rejected) after the chat template."""
    def count(messages, generation_prompt=False):
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                 add_generation_prompt=generation_prompt)["input_ids"])
    return (count(row["prompt"], True), count(row["prompt"] + row["chosen"]), count(row["prompt"] + row["rejected"]))


def fit_pairs(tokenizer, task: Task, pairs: list[dict], max_length: int, mode: str) -> tuple[list[dict], dict, dict]:
    """Keep the pairs that fit in ``max_length`` whole; returns (kept, statistics, chosen tokens per pair id).

    TRL's own truncation cuts the end of the sequence, i.e. the completions, and
    can make chosen and rejected identical (the failure the seed study hit on long
    summaries). medtune never trains on a cut completion: a pair that does not fit
    is dropped with a warning, or stops the run when ``truncation: error``.
    """
    kept, too_long, chosen_tokens = [], [], {}
    for pair, row in zip(pairs, dpo_rows(task, pairs)):
        prompt_len, chosen_len, rejected_len = pair_lengths(tokenizer, row)
        if max(chosen_len, rejected_len) > max_length:
            too_long.append(pair["id"])
        else:
            kept.append(pair)
            chosen_tokens[pair["id"]] = chosen_len - prompt_len
    if too_long:
        message = (f"{task.name}: {len(too_long)} of {len(pairs)} preference pair(s) are longer than "
                   f"dpo.max_length={max_length} tokens (e.g. {', '.join(too_long[:3])})")
        if mode == "error":
            raise MedtuneError(message + "; raise dpo.max_length or set dpo.truncation: drop")
        console.print(f"[yellow]{message}; they are left out rather than cut (dpo.truncation: drop).[/]")
    stats = {"pairs_in": len(pairs), "dropped_too_long": len(too_long),
             "mean_chosen_tokens": mean(chosen_tokens.values())}
    return kept, stats, chosen_tokens


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def split_heldout(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole prompts (all pairs of one example go to the same side)."""
    if fraction <= 0:
        return pairs, []
    groups: dict[str, list[dict]] = {}
    for p in pairs:
        groups.setdefault(p.get("example_id", p["id"]), []).append(p)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_out = min(len(keys) - 1, max(2, round(len(keys) * fraction))) if len(keys) >= 4 else 0
    held = {k for k in keys[:n_out]}
    train = [p for k in keys if k not in held for p in groups[k]]
    heldout = [p for k in keys if k in held for p in groups[k]]
    return train, heldout


MIN_TASK_CHECK_PROMPTS = 16  # below this a held-out task accuracy moves by 1/16 per answer: noise
TASK_DROP_ALPHA = 0.05  # a fall must also be significant (exact McNemar on the same prompts' answers)
# One answer to this share of the check prompts, where their references are not that uniform: the model
# stopped reading the input. Accuracy can miss it: a model answering one label everywhere can still gain
# accuracy on prompts whose references mostly say that label (dev/LOG.md).
ONE_LABEL_SHARE = 0.9
GUARD_STATE_FILE, GUARD_BEST_FILE = "collapse_guard.json", "collapse_guard_best.safetensors"  # in each checkpoint


class TaskCheck:
    """Greedy answers to held-out training prompts, scored by the task's own scorer.

    Held-out reward accuracy can rise while the task metric falls (dev/LOG.md),
    so the guard also watches the quantity DPO is meant to raise: the share of prompts DPO does not train on answered correctly.
    """

    def __init__(self, task: Task, tokenizer, examples: list[dict], compute, batch_size: int = 16):
        self.task, self.tokenizer, self.examples, self.batch_size = task, tokenizer, examples, batch_size
        self.compute = compute

    def rows(self, model) -> list[dict]:
        """Each held-out prompt's scored answer (``correct``; predicted and gold labels on label tasks)."""
        was_training = model.training
        rows = predict(model, self.tokenizer, self.task, self.examples, self.compute, self.batch_size, desc=None)
        model.train(was_training)
        return rows


def one_label(task: Task | None, rows: list[dict]) -> dict | None:
    """The label head on which one answer (an unreadable one counts) covers ``ONE_LABEL_SHARE`` of the
    prompts though their references are not that uniform; None if there is none."""
    for head in (task.labels or {}) if task is not None else ():
        gold_key, pred_key = head_keys(task, head, rows)
        label, count = Counter(r.get(pred_key) for r in rows).most_common(1)[0]
        share, reference_share = count / len(rows), sum(r.get(gold_key) == label for r in rows) / len(rows)
        if share >= ONE_LABEL_SHARE and reference_share < ONE_LABEL_SHARE:
            return {"head": head, "label": label, "share": share, "reference_share": reference_share}
    return None


def task_check(task: Task, tokenizer, examples: list[dict] | None, heldout: list[dict], train_pairs: list[dict],
               settings, compute) -> tuple[TaskCheck | None, dict]:
    """The training examples DPO does not train on, to answer at every evaluation, and what was decided.

    The held-out pairs' prompts come first. Where they are few (a task the SFT model mostly gets
    right yields few pairs: 51 of 192 prompts on clinical_reasoning), training examples that gave no
    training pair fill up to ``task_check_prompts``: DPO never sees them either. That needs every
    training pair to name its example; otherwise only the held-out prompts are safe to use.
    """
    if not examples or settings.task_check_prompts == 0:
        return None, {"active": False, "reason": "off" if examples else "no training examples given"}
    held = {p.get("example_id") for p in heldout} - {None}
    trained = {p.get("example_id") for p in train_pairs}
    first = [ex for ex in examples if ex["id"] in held]
    rest = [] if None in trained else [ex for ex in examples if ex["id"] not in held and ex["id"] not in trained]
    chosen = (first + rest)[:settings.task_check_prompts]
    counts = {"prompts": len(chosen), "from_heldout_pairs": min(len(first), len(chosen))}
    if len(chosen) < MIN_TASK_CHECK_PROMPTS:
        return None, {"active": False, **counts,
                      "reason": f"fewer than {MIN_TASK_CHECK_PROMPTS} training prompts outside the training pairs"}
    return TaskCheck(task, tokenizer, chosen, compute), {"active": True, **counts}


class CollapseGuard(TrainerCallback):
    """Watches held-out evaluations: logs them, detects collapse, remembers the best weights.

    TRL's held-out ``rewards/chosen`` is beta * (log-prob of chosen under the
    model - under the reference), and the reference is the model DPO started
    from, so ``rewards/chosen / beta`` is how far the chosen log-prob has moved
    since the start (also after a resume). Collapse: it fell more than
    ``threshold`` nats per chosen token, or (with a ``TaskCheck``) the check
    failed at ``task_check_patience`` evaluations in a row, or at the last one.
    The check fails when the held-out task accuracy fell more than
    ``task_drop_threshold`` below its value before DPO, significantly
    (two-sided exact McNemar on the same prompts, p < ``TASK_DROP_ALPHA``: a few
    flipped answers are not a trend), or when the model gives one label to
    nearly every prompt (``one_label``). One failing check is not enough: on the
    GPU, text_classification fell at step 8 and ended 0.157 macro-F1 above SFT.
    The best weights are those with the highest held-out task accuracy among
    the evaluations whose check passed, or reward accuracy without a task check
    (ties keep the earlier step, which drifted less); only trainable parameters
    are copied, a few MB with LoRA.

    Its state (the answers before DPO, the history, whether it fired, the best
    weights) is saved into every checkpoint, so a resumed run watches as if it
    had never stopped. A checkpoint without it (a kill between Trainer's save
    and ours) resumes with the log-prob check only.
    """

    def __init__(self, settings, tokens_per_chosen: float, check: TaskCheck | None = None):
        self.settings = settings
        self.tokens = max(tokens_per_chosen, 1.0)
        self.check = check
        self.task_start: list[bool] | None = None  # each held-out prompt answered correctly before DPO
        self.start_one_label: dict | None = None  # already one label before DPO: not DPO's doing
        self.history: list[dict] = []
        self.fired: dict | None = None
        self.best: tuple[float, int, dict] | None = None

    def snapshot(self, model, accuracy: float, step: int) -> None:
        if self.best is None or accuracy > self.best[0]:
            state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            self.best = (accuracy, step, state)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        if state.global_step > 0:  # resumed: Trainer has loaded the checkpoint's weights and state
            self.load(checkpoint_dir(args, state), model)
            return
        # the starting weights; without a task check their reward accuracy is 0 (rewards are 0)
        if self.check:
            rows = self.check.rows(model)
            self.task_start = [bool(r["correct"]) for r in rows]
            self.start_one_label = one_label(self.check.task, rows)
        self.snapshot(model, mean(self.task_start) if self.check else 0.0, 0)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # one process writes the checkpoint's files
            return
        folder = checkpoint_dir(args, state)
        record = {"task_start": self.task_start, "start_one_label": self.start_one_label, "history": self.history,
                  "fired": self.fired, "best": None}
        if self.best:
            accuracy, step, weights = self.best
            # the best weights at this very step are the checkpoint's own: no second copy
            record["best"] = {"accuracy": accuracy, "step": step, "in_checkpoint": step == state.global_step}
            if step != state.global_step:
                save_file({name: t.contiguous() for name, t in weights.items()}, folder / GUARD_BEST_FILE)
        write_json(folder / GUARD_STATE_FILE, record)

    def load(self, folder: Path, model) -> None:
        if not (folder / GUARD_STATE_FILE).is_file():
            console.print(f"[yellow]collapse guard:[/] {folder.name} holds no guard state; the held-out task "
                          "check needs the answers before DPO, so only the log-prob check runs from here")
            return
        record = read_json(folder / GUARD_STATE_FILE)
        self.task_start, self.history, self.fired = record["task_start"], record["history"], record["fired"]
        self.start_one_label = record.get("start_one_label")
        best = record["best"]
        if best and best["in_checkpoint"]:
            self.snapshot(model, best["accuracy"], best["step"])
        elif best:
            device = str(next(model.parameters()).device)
            self.best = (best["accuracy"], best["step"], load_file(folder / GUARD_BEST_FILE, device=device))

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or "eval_rewards/chosen" not in metrics:
            return
        entry = {"step": state.global_step, **{k.removeprefix("eval_"): v for k, v in metrics.items()
                                               if k.startswith(("eval_rewards", "eval_logps", "eval_loss"))}}
        entry["chosen_logp_change_per_token"] = entry["rewards/chosen"] / self.settings.beta / self.tokens
        rows = self.check.rows(model) if self.check and model is not None else None
        if rows is not None:
            answers = [bool(r["correct"]) for r in rows]
            # the answers themselves, so a rule can be replayed on a finished run
            entry.update(task_accuracy=mean(answers), task_answers=answers, task_failing=self.failing(answers, rows))
        self.history.append(entry)
        if model is not None and not entry.get("task_failing"):
            self.snapshot(model, entry.get("task_accuracy", entry.get("rewards/accuracies", 0.0)), state.global_step)
        if self.settings.collapse_guard and not self.fired:
            self.fired = self.logp_drop(entry) or self.task_drop(entry)
            if self.fired and self.settings.stop_on_collapse:
                control.should_training_stop = True

    def logp_drop(self, entry: dict) -> dict | None:
        drop = -entry["chosen_logp_change_per_token"]
        if drop <= self.settings.collapse_threshold:
            return None
        console.print(f"[bold yellow]collapse guard:[/] at step {entry['step']} the held-out chosen "
                      f"log-prob fell {drop:.2f} nats/token below where DPO started (threshold "
                      f"{self.settings.collapse_threshold}): DPO is pushing the reference answers down too.")
        return {"reason": "chosen_logp", "step": entry["step"], "chosen_logp_drop_per_token": drop,
                "threshold": self.settings.collapse_threshold,
                "rewards_chosen": entry["rewards/chosen"], "rewards_rejected": entry.get("rewards/rejected")}

    def failing(self, answers: list[bool], rows: list[dict]) -> dict | None:
        """Why the task check fails at this evaluation, or None when it passes."""
        if self.task_start is None:
            return None
        start, now = mean(self.task_start), mean(answers)
        p_value = mcnemar_exact(self.task_start, answers)["p_value"]
        found = {"task_accuracy_start": start, "task_accuracy": now, "p_value": p_value}
        if start - now > self.settings.task_drop_threshold and p_value < TASK_DROP_ALPHA:
            return {"reason": "task_accuracy", **found, "threshold": self.settings.task_drop_threshold}
        collapsed = one_label(self.check.task, rows) if self.check else None
        if collapsed and not (self.start_one_label and self.start_one_label["head"] == collapsed["head"]):
            return {"reason": "one_label", **found, **collapsed, "threshold": ONE_LABEL_SHARE}
        return None

    def task_drop(self, entry: dict, at_end: bool = False) -> dict | None:
        """Fires when the task check failed at the last ``task_check_patience`` evaluations (or the last one)."""
        failing = entry.get("task_failing")
        if not failing:
            return None
        run = [h.get("task_failing") for h in self.history[-self.settings.task_check_patience:]]
        whole = len(run) == self.settings.task_check_patience and all(run)
        what = describe(failing, len(entry["task_answers"]))
        if not (whole or at_end):
            console.print(f"[yellow]collapse guard:[/] at step {entry['step']} {what}; DPO goes on, since one "
                          f"check can be a dip ({self.settings.task_check_patience} failing in a row stop it).")
            return None
        when = "at the last evaluation" if at_end and not whole else f"at step {entry['step']}"
        console.print(f"[bold yellow]collapse guard:[/] {when} {what}: DPO is making the task worse.")
        return {**failing, "step": entry["step"], "failing_checks": sum(bool(f) for f in run), "at_end": at_end,
                "chosen_logp_drop_per_token": -entry["chosen_logp_change_per_token"]}

    def final_check(self) -> None:
        """After training: a failing last check has no later check to recover in, so it counts alone."""
        if self.settings.collapse_guard and not self.fired and self.history:
            self.fired = self.task_drop(self.history[-1], at_end=True)

    def restore_best(self, model) -> dict | None:
        if not self.best:
            return None
        accuracy, step, state = self.best
        if any(value.numel() == 0 for value in state.values()):  # DeepSpeed ZeRO-3 / FSDP: this process's shard
            console.print("[yellow]collapse guard:[/] the weights are sharded over the processes, so the best ones "
                          "were not kept; the model is saved as trained (docs/scale.md)")
            return None
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)
        return {"step": step, ("heldout_task_accuracy" if self.check else "heldout_reward_accuracy"): accuracy}


def describe(failing: dict, prompts: int) -> str:
    if failing["reason"] == "one_label":
        return (f"the model answers {failing['label']!r} ({failing['head']}) to {failing['share']:.0%} of the {prompts} "
                f"prompts it does not train on, though {failing['reference_share']:.0%} of their references say so")
    return (f"the model answers {failing['task_accuracy']:.0%} of the {prompts} prompts it does not train on "
            f"correctly, {failing['task_accuracy_start']:.0%} before DPO (McNemar p={failing['p_value']:.3f})")


def precompute_reference(settings, method: str, train_pairs: int, heldout_pairs: int) -> bool:
    """Whether the pairs' reference log-probs are computed once before training (TRL's
    ``precompute_ref_log_probs``, for the training and the held-out pairs) instead of by a reference forward
    each time a pair is seen: every epoch, every held-out evaluation. ``auto``: where a pair would be seen
    twice or more, and always with full fine-tuning, which then needs no reference copy of the model."""
    if settings.precompute_reference != "auto":
        return settings.precompute_reference == "always"
    if method == "full":
        return True
    per_forward, accumulation = settings.micro_batch()
    per_epoch = max(math.ceil(math.ceil(train_pairs / per_forward) / accumulation), 1)
    steps = settings.max_steps if settings.max_steps > 0 else math.ceil(settings.epochs * per_epoch)
    evaluations = steps // settings.eval_steps + (steps % settings.eval_steps > 0)  # and one at the end
    return steps > per_epoch or (heldout_pairs > 0 and evaluations > 1)


def checkpoint_dir(args, state) -> Path:
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


def train_dpo(model, tokenizer, base: str, parent_model_dir: Path, method: str, task: Task, pairs: list[dict],
              settings, out_dir: Path, compute, seed: int,
              examples: list[dict] | None = None, tracking=None) -> tuple[dict, object]:
    """``model`` is the parent (SFT, or the previous DPO round) with adapters merged. Saves ``out_dir/model``;
    returns the training summary and the trained model (a PEFT model for adapters, with the weights saved).
    ``examples``: the training examples the pairs came from, for the guard's held-out task check.
    ``tracking``: where the curves and held-out evaluations go (tracking.for_stage), or None."""
    from trl import DPOConfig, DPOTrainer

    pairs, fit, chosen_tokens = fit_pairs(tokenizer, task, pairs, settings.max_length, settings.truncation)
    train_pairs, heldout = split_heldout(pairs, settings.heldout_fraction, seed)
    if not train_pairs:
        raise MedtuneError(f"{task.name}: no preference pair fits dpo.max_length={settings.max_length}; raise it")
    eval_args = {}
    if heldout:  # the held-out batch as one process evaluates it, shared by the processes where it divides
        per_eval = settings.batch_size // world_size() if settings.batch_size % world_size() == 0 else settings.batch_size
        eval_args = dict(eval_strategy="steps", eval_steps=settings.eval_steps, per_device_eval_batch_size=per_eval)
    # A pair is two sequences with gradients, so a batch of N pairs runs as gradient-accumulated
    # micro-batches (by default N/2 pairs, i.e. N sequences): the same update, about SFT's activation memory.
    batch = batch_args("dpo", *settings.micro_batch())
    precompute = precompute_reference(settings, method, len(train_pairs), len(heldout))
    args = DPOConfig(**common_args(out_dir, settings, compute, seed, tracking), **batch,
                     **loss_args(settings), **eval_args, beta=settings.beta, max_length=settings.max_length,
                     precompute_ref_log_probs=precompute)
    peft, ref_model = None, None
    if method in ("lora", "qlora"):  # qlora: the model arrives with 4-bit base weights (models.load_quantized)
        peft = lora_config(settings.lora_r, settings.lora_alpha, 0.0, "all-linear", model, settings.lora_layers)
    elif not precompute:  # full fine-tuning: the reference is a frozen copy of the parent (TRL would load the base)
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    check, check_info = task_check(task, tokenizer, examples, heldout, train_pairs, settings, compute)
    guard = CollapseGuard(settings, mean(chosen_tokens[p["id"]] for p in heldout), check)
    resume = resume_point(out_dir)
    with tracked(tracking, resuming=resume is not None):
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args,
                             train_dataset=pair_dataset(out_dir, "train", dpo_rows(task, train_pairs)),
                             eval_dataset=pair_dataset(out_dir, "heldout", dpo_rows(task, heldout)) if heldout else None,
                             processing_class=tokenizer, peft_config=peft,
                             callbacks=[RichProgress(f"{task.name}: DPO"), guard])
        trainer.remove_callback(PrinterCallback)  # our rich bar shows the loss instead
        ref_model = None  # the trainer holds it
        with sped_up(trainer, compute, "dpo") as sharing:
            result = trainer.train(resume_from_checkpoint=resume)
            if heldout and (not guard.history or guard.history[-1]["step"] != trainer.state.global_step):
                trainer.evaluate()  # the held-out metrics of the weights as trained
        close_tensorboard(trainer)
    guard.final_check()
    restored = guard.restore_best(trainer.model) if guard.fired and settings.stop_on_collapse else None
    # a LoRA adapter sits on its parent; full weights stand alone
    save_trained(trainer, tokenizer, out_dir / "model",
                 lambda tmp: save_model_info(tmp, method, base, parent_model_dir, parent_is_stage=True))
    history = trainer.state.log_history
    summary = {"train_runtime_s": result.metrics.get("train_runtime"), "steps": trainer.state.global_step,
               "pairs": len(train_pairs), "heldout_pairs": len(heldout), "length_filter": fit,
               "loss_type": settings.loss_type, "beta": settings.beta,
               "precision": compute.precision, "accel": sorted(compute.accel),
               "shared_prompt_batches": sharing.counts() if sharing else None,
               "reference_precomputed": precompute, "processes": world_size(), **batch,
               "final_loss": result.metrics.get("train_loss"),
               "final_reward_accuracy": last_logged(history, "rewards/accuracies"),
               "final_reward_margin": last_logged(history, "rewards/margins"),
               "heldout": guard.history,
               "task_check": {**check_info,
                              "accuracy_start": mean(guard.task_start) if guard.task_start is not None else None},
               "collapse": {"guard": settings.collapse_guard, "fired": guard.fired is not None, **(guard.fired or {}),
                            "restored": restored},
               "log_history": history}
    on_main(write_logs, out_dir, guard.history, summary)
    clean_checkpoints(out_dir)
    return summary, trainer.model


def write_logs(out_dir: Path, heldout: list[dict], summary: dict) -> None:
    write_json(out_dir / "heldout_log.json", heldout)
    write_json(out_dir / "train_log.json", summary)  # commits the stage: written last (rundir.py)


def pair_dataset(out_dir: Path, name: str, rows: list[dict]) -> Dataset:
    """``rows`` as a dataset in a folder every process reads (beside the checkpoints): TRL caches the
    reference log-probs it precomputes beside a dataset's files, where every process finds them; an
    in-memory dataset's cache lies in one process's temporary folder."""
    folder = out_dir / "checkpoints" / f"pairs_{name}"
    on_main(save_dataset, rows, folder)
    return load_from_disk(str(folder))


def save_dataset(rows: list[dict], folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # rewritten whole: the pairs of this run, not an earlier one's
    Dataset.from_list(rows).save_to_disk(str(folder))


def last_logged(history: list[dict], key: str):
    values = [h[key] for h in history if key in h and not any(k.startswith("eval_") for k in h)]
    return values[-1] if values else None
