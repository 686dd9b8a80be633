"""p4, medtune's side: SFT then DPO on one task (text_classification unless --task) with the quick
preset's settings and the speed switch given (--accel, auto unless said).

Prints {"train_s", "model_dir", "accel"}; train_s runs from the first trainer to the saved DPO model,
including the hand-over between the stages as the study makes it (the trained model merged in memory
with the trained_handoff piece, the saved SFT model loaded again without it).
benchmarks/trl_plain.py is the other side.
"""

import json
import time
from pathlib import Path

from medtune.config import load_config
from medtune.models import load_model, resolve_compute
from medtune.study import Run
from medtune.train.dpo import train_dpo
from medtune.train.sft import train_sft

from p4_common import setup

args, task, train, pairs = setup()
cfg = load_config(overrides={"accel": args.accel,
                             "sft": {"max_steps": args.sft_steps, "batch_size": args.batch},
                             "dpo": {"max_steps": args.dpo_steps, "batch_size": args.batch, "heldout_fraction": 0.0}})
compute = resolve_compute(args.device, cfg.precision, cfg.accel)
run = Run(cfg, compute)  # the study's hand-over between stages
out = Path(args.out)
model, tokenizer, _ = load_model(args.model, compute.device, compute.weights)
seed = cfg.seed if args.seed is None else args.seed
start = time.perf_counter()
_, trained = train_sft(model, tokenizer, args.model, task, train, cfg.sft, out / "sft", compute, seed)
run.hand_on(out / "sft" / "model", trained, tokenizer, cfg.sft.method)
del model, trained
sft_model, tokenizer, info = run.load(out / "sft" / "model")
train_dpo(sft_model, tokenizer, args.model, out / "sft" / "model", info["kind"], task, pairs, cfg.dpo, out / "dpo",
          compute, seed)
print(json.dumps({"train_s": time.perf_counter() - start, "model_dir": str(out / "dpo" / "model"),
                  "accel": sorted(compute.accel)}))
