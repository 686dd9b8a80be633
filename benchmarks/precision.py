"""The quick study in fp32 and in bf16 (``precision``), side by side: time, answers and results.

    .venv/bin/python benchmarks/precision.py [--tasks text_classification,triage] [--repeats 1] [--model PATH] [--accel off]

Each run is `medtune study --preset quick` on the given tasks in its own process, the two formats
alternating. Prints each run's wall seconds, the fp32 / bf16 ratio of the means, and per task: each
stage's primary metric in both formats, the share of answers that are the same in both, and how many
DPO answers differ from the SFT model's (DPO's two quick steps are the smallest change the study
measures, the first a lossy number format would hide). On a CPU without bf16 in hardware, bf16 is
emulated: the run says so and measures it anyway.
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

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("fp32", "bf16")


def study(model: str, tasks: list[str], precision: str, accel: str, run_dir: Path) -> float:
    config = run_dir.parent / f"{run_dir.name}.yaml"
    config.write_text(json.dumps({"model": model, "preset": "quick", "tasks": tasks, "precision": precision,
                                  "accel": accel, "run_dir": str(run_dir)}))  # JSON is YAML
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medtune", "study", "--config", str(config), "--restart"], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def answers(run_dir: Path, task: str, stage: str) -> list[str]:
    lines = (run_dir / task / stage / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line)["output"] for line in lines]


def task_figures(runs: dict[str, Path], task: str) -> dict:
    out = {}
    for fmt, run_dir in runs.items():
        result = json.loads((run_dir / "results.json").read_text())["tasks"][task]
        metric = result["primary_metrics"][0]
        out[fmt] = {stage: round(result["stages"][stage]["metrics"][metric]["value"], 3) for stage in ("base", "sft", "dpo")}
        out[fmt]["metric"] = metric
        out[fmt]["precision"] = result["stages"]["base"]["precision"]  # what the run recorded
        out[fmt]["dpo_answers_changed"] = sum(a != b for a, b in zip(answers(run_dir, task, "sft"),
                                                                      answers(run_dir, task, "dpo")))
    base = [answers(runs[fmt], task, "base") for fmt in FORMATS]
    out["base_answers_same"] = sum(a == b for a, b in zip(*base)) / len(base[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--tasks", default="text_classification")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each format, alternating")
    parser.add_argument("--accel", choices=["auto", "off"], default="auto", help="medtune's speed switch, both formats")
    args = parser.parse_args()
    from medtune.models import cpu_has_native_bf16

    tasks = args.tasks.split(",")
    seconds: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {fmt: Path(tmp) / f"run_{fmt}" for fmt in FORMATS}
        for _ in range(args.repeats):
            for fmt in FORMATS:
                seconds[fmt].append(study(args.model, tasks, fmt, args.accel, runs[fmt]))
                print(f"{fmt}: {seconds[fmt][-1]:.1f} s", file=sys.stderr)
        result = {"tasks": tasks, "cpu_native_bf16": cpu_has_native_bf16(), "accel": args.accel, "seconds": seconds,
                  "fp32_over_bf16": statistics.mean(seconds["fp32"]) / statistics.mean(seconds["bf16"]),
                  "per_task": {task: task_figures(runs, task) for task in tasks}}
    print(json.dumps(result))


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
