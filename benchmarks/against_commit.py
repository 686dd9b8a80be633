"""The benchmarks of an earlier commit and of this one, side by side on one machine.

    .venv/bin/python benchmarks/against_commit.py 0c174f5                 # run AM's commit: p1-p4
    .venv/bin/python benchmarks/against_commit.py REV --only p2,p4

A figure from another day's machine says little about the code: the same kind of CPU ran the same
commit twice as slowly on a busier host. Here each side runs ``benchmarks/run_all.py`` from its own git
worktree (REV, and HEAD as committed), one benchmark at a time, alternating, so both meet the same
machine. The presets change between commits (that is what a preset is for), so p1 also runs HEAD's study
at REV's quick sizes and compares what both did: training seconds, and evaluation seconds per answer.

Prints the table and stores it in benchmarks/results.json under "against_commit" (a run of the same two
commits with --only replaces the figures it measured and keeps the others).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_all import GOALS, RESULTS, ROOT

BENCHMARKS = ("p2", "p3", "p4", "p1")
# what each benchmark reports and which way is better
FIGURES = {"p2": ["p2_eval_speedup", "p2_medtune_s"], "p3": ["p3_dpo_time_ratio", "p3_dpo_mem_ratio"],
           "p4": ["p4_vs_trl_speedup", "p4_medtune_train_s"], "p1": ["p1_quick_study_s"]}
LOWER_IS_BETTER = {"p2_medtune_s", "p4_medtune_train_s", "p1_quick_study_s", "p1_train_s",
                   "p1_eval_s_per_answer"} | {key for key, (op, _) in GOALS.items() if op == "<="}
# a workload that changed between the commits makes a figure incomparable: these are printed beside it
WORKLOAD = {"p2": ["p2_examples"], "p3": [], "p4": ["p4_task", "p4_steps"], "p1": []}
STAGES = ("base", "sft", "dpo")
COUNTS = {"p1_answers"}  # listed, not judged


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), rev], check=True,
                   capture_output=True)
    return into


def side_env(tree: Path) -> dict:
    """This environment's libraries with the worktree's own medtune package first."""
    return {**os.environ, "PYTHONPATH": str(tree / "src")}


def run_side(tree: Path, benchmark: str, log: Path) -> dict:
    """One benchmark of one commit: its run_all.py, its own package, this environment's libraries."""
    with log.open("a") as out:
        subprocess.run([sys.executable, "benchmarks/run_all.py", "--only", benchmark], cwd=tree, env=side_env(tree),
                       stdout=out, stderr=subprocess.STDOUT, check=True)
    return json.loads((tree / "benchmarks" / "results.json").read_text())


def quick_preset(tree: Path) -> dict:
    code = "import json; from medtune.config import PRESETS; print(json.dumps(PRESETS['quick']))"
    return json.loads(subprocess.run([sys.executable, "-c", code], env=side_env(tree), capture_output=True, text=True,
                                     check=True).stdout)


def old_sizes_config(old: dict, new: dict) -> dict:
    """The old quick preset as a config for the new commit: its settings, and every per-task setting the
    new preset adds set back to the old value (a config is merged over the preset, per_task too)."""
    config = {key: value for key, value in old.items() if key != "per_task"}
    per_task = json.loads(json.dumps(old.get("per_task", {})))
    for task, sections in new.get("per_task", {}).items():
        for section, keys in sections.items():
            for key in keys:
                old_value = old.get("per_task", {}).get(task, {}).get(section, {}).get(
                    key, old.get(section, {}).get(key))
                if old_value is None:
                    raise SystemExit(f"the new quick preset sets {task}.{section}.{key}, which the old one leaves "
                                     "to a default: p1 at the old sizes cannot be written as a config")
                per_task.setdefault(task, {}).setdefault(section, {})[key] = old_value
    return {**config, "per_task": per_task}


def study_at(tree: Path, config: dict, run_dir: Path, log: Path) -> float:
    config_file = run_dir.parent / f"{run_dir.name}.yaml"
    config_file.write_text(json.dumps(config) + "\n")  # JSON is YAML
    start = time.perf_counter()
    with log.open("a") as out:
        subprocess.run([sys.executable, "-m", "medtune", "study", "--config", str(config_file), "--preset", "quick",
                        "--run-dir", str(run_dir), "--restart"], cwd=tree, env=side_env(tree), stdout=out,
                       stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def work_done(run_dir: Path) -> dict:
    """A finished study's training seconds, and its evaluation seconds per answer written (SFT and DPO are
    evaluated together: their stages record the same elapsed time)."""
    train_s = eval_s = answers = 0.0
    for task_dir in sorted(path for path in run_dir.iterdir() if (path / "base" / "metrics.json").is_file()):
        timed = set()
        for stage in STAGES:
            stage_dir = task_dir / stage
            elapsed = json.loads((stage_dir / "metrics.json").read_text())["elapsed_s"]
            if elapsed not in timed:
                eval_s += elapsed
                timed.add(elapsed)
            answers += sum(len(path.read_text().splitlines()) for path in stage_dir.glob("predictions*.jsonl"))
            if (stage_dir / "train_log.json").is_file():
                train_s += json.loads((stage_dir / "train_log.json").read_text())["train_runtime_s"]
    return {"p1_train_s": train_s, "p1_eval_s_per_answer": eval_s / answers, "p1_answers": int(answers)}


def compare(name: str, old, new) -> dict:
    row = {"old": old, "new": new}
    if name in COUNTS:
        return row
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and old and new:
        # positive: the new commit is worse by this share
        row["worse_by"] = new / old - 1 if name in LOWER_IS_BETTER else old / new - 1
    return row


def shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit (e.g. 0c174f5, run AM's)")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    args = parser.parse_args()
    which = [name for name in BENCHMARKS if name in args.only.split(",")]
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True,
                         text=True).stdout.strip()
    if not rev or not which:
        parser.error(f"no commit {args.rev!r} here, or no benchmark in --only (they are {','.join(BENCHMARKS)})")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="medtune-against-") as scratch:
        scratch = Path(scratch)
        old_tree, new_tree = worktree(rev, scratch / "old"), worktree(head, scratch / "new")
        log = scratch / "log.txt"
        try:
            for benchmark in which:
                print(f"{benchmark}: {rev}, then {head}", flush=True)
                old, new = run_side(old_tree, benchmark, log), run_side(new_tree, benchmark, log)
                for key in WORKLOAD[benchmark]:
                    if old.get(key) != new.get(key):
                        print(f"  the workload changed: {key} {old.get(key)!r} -> {new.get(key)!r}")
                for key in FIGURES[benchmark]:
                    rows[key] = compare(key, old.get(key), new.get(key))
                if benchmark == "p1":
                    print(f"p1: {head} at {rev}'s quick sizes", flush=True)
                    same = scratch / "new_at_old_sizes"
                    config = old_sizes_config(quick_preset(old_tree), quick_preset(new_tree))
                    rows["p1_quick_study_s_at_old_sizes"] = compare(
                        "p1_quick_study_s", old.get("p1_quick_study_s"), study_at(new_tree, config, same, log))
                    old_work = work_done(old_tree / old["p1_run_dir"])
                    new_work = work_done(same)
                    for key in ("p1_train_s", "p1_eval_s_per_answer", "p1_answers"):
                        rows[key] = compare(key, old_work[key], new_work[key])
        except subprocess.CalledProcessError:
            print(log.read_text()[-4000:])
            raise
        finally:
            for tree in (old_tree, new_tree):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    print(f"\n{'figure':32}{rev:>12}{head:>12}   new worse by")
    for key, row in rows.items():
        worse = f"{row['worse_by']:+.1%}" if "worse_by" in row else ""
        print(f"{key:32}{shown(row['old']):>12}{shown(row['new']):>12}   {worse}")
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    earlier = saved.get("against_commit", {})
    if (earlier.get("old"), earlier.get("new")) == (rev, head):  # the same two commits: keep what --only left out
        rows = {**earlier["figures"], **rows}
    saved["against_commit"] = {"measured": datetime.date.today().isoformat(), "old": rev, "new": head,
                               "figures": rows}
    RESULTS.write_text(json.dumps(saved, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
