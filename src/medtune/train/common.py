"""What the SFT and DPO stages share: trainer arguments, a rich progress bar, resuming."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..progress import progress


def sped_up(trainer, compute, kind: str):
    """The speed pieces (medtune/accel/) around ``trainer.train()`` where the run uses any; else nothing: stock
    TRL. ``kind``: "sft" or "dpo". The block yields what the shared prompt did, or None."""
    if not compute.accel:
        return contextlib.nullcontext()
    from ..accel import training

    return getattr(training, kind)(trainer, compute)


class RichProgress(TrainerCallback):
    """A rich progress bar for Trainer (its tqdm bars are switched off)."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = progress()
        self.bar.start()
        self.task = self.bar.add_task(self.desc, total=state.max_steps, info="", completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar and logs and "loss" in logs:
            self.bar.update(self.task, info=f"loss {logs['loss']:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar:
            self.bar.stop()


def common_args(out_dir: Path, settings, compute, seed: int, tracking=None) -> dict:
    """TrainingArguments shared by SFTConfig and DPOConfig. ``tracking``: a tracking.StageTracking, or None
    (nothing logged but train_log.json)."""
    on_gpu = compute.device == "cuda"
    return dict(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        # the trackers' callbacks take their folders and store from the environment (tracking.tracked)
        report_to=tracking.report_to if tracking else "none",
        run_name=tracking.run_name if tracking else None,
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        bf16=compute.dtype == torch.bfloat16,  # autocast
        fp16=False,
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        # TRL turns this on by default; it trades ~30% speed for memory a small model does not need
        gradient_checkpointing=settings.gradient_checkpointing,
    )


def close_tensorboard(trainer) -> None:
    """TensorBoardCallback closes its writer when training ends and opens another for a log after that (DPO's
    held-out evaluation when a resumed run was already at its last step); close that one too, through the
    callback's own hook."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
            callback.on_train_end(trainer.args, trainer.state, trainer.control)


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest *complete* checkpoint; one cut short by a kill is removed.

    Trainer writes a checkpoint in place (weights, optimizer, RNG, then
    ``trainer_state.json`` last), so a run killed while saving leaves a folder
    that Trainer cannot resume from. The state file marks a finished save.
    """
    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return None
    steps = sorted((int(d.name.rsplit("-", 1)[1]), d) for d in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if d.is_dir() and d.name.rsplit("-", 1)[1].isdigit())
    for _, candidate in reversed(steps):
        try:
            json.loads((candidate / TRAINER_STATE_NAME).read_text())
            return str(candidate)
        except (OSError, ValueError):
            shutil.rmtree(candidate, ignore_errors=True)  # an interrupted save
    return None


def clean_checkpoints(out_dir: Path) -> None:
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
