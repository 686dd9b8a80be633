"""p4, the other side: what a user would write with TRL's defaults (full fine-tuning, TRL's
default gradient checkpointing, a reference model copy for DPO) for the same data and steps.

Prints {"train_s", "model_dir"}; train_s runs from the first trainer to the saved DPO model.
"""

import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from medtune.models import compute_format, resolve_base

from p4_common import setup

args, task, train, pairs = setup()
path = resolve_base(args.model)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device)
tokenizer = AutoTokenizer.from_pretrained(path)
out = Path(args.out)
sft_data = Dataset.from_list([{"prompt": task.messages(ex), "completion": [{"role": "assistant", "content": task.reference(ex)}]}
                              for ex in train])
system = {"role": "system", "content": task.system_prompt}
dpo_data = Dataset.from_list([{"prompt": [system, {"role": "user", "content": p["prompt"]}],
                               "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
# TRL's configs default to bf16=True even on a CPU. Where the CPU multiplies bf16 in hardware, that is also
# medtune's format (autocast over fp32 weights), so both sides compute alike. Where bf16 is emulated (many
# times slower), bf16 off, as medtune: the comparison is about the recipe.
# On a GPU, TRL's defaults as they are (bf16 mixed precision).
on_cpu = args.device == "cpu"
cpu_bf16 = compute_format("cpu", "auto") == torch.bfloat16
common = dict(per_device_train_batch_size=args.batch, report_to="none", save_strategy="no",
              **({"use_cpu": True, "bf16": cpu_bf16} if on_cpu else {}),
              **({} if args.seed is None else {"seed": args.seed}))
start = time.perf_counter()
sft = SFTTrainer(model=model, args=SFTConfig(output_dir=str(out / "sft"), max_steps=args.sft_steps, **common),
                 train_dataset=sft_data, processing_class=tokenizer)
sft.train()
dpo = DPOTrainer(model=sft.model, args=DPOConfig(output_dir=str(out / "dpo"), max_steps=args.dpo_steps, **common),
                 train_dataset=dpo_data, processing_class=tokenizer)
dpo.train()
dpo.model.save_pretrained(out / "model")
tokenizer.save_pretrained(out / "model")
print(json.dumps({"train_s": time.perf_counter() - start, "model_dir": str(out / "model")}))
