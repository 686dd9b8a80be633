"""What each speed piece (``accel``) buys: the quick study with all of them, with none, and without each one.

    python benchmarks/accel_pieces.py                     # the five-task quick study on the embedded model
    python benchmarks/accel_pieces.py --tasks triage --model PATH --repeat 2

Every variant runs the same ``medtune study`` in a child process, one after another in this one run, so the
ratios compare like with like: the study's wall time and the child's peak memory (RSS) without a piece,
over the same with every piece ``auto`` turns on here. A piece that buys less than 5% of either is one the
project deletes (docs/performance.md). Each variant's primary metrics and verdicts are printed beside its
time, so a piece that changed an answer beyond the number format's rounding shows too. The variants run in
an order that alternates the reference run with the others when ``--repeat`` is above 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "accel_pieces"


def pieces_here(device: str, precision: str) -> list[str]:
    """The pieces ``auto`` turns on for this machine and these library versions."""
    from medtune.accel import choose
    from medtune.models import compute_format, resolve_device

    resolved = resolve_device(device)
    return sorted(choose("auto", resolved, compute_format(resolved, precision)))


def run_variant(name: str, accel, args) -> dict:
    """One quick study in a child process; its wall time, peak RSS and what it concluded."""
    run_dir = OUT / name
    config = OUT / f"{name}.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    settings = {"preset": "quick", "model": args.model, "device": args.device, "precision": args.precision,
                "accel": accel, "run_dir": str(run_dir), "tasks": args.tasks.split(",") if args.tasks else None}
    config.write_text(yaml.safe_dump({k: v for k, v in settings.items() if v is not None}))
    cmd = [sys.executable, "-m", "medtune", "study", "--config", str(config), "--restart"]
    env = {**os.environ, "MEDTUNE_NO_PROGRESS": "1"}
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory, not the largest child's
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise SystemExit(f"variant {name} failed (exit {child.returncode}):\n{err.read()[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    return {"variant": name, "accel": accel, "wall_s": wall, "study_s": results.get("elapsed_s"),
            "peak_rss_mb": usage.ru_maxrss / 1024, "answers": answers(results)}


def answers(results: dict) -> dict:
    """Each task's primary metrics per stage, rounded to the third decimal, and its verdict."""
    out = {}
    for name, task in results["tasks"].items():
        metrics = {f"{stage}/{m}": round(task["stages"][stage]["metrics"][m]["value"], 3)
                   for stage in ("base", "sft", "dpo") for m in task["primary_metrics"]
                   if m in task["stages"].get(stage, {}).get("metrics", {})}
        out[name] = {"metrics": metrics, "verdict": task["verdict"]["verdict"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--tasks", default=None, help="comma-separated task ids (default: all five)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant")
    parser.add_argument("--only", default=None, help="comma-separated pieces to measure (default: all here); "
                        "a+b measures the study without a and b together")
    parser.add_argument("--json", type=Path, default=OUT / "results.json")
    args = parser.parse_args()
    here = pieces_here(args.device, args.precision)
    measured = args.only.split(",") if args.only else here
    unknown = [p for group in measured for p in group.split("+") if p not in here]
    if unknown:
        raise SystemExit(f"--only: {', '.join(unknown)} not turned on by auto here (here: {', '.join(here)})")
    variants = [("all", here)] + [(f"without_{group}", [q for q in here if q not in group.split("+")])
                                  for group in measured]
    if not args.only:
        variants.append(("off", "off"))
    rows = []
    for k in range(args.repeat):
        for name, accel in variants:
            # the reference between the others, so that a slow stretch of the machine does not favour one side
            for label, pieces in ([(name, accel)] if name == "all" or k == 0 else [("all", here), (name, accel)]):
                row = run_variant(label, pieces, args)
                rows.append(row)
                print(f"{label:32s} {row['wall_s']:8.1f} s", file=sys.stderr, flush=True)
    report = summarize(rows, here)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"pieces_here": here, "rows": rows, "summary": report}, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def summarize(rows: list[dict], here: list[str]) -> dict:
    """Per variant: the median wall time, the ratio to all pieces on (> 1: the piece saves time), and whether
    its answers are those of all pieces on."""
    def median(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    reference = [r for r in rows if r["variant"] == "all"]
    base_wall = median(r["wall_s"] for r in reference)
    base_answers = reference[0]["answers"]
    out = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        wall = median(r["wall_s"] for r in mine)
        out[name] = {"runs": len(mine), "wall_s": round(wall, 1), "wall_ratio_to_all": round(wall / base_wall, 3),
                     "peak_rss_mb": median(r["peak_rss_mb"] for r in mine),
                     "same_verdicts": all(r["answers"][t]["verdict"] == base_answers[t]["verdict"]
                                          for r in mine for t in base_answers),
                     "largest_metric_difference": max(abs(v - base_answers[t]["metrics"][k])
                                                      for r in mine for t in base_answers
                                                      for k, v in r["answers"][t]["metrics"].items())}
    return out


if __name__ == "__main__":
    main()
