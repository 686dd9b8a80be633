"""The study plan's time model (src/medtune/plan.py) against a finished run: each stage's planned seconds
beside the seconds the run recorded, and the cost per unit a least-squares fit of the run would give.

    python benchmarks/plan_check.py runs/demo [runs/other ...]

Run it on runs made on the machine you calibrate for, with nothing else running; the planned seconds are
scaled to this machine's matmul rate as `medtune study --dry-run` scales them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from medtune.config import load_config
from medtune.data import task_data
from medtune.io import read_json
from medtune.models import load_tokenizer, resolve_base, resolve_compute
from medtune.plan import COST, REFERENCE_GFLOPS, UNITS, matmul_gflops, task_plan
from medtune.tasks import get_task


def measured(run: Path, task: str) -> dict[str, float]:
    """The seconds the run recorded per stage of the plan."""
    folder = run / task
    sft, dpo = read_json(folder / "sft" / "train_log.json"), read_json(folder / "dpo" / "train_log.json")
    return {"eval base": read_json(folder / "base" / "metrics.json")["elapsed_s"],
            "SFT": sft["train_runtime_s"], "pairs": read_json(folder / "pairs" / "stats.json")["elapsed_s"],
            "DPO": dpo["train_runtime_s"], "eval SFT + DPO": read_json(folder / "dpo" / "metrics.json")["elapsed_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows, targets = [], []
    for run in args.runs:
        cfg = load_config(run / "config.yaml")
        compute = resolve_compute(cfg.device, cfg.precision, cfg.accel)
        scale = REFERENCE_GFLOPS / matmul_gflops(compute.dtype)
        tokenizer = load_tokenizer(resolve_base(cfg.model))
        print(f"{run}: this machine's matmul scale {scale:.2f}")
        for name in cfg.tasks:
            task, task_cfg = get_task(name), cfg.for_task(get_task(name).name)
            data = task_data(task_cfg, task, tokenizer, task_cfg.sft.max_length)
            if "shifted" not in read_json(run / task.name / "base" / "metrics.json"):
                data["shifted"] = []  # evaluated before the shifted split existed
            seen = measured(run, task.name)
            for step in [s for s in task_plan(task_cfg, task, data, tokenizer) if s.stage in seen]:
                print(f"  {task.name:24s} {step.stage:15s} planned {step.seconds * scale:6.1f} s  "
                      f"measured {seen[step.stage]:6.1f} s")
                rows.append([step.units.get(name, 0.0) for name in UNITS])
                targets.append(seen[step.stage] / scale)  # in reference-machine seconds
    fit, _ = nnls(np.array(rows), np.array(targets))
    names = list(UNITS)
    print("least-squares costs (reference machine):",
          ", ".join(f"{n} {v:.3g} (now {COST[n]:.3g})" for n, v in zip(names, fit)))
    print(f"planned stages {sum(np.array(rows) @ np.array([COST[n] for n in names])):.0f} s, measured "
          f"{sum(targets):.0f} s (reference-machine seconds; the plan adds {COST['fixed']:.0f} s a task for loads, "
          "checks and set-up, which no stage records)")


if __name__ == "__main__":
    main()
