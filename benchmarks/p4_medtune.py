"""p4, medtune's side: SFT then DPO on one task (text_classification unless --task) with the quick
preset's settings.

Prints {"train_s", "model_dir"}; train_s runs from the first trainer to the saved DPO model,
including the adapter merge between the stages (in memory, as the study hands the SFT model on).
benchmarks/trl_plain.py is the other side.
"""

import json
import time
from pathlib import Path

from medtune.allocator import keep_freed_memory
from medtune.config import load_config
from medtune.io import read_json
from medtune.models import MODEL_INFO, as_loaded, load_model
from medtune.train.dpo import train_dpo
from medtune.train.sft import train_sft

from p4_common import setup

keep_freed_memory()  # as the medtune command does
args, task, train, pairs = setup()
cfg = load_config(overrides={"sft": {"max_steps": args.sft_steps, "batch_size": args.batch},
                             "dpo": {"max_steps": args.dpo_steps, "batch_size": args.batch, "heldout_fraction": 0.0}})
out = Path(args.out)
model, tokenizer, _ = load_model(args.model, args.device)
seed = cfg.seed if args.seed is None else args.seed
start = time.perf_counter()
_, trained = train_sft(model, tokenizer, args.model, task, train, cfg.sft, out / "sft", args.device, seed)
sft_model, info = as_loaded(trained), read_json(out / "sft" / "model" / MODEL_INFO)
train_dpo(sft_model, tokenizer, args.model, out / "sft" / "model", info["kind"], task, pairs, cfg.dpo, out / "dpo",
          args.device, seed)
print(json.dumps({"train_s": time.perf_counter() - start, "model_dir": str(out / "dpo" / "model")}))
