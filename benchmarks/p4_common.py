"""What both sides of p4 share: the arguments and the exact same training data and pairs."""

import argparse

from medtune.progress import quiet_libraries
from medtune.tasks import get_task
from run_all import examples, label_swap_pairs


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
    parser.add_argument("--task", default="text_classification")
    # medtune's speed switch (the config key accel); TRL's side runs stock TRL and does not read it
    parser.add_argument("--accel", choices=["auto", "off"], default="auto")
    args = parser.parse_args()
    quiet_libraries()
    task = get_task(args.task)
    train = examples(task, args.sft_steps * args.batch, "train")
    return args, task, train, label_swap_pairs(task, train)[:args.dpo_steps * args.batch]
