"""Build the bundled synthetic datasets: src/medtune/data/bundled/<task>/{train,test}.jsonl.

Every task generates its own examples (no real patient data). Seeding is fixed
per task, so running this script again reproduces the files byte for byte.
Inputs are deduplicated within and across splits (case and whitespace
insensitive), so no test input is ever seen in training.

    python scripts/make_datasets.py [--seed 20261122] [--train 1000] [--test 200] [--tasks triage,...]

Generators that accept ``split`` (clinical reasoning, triage) write the test
split from phrasings held out of training, so memorising training wording
(which a TF-IDF classifier does perfectly) does not solve the test set.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
from collections import Counter
from pathlib import Path

from medtune.tasks import TASKS
from medtune.tasks.common import Task

SEED = 20261122
OUT = Path(__file__).resolve().parents[1] / "src" / "medtune" / "data" / "bundled"
ID_PREFIX = {"text_classification": "tc", "numeric_classification": "nc", "clinical_reasoning": "cr",
             "summarization": "su", "triage": "tr"}


def input_key(example: dict) -> str:
    return " ".join(example["input"].lower().split())


def build_split(task: Task, rng: random.Random, n: int, seen: set[str], split: str = "train") -> list[dict]:
    """n examples whose inputs are not in ``seen`` (which is updated)."""
    rows: list[dict] = []
    # generators that take a split write test examples from phrasings held out of training
    by_split = "split" in inspect.signature(task.generate_examples).parameters
    for _ in range(50):  # each round tops up what duplicates removed
        batch = (task.generate_examples(rng, n - len(rows), split=split) if by_split
                 else task.generate_examples(rng, n - len(rows)))
        for example in batch:
            key = input_key(example)
            if key not in seen:
                seen.add(key)
                rows.append(example)
        if len(rows) == n:
            return rows
    raise RuntimeError(f"{task.name}: could not generate {n} distinct inputs; the generator repeats itself")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def balance(task: Task, rows: list[dict]) -> str:
    if task.name == "triage":
        return (f"personnel {dict(Counter(r['personnel'] for r in rows))}, "
                f"urgency {dict(Counter(r['urgency'] for r in rows))}")
    counts = Counter(r["target"] for r in rows)
    if task.labels:
        return str(dict(counts))
    return f"{len(counts)} distinct targets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated tasks to (re)write; the others' files are left untouched")
    args = parser.parse_args()

    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        task = TASKS[name]
        rng = random.Random(f"{name}-{args.seed}")
        seen: set[str] = set()
        for split, n in (("train", args.train), ("test", args.test)):
            rows = build_split(task, rng, n, seen, split)
            rows = [{"id": f"{ID_PREFIX[name]}-{split}-{i:04d}", **row} for i, row in enumerate(rows, start=1)]
            path = OUT / name / f"{split}.jsonl"
            write_jsonl(path, rows)
            size = path.stat().st_size / 1024
            print(f"{name:24s} {split:5s} {len(rows):5d} rows {size:7.0f} KiB  {balance(task, rows)}")


if __name__ == "__main__":
    main()
