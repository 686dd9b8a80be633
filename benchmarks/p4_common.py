"""What both sides of p4 share: the arguments and the exact same training data and pairs."""

import argparse
import random

from medtune.data import bundled_path
from medtune.io import read_jsonl
from medtune.progress import quiet_libraries
from medtune.tasks import get_task
from medtune.train.pairs import pairs_from_label_swap


def setup():
    """Returns (args, task, training examples, preference pairs)."""
    parser = argparse.ArgumentParser()
    for name in ("--model", "--out"):
        parser.add_argument(name, required=True)
    for name in ("--sft-steps", "--dpo-steps", "--batch"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    # training seed (LoRA init, data order); default: each tool's own (medtune 0, TRL 42)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--task", default="numeric_classification")
    args = parser.parse_args()
    quiet_libraries()
    task = get_task(args.task)
    train = read_jsonl(bundled_path(task, "train"))[:args.sft_steps * args.batch]
    rng = random.Random(0)
    pairs = [p for ex in train for p in pairs_from_label_swap(task, ex, task.reference(ex), rng)]
    return args, task, train, pairs[:args.dpo_steps * args.batch]
