"""SFT with LoRA vs QLoRA (4-bit NF4 base weights) on the embedded model: memory and time, side by side.

    python benchmarks/qlora.py [--model embedded|PATH] [--steps 6] [--batch 4] [--device cpu|cuda] [--accel off]

Each method trains in its own process on the same text_classification examples
with the same adapters; prints peak memory (RSS on CPU, allocated on GPU), the
memory after loading, seconds per step, and QLoRA / LoRA ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from run_all import compute_for, examples, peak_mb, settings

HERE = Path(__file__).parent


def child(method: str, model_ref: str, steps: int, batch: int, device: str, accel: str, out: Path) -> dict:
    from medtune.models import load_model, load_quantized
    from medtune.tasks import get_task
    from medtune.train.sft import train_sft

    task = get_task("text_classification")
    compute = compute_for(device, accel)
    if method == "qlora":  # 4-bit weights computing in the run's format, as the study loads them
        model, tokenizer, _ = load_quantized(model_ref, compute.device, out / "scratch", compute.dtype)
    else:
        model, tokenizer, _ = load_model(model_ref, compute.device, compute.weights)
    loaded = peak_mb(device)
    summary, _ = train_sft(model, tokenizer, model_ref, task, examples(task, steps * batch, "train"),
                           settings("sft", method=method, max_steps=steps, batch_size=batch), out, compute, 0)
    return {"method": method, "loaded_mb": loaded, "peak_mb": peak_mb(device), "accel": summary["accel"],
            "s_per_step": summary["train_runtime_s"] / steps, "final_loss": summary["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--accel", choices=["auto", "off"], default="auto", help="medtune's speed switch")
    parser.add_argument("--child", choices=["lora", "qlora"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.steps, args.batch, args.device, args.accel, args.out)))
        return
    results = {}
    os.environ["MEDTUNE_QLORA_ON_CPU"] = "1"  # medtune refuses QLoRA on CPU because of what this measures
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("lora", "qlora"):
            cmd = [sys.executable, str(HERE / "qlora.py"), "--child", method, "--model", args.model,
                   "--steps", str(args.steps),
                   "--batch", str(args.batch), "--device", args.device, "--accel", args.accel,
                   "--out", str(Path(tmp) / method)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    lora, qlora = results["lora"], results["qlora"]
    for r in (lora, qlora):
        print(f"{r['method']:6s} loaded {r['loaded_mb']:7.0f} MB  peak {r['peak_mb']:7.0f} MB  "
              f"{r['s_per_step']:6.2f} s/step  final loss {r['final_loss']:.3f}")
    print(f"QLoRA / LoRA: peak memory {qlora['peak_mb'] / lora['peak_mb']:.2f}, "
          f"memory after loading {qlora['loaded_mb'] / lora['loaded_mb']:.2f}, time per step "
          f"{qlora['s_per_step'] / lora['s_per_step']:.2f}")


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
