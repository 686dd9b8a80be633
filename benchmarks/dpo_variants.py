"""DPO loss variants x tasks, measured on a finished study's SFT models and pairs.

    python benchmarks/dpo_variants.py runs/demo [--losses sigmoid,ipo,...] [--tasks ...] [--device cuda] [--accel off] [--no-stop]

For every loss variant, a run directory ``RUN/variants/<loss>/`` links the
study's ``sft/`` and ``pairs/`` folders (same SFT model, same pairs, same test
items), trains DPO with that loss and evaluates it; the table compares each
variant's primary metric with SFT on the same items (paired test, raw p).
Writes ``RUN/variants/table.json`` and prints a Markdown table (the loss-variant tables of dev/LOG.md).
Resumable like a study: a finished variant is not retrained. It computes as the study did (its device,
precision and speed switch) unless --device or --accel says otherwise.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from medtune.config import DPO_LOSSES, load_config
from medtune.evaluate.stats import compare
from medtune.io import read_jsonl, write_json
from medtune.models import resolve_compute
from medtune.study import Run, dpo_stage, evaluate_stage, stage_dir
from medtune.tasks import get_task

EXTRA = {"robust": {"label_smoothing": 0.1}}


def variant_config(run: Path, loss: str, tasks: list[str], stop: bool = True, accel: str | None = None):
    dpo = {"loss_type": loss, **EXTRA.get(loss, {}), **({} if stop else {"stop_on_collapse": False})}
    return load_config(run / "config.yaml", {"run_dir": str(run / "variants" / loss), "tasks": tasks, "dpo": dpo,
                                             "accel": accel})


def link_stages(run: Path, cfg, task) -> None:
    for stage in ("sft", "pairs"):
        link = stage_dir(cfg, task, stage)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(os.path.relpath(run / task.name / stage, link.parent), link)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--losses", default=",".join(DPO_LOSSES))
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: the study's")
    parser.add_argument("--accel", choices=["auto", "off"], default=None, help="medtune's speed switch; default: "
                        "the study's")
    parser.add_argument("--no-stop", action="store_true", help="train every variant to the end (the collapse guard "
                        "records but does not stop or restore), to see what each loss does")
    args = parser.parse_args()
    base_cfg = load_config(args.run / "config.yaml", {"accel": args.accel})
    compute = resolve_compute(args.device or base_cfg.device, base_cfg.precision, base_cfg.accel)
    tasks = args.tasks.split(",") if args.tasks else base_cfg.tasks
    table = []
    for loss in args.losses.split(","):
        cfg = variant_config(args.run, loss, tasks, stop=not args.no_stop, accel=args.accel)
        run = Run(cfg, compute)
        for name in tasks:
            task = get_task(name)
            link_stages(args.run, cfg, task)
            start = time.perf_counter()
            log = dpo_stage(run, task)
            evaluate_stage(run, task, "dpo")
            run.release()  # the next task starts from its own SFT model
            sft_rows = read_jsonl(args.run / name / "sft" / "predictions.jsonl")
            dpo_rows = read_jsonl(stage_dir(cfg, task, "dpo") / "predictions.jsonl")
            for metric_name in task.primary_metrics:
                metric = task.metric(metric_name)
                c = compare(metric, dpo_rows, sft_rows, cfg.stats.bootstrap_samples, cfg.seed)
                held = log["heldout"][-1] if log.get("heldout") else {}
                table.append({"loss": loss, "task": name, "metric": metric_name,
                              "sft": metric.compute(sft_rows), "dpo": metric.compute(dpo_rows),
                              "difference": c["difference"], "p_value": c["p_value"], "test": c["test"],
                              "heldout_reward_accuracy": held.get("rewards/accuracies"),
                              "heldout_margin": held.get("rewards/margins"),
                              "chosen_logp_change_per_token": held.get("chosen_logp_change_per_token"),
                              "heldout_task_accuracy": held.get("task_accuracy"),
                              "task_accuracy_start": log.get("task_check", {}).get("accuracy_start"),
                              "collapse": log["collapse"]["fired"], "collapse_reason": log["collapse"].get("reason"),
                              "restored": log["collapse"].get("restored") is not None,
                              "seconds": time.perf_counter() - start})
            write_json(args.run / "variants" / "table.json", table)
    print(markdown(table))


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def markdown(table: list[dict]) -> str:
    lines = ["| task | metric | SFT | " + " | ".join(sorted({r["loss"] for r in table}, key=list(DPO_LOSSES).index)) + " |"]
    losses = sorted({r["loss"] for r in table}, key=list(DPO_LOSSES).index)
    lines.append("|---|---|---|" + "---|" * len(losses))
    for task, metric in dict.fromkeys((r["task"], r["metric"]) for r in table):
        cells = {r["loss"]: r for r in table if r["task"] == task and r["metric"] == metric}
        sft = next(iter(cells.values()))["sft"]
        row = [f"{cells[l]['dpo']:.3f} ({cells[l]['difference']:+.3f}, {p_text(cells[l]['p_value'])})"
               + (" collapse" if cells[l]["collapse"] else "") if l in cells else "–" for l in losses]
        lines.append(f"| {task} | {metric} | {sft:.3f} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from run_all import reported_failures

    with reported_failures():
        main()
