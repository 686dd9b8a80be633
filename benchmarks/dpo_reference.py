"""DPO with every pair's reference log-probs computed once before training (``dpo.precompute_reference:
always``, TRL's ``precompute_ref_log_probs``) vs TRL's reference forward at every step and every held-out
evaluation (``never``), side by side. ``auto`` chooses between the two; this measures what it chooses.

    .venv/bin/python benchmarks/dpo_reference.py [--model PATH] [--pairs 40] [--repeats 2] [--device cpu] [--accel off]

The full preset's DPO on the embedded model (LoRA on every layer, 2 epochs, 15% of the pairs held out
and evaluated during training), on text_classification label-swap pairs, with the held-out evaluation
every 4 steps instead of 25 so that a short run evaluates as often, relative to its steps, as a full
study does. Each run is its own process, the two settings alternating. Prints each run's wall seconds
of the whole DPO stage (the precomputing included), the ratio of the means, and whether both settings
logged the same losses and held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOGGED = ("loss", "grad_norm", "eval_loss", "eval_rewards", "eval_logps")
MODES = ("never", "always")


def child(model_ref: str, n_pairs: int, mode: str, device: str, accel: str, out: Path) -> dict:
    from medtune.config import load_config
    from medtune.models import load_model
    from medtune.tasks import get_task
    from medtune.train.dpo import train_dpo
    from run_all import compute_for, examples, label_swap_pairs

    # fp32 on every machine: "the same logged metrics" compares two computations of the same numbers, and in
    # bf16 (where a CPU multiplies it in hardware) any two passes differ by its rounding
    compute = compute_for(device, accel, "fp32")

    task = get_task("text_classification")
    pairs = label_swap_pairs(task, examples(task, n_pairs, "train"))
    # the task check answers prompts by generation, which precomputing does not touch: left out
    settings = load_config(overrides={"preset": "full", "dpo": {"eval_steps": 4, "task_check_prompts": 0,
                                                                "precompute_reference": mode}}).dpo
    model, tokenizer, _ = load_model(model_ref, compute.device, compute.weights)
    start = time.perf_counter()
    summary, _ = train_dpo(model, tokenizer, model_ref, Path(model_ref), "lora", task, pairs, settings, out, compute, 0)
    seconds = time.perf_counter() - start
    logged = [v for h in summary["log_history"] for k, v in sorted(h.items()) if k.startswith(LOGGED)]
    return {"mode": mode, "dpo_s": seconds, "steps": summary["steps"], "pairs": summary["pairs"],
            "heldout_pairs": summary["heldout_pairs"], "evaluations": len(summary["heldout"]),
            "precomputed": summary["reference_precomputed"], "accel": summary["accel"], "logged": logged}


def run(args, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", mode, "--model", args.model, "--pairs", str(args.pairs),
               "--device", args.device, "--accel", args.accel, "--out", tmp]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE.parent)
        return json.loads(proc.stdout.strip().splitlines()[-1])


def same(a: list[float], b: list[float], rel: float = 1e-3, atol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= atol + rel * abs(y) for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--pairs", type=int, default=40, help="label-swap pairs (15%% of them held out)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting, alternating")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--accel", choices=["auto", "off"], default="auto", help="medtune's speed switch")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.pairs, args.child, args.device, args.accel, args.out)))
        return
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            runs[mode].append(run(args, mode))
            last = runs[mode][-1]
            print(f"{mode:>6}: {last['dpo_s']:.1f} s ({last['steps']} steps, {last['evaluations']} evaluations, "
                  f"reference {'precomputed' if last['precomputed'] else 'forward each time'})", file=sys.stderr)
    never, always = (statistics.mean(r["dpo_s"] for r in runs[m]) for m in MODES)
    first = runs["always"][0]
    result = {"dpo_reference_speedup": never / always, "never_s": [r["dpo_s"] for r in runs["never"]],
              "always_s": [r["dpo_s"] for r in runs["always"]], "steps": first["steps"], "pairs": first["pairs"],
              "heldout_pairs": first["heldout_pairs"], "evaluations": first["evaluations"],
              "precomputed": {mode: runs[mode][0]["precomputed"] for mode in MODES},
              "accel": args.accel, "accel_pieces": first["accel"],
              "same_logged_metrics": all(same(a["logged"], n["logged"]) for a, n in zip(runs["always"], runs["never"]))}
    print(json.dumps(result))


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
