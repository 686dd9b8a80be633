"""What two CPU-side choices of medtune's SFT step buy, side by side: the LoRA dropout's mask
(train.common.lora_dropout) and glibc's malloc kept from handing memory back (allocator.py).

    .venv/bin/python benchmarks/sft_step.py [--repeats 3] [--dropout 0.05] [--precision auto] [--model PATH]

p5's SFT child (benchmarks/run_all.py: six steps of four text_classification examples, one process each) at
the given lora_dropout, which the full preset and a config without a preset use (0.05; the quick preset has
none). Four arms, one change each from medtune as it runs, alternating so that a slow moment of a shared
host falls on each:
- medtune: as the medtune command trains;
- torch_dropout: torch's dropout module draws the mask, in the same fused LoRA forward;
- glibc_malloc: glibc's own malloc settings;
- no_dropout: lora_dropout 0, the floor of what any mask costs.
Prints each child's seconds, median step and page faults, and each arm's mean over medtune's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARMS = ("medtune", "torch_dropout", "glibc_malloc", "no_dropout")


def child(arm: str, model: str, dropout: float, precision: str) -> None:
    sys.path.insert(0, str(HERE))
    import run_all

    import medtune.train.common as common
    from medtune.allocator import keep_freed_memory

    if arm != "glibc_malloc":
        keep_freed_memory()  # as the medtune command does
    if arm == "torch_dropout":
        common.lora_dropout = lambda module, rows: (module(rows), 1.0)
    settings = run_all.settings
    run_all.settings = lambda section, **values: settings(section, **values,
                                                          lora_dropout=0.0 if arm == "no_dropout" else dropout)
    run_all.sft_flops = lambda *args, **kwargs: ([0.0], 0.0)  # not needed: time only
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all.child_train("sft", model, 6, 4, Path(tmp), "cpu", precision)
    result["page_faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps(result))


def run(arm: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", arm, "--model", args.model, "--dropout", str(args.dropout),
           "--precision", args.precision]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE.parent)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.dropout, args.precision)
        return
    seconds, faults = {arm: [] for arm in ARMS}, {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        for arm in ARMS:
            result = run(arm, args)
            seconds[arm].append(result["train_s"])
            faults[arm].append(result["page_faults"])
            print(f"round {repeat + 1} {arm:14s} {result['precision']}: {result['train_s']:.2f} s, median step "
                  f"{statistics.median(result['step_s'][1:]):.3f} s, {result['page_faults']:,} page faults, "
                  f"peak {result['peak_mb']:.0f} MB", flush=True)
    mean = {arm: statistics.mean(values) for arm, values in seconds.items()}
    print("mean seconds: " + ", ".join(f"{arm} {value:.2f}" for arm, value in mean.items()))
    print("over medtune's: " + ", ".join(f"{arm} {value / mean['medtune']:.3f}" for arm, value in mean.items()))
    print(json.dumps({"seconds": seconds, "page_faults": faults,
                      "over_medtune": {arm: value / mean["medtune"] for arm, value in mean.items()}}))


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
