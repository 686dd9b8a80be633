"""Direct Preference Optimization with TRL's DPOTrainer, starting from the SFT model.

LoRA (default): the SFT model is merged, a fresh adapter is trained on top, and
TRL uses the same network with the adapter disabled as the reference, so the
reference is exactly the SFT model and no second copy sits in memory. Full
fine-tuning: a frozen copy of the SFT model is the reference.
"""

from __future__ import annotations

import copy
from pathlib import Path

from datasets import Dataset
from transformers import PrinterCallback

from ..io import atomic_dir, write_json
from ..models import lora_config, save_model_info
from ..tasks.common import Task
from .common import RichProgress, clean_checkpoints, common_args, last_checkpoint


def dpo_dataset(task: Task, pairs: list[dict]) -> Dataset:
    """TRL's conversational preference format, with the task's system prompt."""
    return Dataset.from_list([
        {"prompt": [{"role": "system", "content": task.system_prompt}, {"role": "user", "content": p["prompt"]}],
         "chosen": [{"role": "assistant", "content": p["chosen"]}],
         "rejected": [{"role": "assistant", "content": p["rejected"]}]}
        for p in pairs
    ])


def train_dpo(model, tokenizer, base: str, sft_model_dir: Path, method: str, task: Task, pairs: list[dict],
              settings, out_dir: Path, device: str, seed: int) -> dict:
    """``model`` is the SFT model (adapters merged). Saves ``out_dir/model``."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**common_args(out_dir, settings, device, seed), beta=settings.beta,
                     loss_type=[settings.loss_type], max_length=settings.max_length)
    peft, ref_model = None, None
    if method == "lora":
        peft = lora_config(settings.lora_r, settings.lora_alpha, 0.0, "all-linear")
    else:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dpo_dataset(task, pairs),
                         processing_class=tokenizer, peft_config=peft,
                         callbacks=[RichProgress(f"{task.name}: DPO")])
    trainer.remove_callback(PrinterCallback)  # our rich bar shows the loss instead
    result = trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    with atomic_dir(out_dir / "model") as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # a LoRA adapter sits on the SFT model; full weights stand alone
        save_model_info(tmp, method, base, sft_model_dir, parent_is_stage=True)
    history = trainer.state.log_history
    summary = {"train_runtime_s": result.metrics.get("train_runtime"), "steps": trainer.state.global_step,
               "pairs": len(pairs), "final_loss": result.metrics.get("train_loss"),
               "final_reward_accuracy": last_logged(history, "rewards/accuracies"),
               "final_reward_margin": last_logged(history, "rewards/margins"),
               "log_history": history}
    write_json(out_dir / "train_log.json", summary)
    clean_checkpoints(out_dir)
    return summary


def last_logged(history: list[dict], key: str):
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None
