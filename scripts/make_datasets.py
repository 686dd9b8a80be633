"""Build the bundled synthetic datasets: src/medtune/data/bundled/<task>/{train,test,test_shifted}.jsonl.

Each task's examples come from its generator in ``scripts/synthetic/<task>.py`` (no real
patient data). Seeding is fixed per task, so running this script again reproduces the files
byte for byte. Inputs are deduplicated within and across splits (case and whitespace
insensitive), so no test input is ever seen in training.

    python scripts/make_datasets.py [--seed 20261122] [--train 1000] [--test 200] [--shifted 200]
                                    [--tasks triage,...]

The clinical reasoning and triage generators write the test split from phrasings held out of
training, so memorising training wording (which a TF-IDF classifier does perfectly) does not
solve the test set.

``test_shifted.jsonl`` is a third split written with ``split="shifted"``: other note layouts,
phrasings, vocabulary and patient voices than train and test (each generator keeps separate pools
for it), with the same label rules, to measure whether what a model learned survives other
wording. It is drawn after train and test from the same rng and deduplicated against both, so
adding it left train.jsonl and test.jsonl byte for byte as they were.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from types import ModuleType

from medtune.data.importer import label_fields
from medtune.tasks import TASKS
from medtune.tasks.common import Task
from synthetic import GENERATORS  # scripts/synthetic/: Python puts this script's folder on sys.path

SEED = 20261122
FILE_NAMES = {"train": "train", "test": "test", "shifted": "test_shifted"}  # split -> file stem
OUT = Path(__file__).resolve().parents[1] / "src" / "medtune" / "data" / "bundled"


def input_key(example: dict) -> str:
    return " ".join(example["input"].lower().split())


def build_split(name: str, generator: ModuleType, rng: random.Random, n: int, seen: set[str],
                split: str = "train") -> list[dict]:
    """n examples whose inputs are not in ``seen`` (which is updated)."""
    rows: list[dict] = []
    for _ in range(50):  # each round tops up what duplicates removed
        for example in generator.generate_examples(rng, n - len(rows), split=split):
            key = input_key(example)
            if key not in seen:
                seen.add(key)
                rows.append(example)
        if len(rows) == n:
            return rows
    raise RuntimeError(f"{name}: could not generate {n} distinct inputs; the generator repeats itself")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def balance(task: Task, rows: list[dict]) -> str:
    """Label counts per label field, or the number of distinct targets for open-answer tasks."""
    fields = label_fields(task)
    if fields:
        return ", ".join(f"{field} {dict(Counter(r[field] for r in rows))}" for field in fields)
    return f"{len(Counter(r['target'] for r in rows))} distinct targets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--shifted", type=int, default=200,
                        help="rows in test_shifted.jsonl (other wording than train); 0 leaves it untouched")
    parser.add_argument("--tasks", default=",".join(GENERATORS),
                        help="comma-separated tasks to (re)write; the others' files are left untouched")
    args = parser.parse_args()

    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        task, generator = TASKS[name], GENERATORS[name]
        rng = random.Random(f"{name}-{args.seed}")
        seen: set[str] = set()
        # shifted comes last, so the rng draws of train and test (and their files) stay as they were
        for split, n in (("train", args.train), ("test", args.test), ("shifted", args.shifted)):
            if split == "shifted" and n == 0:  # --shifted 0: leave test_shifted.jsonl as it is
                continue
            rows = build_split(name, generator, rng, n, seen, split)
            rows = [{"id": f"{generator.ID_PREFIX}-{split}-{i:04d}", **row} for i, row in enumerate(rows, start=1)]
            path = OUT / name / f"{FILE_NAMES[split]}.jsonl"
            write_jsonl(path, rows)
            size = path.stat().st_size / 1024
            print(f"{name:24s} {split:7s} {len(rows):5d} rows {size:7.0f} KiB  {balance(task, rows)}")


if __name__ == "__main__":
    main()
