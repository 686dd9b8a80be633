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

from ..distributed import on_main, world_size
from ..errors import MedtuneError
from ..io import atomic_dir, read_json, write_json
from ..progress import console, progress

PROCESSES_FILE = "processes.json"  # in RUN/<task>/<stage>/checkpoints: how many processes made its checkpoints


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
    (nothing logged but train_log.json). The batch: ``batch_args``."""
    on_gpu = compute.device == "cuda"
    return dict(
        output_dir=str(out_dir / "checkpoints"),
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
        # under DDP: every trainable weight (the adapters, or all) takes part in each step, so DDP need not walk
        # the autograd graph each step looking for ones that did not (Trainer's default for a PEFT model)
        ddp_find_unused_parameters=False,
    )


SPLIT_SETTINGS = {"sft": ("sequences", "sft.grad_accum (or sft.batch_size)"),
                  "dpo": ("pairs", "dpo.grad_accum (or dpo.pairs_per_forward)")}  # what to change when it won't divide


def split_batch(stage: str, per_device: int, accumulation: int, processes: int) -> tuple[int, int]:
    """A step of ``per_device`` x ``accumulation`` (as one process has it) shared by ``processes``: the
    accumulation divided by their number, else the per-device batch, so the step is the same."""
    if accumulation % processes == 0:
        return per_device, accumulation // processes
    if per_device % processes == 0:
        return per_device // processes, accumulation
    unit, change = SPLIT_SETTINGS[stage]
    raise MedtuneError(f"{stage}: a step of {per_device} x {accumulation} {unit} (per forward x accumulated) "
                       f"cannot be shared by {processes} processes; make {change} a multiple of {processes}, "
                       "or launch a number of processes that divides it")


def batch_args(stage: str, per_device: int, accumulation: int) -> dict:
    """The step's batch for ``stage`` ("sft" or "dpo") under this run's processes (``split_batch``), said on
    the console where there are several."""
    processes = world_size()
    per_device, accumulation = split_batch(stage, per_device, accumulation, processes)
    unit = SPLIT_SETTINGS[stage][0]
    console.print(f"{stage}: effective batch {per_device} {unit} per forward x {accumulation} accumulated x "
                  f"{processes} process(es) = {per_device * accumulation * processes} {unit} per step"
                  + (", as with one process" if processes > 1 else ""), highlight=False)
    return {"per_device_train_batch_size": per_device, "gradient_accumulation_steps": accumulation}


def resume_point(out_dir: Path) -> str | None:
    """The checkpoint to resume from, if any: only under the number of processes that made it (each process
    has its own random state in it, and the batch was divided among them); records that number for the
    checkpoints to come."""
    resume = on_main(last_checkpoint, out_dir)  # rank 0 removes an interrupted save
    record = out_dir / "checkpoints" / PROCESSES_FILE
    if resume:
        made_by = read_json(record)["processes"] if record.is_file() else 1  # older checkpoints: one process's
        if made_by != world_size():
            raise MedtuneError(f"{out_dir}: its checkpoint {Path(resume).name} was made by {made_by} process(es) "
                               f"and this run has {world_size()}; launch {made_by} to resume it, or delete "
                               f"{out_dir / 'checkpoints'} to train the stage from its start")
    on_main(write_json, record, {"processes": world_size()})
    return resume


def save_trained(trainer, tokenizer, folder: Path, describe) -> None:
    """The trained model and its tokenizer into ``folder`` (made whole or not at all), by rank 0;
    ``describe(tmp)`` adds medtune's description. Under FSDP or DeepSpeed the weights lie sharded over the
    processes: every one takes part in gathering them (Trainer's ``save_model``; run with DeepSpeed on a CPU, not
    with FSDP: docs/scale.md)."""
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        on_main(save_whole, trainer.model, tokenizer, folder, describe)
        return
    tmp = folder.parent / f".{folder.name}.gathered.tmp"  # one name for all processes; a leftover is an orphan
    on_main(remove_folder, tmp)
    trainer.save_model(str(tmp))  # every process gathers, rank 0 writes
    on_main(save_whole, None, tokenizer, folder, describe, gathered=tmp)
    if trainer.is_deepspeed_enabled:
        # transformers loads every model after this one sharded (ZeRO-3) while a trainer's DeepSpeed config
        # is registered: the next stages load theirs whole, as a stage always does
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def save_whole(model, tokenizer, folder: Path, describe, gathered: Path | None = None) -> None:
    with atomic_dir(folder) as tmp:
        if gathered is None:
            model.save_pretrained(tmp)
        else:
            for path in gathered.iterdir():
                shutil.move(str(path), tmp / path.name)
            (tmp / "training_args.bin").unlink(missing_ok=True)
        tokenizer.save_pretrained(tmp)
        describe(tmp)
    if gathered is not None:
        remove_folder(gathered)


def remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


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
    on_main(remove_folder, out_dir / "checkpoints")
