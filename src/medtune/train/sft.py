"""Supervised fine-tuning with TRL's SFTTrainer: loss on the completion only.

LoRA by default (the saved model is an adapter on the base model); full
fine-tuning saves the whole model. An interrupted run resumes from its last
checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from transformers import PrinterCallback

from ..errors import MedtuneError
from ..distributed import on_main, world_size
from ..io import write_json
from ..models import lora_config, save_model_info
from ..tasks.common import Task
from ..tracking import tracked
from .common import RichProgress, batch_args, clean_checkpoints, common_args, resume_point, save_trained, sped_up


def sft_dataset(task: Task, examples: list[dict]) -> Dataset:
    """TRL's conversational prompt-completion format, so only the answer is learned."""
    return Dataset.from_list([
        {"prompt": task.messages(ex), "completion": [{"role": "assistant", "content": task.reference(ex)}]}
        for ex in examples
    ])


def check_lengths(tokenizer, task: Task, examples: list[dict], max_length: int) -> None:
    """TRL silently drops or truncates over-long examples; training on none of them is a user error."""
    fits = 0
    for ex in examples:
        messages = task.messages(ex) + [{"role": "assistant", "content": task.reference(ex)}]
        fits += len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]) <= max_length
    if not fits:
        raise MedtuneError(f"{task.name}: all {len(examples)} training examples are longer than sft.max_length="
                           f"{max_length} tokens with this model's tokenizer; raise sft.max_length")


def train_sft(model, tokenizer, base: str, task: Task, examples: list[dict], settings, out_dir: Path,
              compute, seed: int, tracking=None) -> tuple[dict, object]:
    """Train on ``examples`` and save ``out_dir/model``; returns the training summary and the trained model
    (a PEFT model for adapters, as the trainer leaves it). ``tracking``: where the curves go
    (tracking.for_stage), or None."""
    from trl import SFTConfig, SFTTrainer

    check_lengths(tokenizer, task, examples, settings.max_length)
    batch = batch_args("sft", settings.batch_size, settings.grad_accum)
    args = SFTConfig(**common_args(out_dir, settings, compute, seed, tracking), **batch, max_length=settings.max_length,
                     completion_only_loss=True, packing=False)
    peft = None
    if settings.method in ("lora", "qlora"):
        peft = lora_config(settings.lora_r, settings.lora_alpha, settings.lora_dropout, settings.lora_target_modules,
                           model, settings.lora_layers)
    resume = resume_point(out_dir)
    with tracked(tracking, resuming=resume is not None):
        trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(task, examples),
                             processing_class=tokenizer, peft_config=peft,
                             callbacks=[RichProgress(f"{task.name}: SFT")])
        trainer.remove_callback(PrinterCallback)  # our rich bar shows the loss instead
        with sped_up(trainer, compute, "sft") as sharing:
            result = trainer.train(resume_from_checkpoint=resume)
    save_trained(trainer, tokenizer, out_dir / "model",
                 lambda tmp: save_model_info(tmp, settings.method, base, base, parent_is_stage=False))
    summary = {"train_runtime_s": result.metrics.get("train_runtime"), "steps": trainer.state.global_step,
               "examples": len(examples), "final_loss": result.metrics.get("train_loss"),
               "precision": compute.precision, "accel": sorted(compute.accel),
               "shared_prefix_batches": sharing.counts() if sharing else None,
               "processes": world_size(), **batch,
               "log_history": trainer.state.log_history}
    on_main(write_json, out_dir / "train_log.json", summary)  # commits the stage: written last (rundir.py)
    clean_checkpoints(out_dir)
    return summary, trainer.model
