"""LoRA dropout on a CPU: torch's mask against medtune's (train.common.lora_dropout), side by side.

    .venv/bin/python benchmarks/lora_dropout.py [--repeats 3] [--dropout 0.05] [--precision auto] [--model PATH]

p5's SFT child (benchmarks/run_all.py: six steps of four text_classification examples, one process each) at
the given lora_dropout, which the full preset and a config without a preset use (0.05; the quick preset has
none). Three arms, alternating so that a slow moment of a shared host falls on each: medtune's mask, torch's
dropout in the same fused LoRA forward, and no dropout (the floor: what any mask costs). Prints each child's
seconds and median step, and the ratios of the arms' means.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARMS = ("medtune", "torch", "none")


def child(arm: str, model: str, dropout: float, precision: str) -> None:
    sys.path.insert(0, str(HERE))
    import run_all

    import medtune.train.common as common

    if arm == "torch":  # the same forward with torch's dropout module drawing the mask
        common.lora_dropout = lambda module, rows: (module(rows), 1.0)
    settings = run_all.settings
    run_all.settings = lambda section, **values: settings(section, **values,
                                                          lora_dropout=0.0 if arm == "none" else dropout)
    run_all.sft_flops = lambda *args, **kwargs: (0.0, 0.0)  # not needed: time only
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all.child_train("sft", model, 6, 4, Path(tmp), "cpu", precision)
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
    seconds = {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        for arm in ARMS:
            result = run(arm, args)
            seconds[arm].append(result["train_s"])
            print(f"round {repeat + 1} {arm:8s} {result['precision']}: {result['train_s']:.2f} s, "
                  f"median step {statistics.median(result['step_s'][1:]):.3f} s", flush=True)
    mean = {arm: statistics.mean(values) for arm, values in seconds.items()}
    print(f"mean seconds: " + ", ".join(f"{arm} {value:.2f}" for arm, value in mean.items()))
    print(f"torch's dropout / medtune's: {mean['torch'] / mean['medtune']:.3f}")
    print(f"dropout's cost over no dropout: torch's {mean['torch'] - mean['none']:+.2f} s, "
          f"medtune's {mean['medtune'] - mean['none']:+.2f} s")


if __name__ == "__main__":
    main()
