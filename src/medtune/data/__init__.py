"""Task data: the bundled datasets or a user's own files, checked by the doctor before use."""

from __future__ import annotations

import random
from pathlib import Path

from ..errors import MedtuneError
from ..tasks.common import Task
from .doctor import Diagnosis, check_task_file
from .importer import stratified_split, strata_key

BUNDLED = Path(__file__).parent / "bundled"


def bundled_path(task: Task, split: str) -> Path:
    return BUNDLED / task.name / f"{split}.jsonl"


def raise_on_problems(diagnoses: list[Diagnosis], strict: bool, stopped: str = "nothing was trained") -> None:
    """Errors (and, with strict, warnings) stop the run; ``stopped`` says what has not happened."""
    problems = [d for d in diagnoses if d.errors or (strict and d.warnings)]
    if problems:
        lines = [line for d in problems for line in d.lines()]
        hint = "" if any(d.errors for d in problems) else "\n(warnings count as errors because data.strict is on)"
        raise MedtuneError(f"the data doctor found problems; {stopped}:\n  " + "\n  ".join(lines) + hint)


def task_data(cfg, task: Task, tokenizer=None, max_length: int | None = None) -> dict:
    """Train and test examples for a task, checked; plus a record of where they came from.

    Returns ``{"train", "test", "shifted", "info"}``. ``shifted`` is the test split written with other wording
    than train, or [] where the task has none. Each is already cut to ``data.train_limit`` /
    ``data.test_limit`` by a seeded random subset.
    """
    source = cfg.data.tasks.get(task.name) or task.data  # the config's files, else the spec's
    if source is None:
        if not bundled_path(task, "train").is_file():
            raise MedtuneError(f"task {task.name} has no data: give its files in the spec's data section or in "
                               f"the config's data.tasks.{task.name}")
        train_path, test_path, mapping = bundled_path(task, "train"), bundled_path(task, "test"), {}
        shifted_path = bundled_path(task, "test_shifted") if bundled_path(task, "test_shifted").is_file() else None
    else:
        train_path, test_path, mapping = Path(source.train), source.test and Path(source.test), source.map
        shifted_path = source.test_shifted and Path(source.test_shifted)
    train_diag = check_task_file(train_path, task, mapping, tokenizer, max_length)
    diagnoses = [train_diag]
    tests = {"test": test_path, "shifted": shifted_path}
    checked = {split: check_task_file(path, task, mapping, tokenizer, max_length, other=train_diag.records,
                                      other_name=str(train_path))
               for split, path in tests.items() if path is not None}
    raise_on_problems(diagnoses + list(checked.values()), cfg.data.strict)
    train = train_diag.records
    split = None
    if test_path is None:
        train, test = stratified_split(train, source.test_fraction, cfg.seed, strata_key(task))
        split = {"test_fraction": source.test_fraction, "seed": cfg.seed, "stratified_by": list(task.labels or {})}
    else:
        test = checked["test"].records
    shifted = checked["shifted"].records if "shifted" in checked else []
    info = {"train_file": str(train_path), "test_file": str(test_path) if test_path else None,
            "test_shifted_file": str(shifted_path) if shifted_path else None,
            "bundled": source is None, "split": split, "map": mapping,
            "train_rows": len(train), "test_rows": len(test), "test_shifted_rows": len(shifted),
            "warnings": [line for d in diagnoses + list(checked.values()) for line in d.lines()]}
    train = subset(train, cfg.data.train_limit, cfg.seed, task, "train")
    test = subset(test, cfg.data.test_limit, cfg.seed, task, "test")
    shifted = subset(shifted, cfg.data.test_limit, cfg.seed, task, "shifted")
    info.update(train_used=len(train), test_used=len(test), test_shifted_used=len(shifted))
    return {"train": train, "test": test, "shifted": shifted, "info": info}


def subset(rows: list[dict], limit: int | None, seed: int, task: Task, split: str) -> list[dict]:
    if limit and len(rows) > limit:
        return random.Random(f"{seed}-{task.name}-{split}").sample(rows, limit)
    return rows
