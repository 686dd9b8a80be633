"""Turn a user's rows into a task's canonical examples (or preference pairs).

Canonical columns: ``input`` and ``target`` (triage: ``input``, ``personnel``,
``urgency``); preference data: ``prompt``, ``chosen``, ``rejected``, or OpenAI's
preference JSONL (``input.messages``, ``preferred_output``,
``non_preferred_output``). ``--map input=note_text`` renames other columns.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from ..errors import MedtuneError
from ..tasks.common import Task, normalize


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """``["input=note_text", ...]`` -> ``{"input": "note_text"}`` (canonical -> file column)."""
    mapping = {}
    for item in items or []:
        canonical, sep, column = item.partition("=")
        if not sep or not canonical.strip() or not column.strip():
            raise MedtuneError(f"--map {item!r}: expected CANONICAL=COLUMN, e.g. input=note_text")
        mapping[canonical.strip()] = column.strip()
    return mapping


def label_fields(task: Task) -> dict[str, list[str]]:
    """Example field -> allowed labels. Single-head tasks keep their label in ``target``."""
    if not task.labels:
        return {}
    fields = set(task.required_fields)
    return {(head if head in fields else "target"): labels for head, labels in task.labels.items()}


def canonical_label(value, labels: list[str]) -> str | None:
    """A label written with other case, spacing or punctuation ("Non urgent") -> its canonical form."""
    wanted = normalize(str(value))
    for label in labels:
        if normalize(label) == wanted:
            return label
    return None


def apply_mapping(row: dict, mapping: dict[str, str]) -> dict:
    out = dict(row)
    for canonical, column in mapping.items():
        if column in row:
            out[canonical] = row[column]
    return out


def is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def stratified_split(examples: list[dict], test_fraction: float, seed: int, key) -> tuple[list[dict], list[dict]]:
    """A seeded split that keeps each class's share in both parts."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        groups[key(ex)].append(ex)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(groups):
        items = groups[label][:]
        rng.shuffle(items)
        n_test = round(len(items) * test_fraction)
        if len(items) >= 2:
            n_test = min(max(n_test, 1), len(items) - 1)
        test += items[:n_test]
        train += items[n_test:]
    return train, test


def strata_key(task: Task):
    fields = list(label_fields(task))
    return lambda ex: "|".join(str(ex.get(f)) for f in fields) if fields else "all"


def openai_preference_row(row: dict) -> dict | None:
    """OpenAI's preference fine-tuning format -> prompt/chosen/rejected, or None if not that format."""
    if not ("preferred_output" in row and "non_preferred_output" in row and isinstance(row.get("input"), dict)):
        return None

    def last_text(messages):
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            return messages[-1].get("content")
        return None

    messages = row["input"].get("messages")
    messages = messages if isinstance(messages, list) else []
    user = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return {"prompt": user[-1] if user else None, "chosen": last_text(row["preferred_output"]),
            "rejected": last_text(row["non_preferred_output"]), "id": row.get("id")}


def source_name(path: Path) -> str:
    return Path(path).stem.replace(" ", "_")
