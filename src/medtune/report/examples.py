"""A few test examples per task with the base, SFT and DPO answers side by side.

Chosen deterministically from the saved predictions (no model): first items on which
the stages disagree (one right, another wrong), then items where they agree, each
group in the order of a hash of the item id (stable across runs, not the file order).
The input text comes from the task's test file recorded in ``RUN/<task>/data.json``;
when that file is gone the example shows its id only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..io import read_json, read_jsonl
from ..tasks import get_task
from .tables import STAGES

ANSWER_FIELDS = ("pred", "pred_personnel", "pred_urgency", "grade", "coverage", "diagnosis")


def stable_order(item_id: str) -> str:
    return hashlib.sha256(str(item_id).encode()).hexdigest()


def load_inputs(run_dir: Path, task) -> dict[str, dict]:
    """id -> example, read back from the data file the study used (empty if unavailable)."""
    info_path = Path(run_dir) / task.name / "data.json"
    if not info_path.is_file():
        return {}
    try:
        from ..data.doctor import check_task_file

        info = read_json(info_path)
        records = []
        for key in ("test_file", "train_file"):  # a split test set lives inside the train file
            if info.get(key):
                records += check_task_file(Path(info[key]), task, info.get("map") or {}).records
        return {r["id"]: r for r in records}
    except Exception:  # the report must render even when the data has moved
        return {}


def pick_examples(run_dir: Path, task_name: str, k: int = 4, disagreeing: int = 3, task=None) -> list[dict]:
    """``task``: the run's task of that name, for the inputs and references (None: answers only)."""
    rows = {}
    for stage in STAGES:
        path = Path(run_dir) / task_name / stage / "predictions.jsonl"
        if path.is_file():
            rows[stage] = {r["id"]: r for r in read_jsonl(path)}
    if not rows:
        return []
    common = set.intersection(*(set(r) for r in rows.values()))
    ordered = sorted(common, key=stable_order)
    differ = [i for i in ordered if len({bool(rows[s][i].get("correct")) for s in rows}) > 1]
    differ_set = set(differ)
    same = [i for i in ordered if i not in differ_set]
    chosen = differ[:disagreeing]
    chosen += same[: k - len(chosen)]
    chosen += [i for i in differ[disagreeing:] if i not in chosen][: k - len(chosen)]
    inputs = load_inputs(run_dir, task) if task is not None else {}
    out = []
    for item_id in chosen:
        example = inputs.get(item_id)
        reference = None
        if example is not None and task is not None:
            try:
                reference = task.reference(example)
            except Exception:
                reference = None
        answers = {}
        for stage, by_id in rows.items():
            r = by_id[item_id]
            answers[stage] = {"output": r.get("output", ""), "correct": bool(r.get("correct")),
                              "parse_failed": bool(r.get("parse_failed")),
                              "read_as": {f: r[f] for f in ANSWER_FIELDS if f in r}}
        out.append({"id": item_id, "input": example.get("input") if example else None, "reference": reference,
                    "stages_disagree": item_id in differ, "answers": answers})
    return out


def all_examples(run_dir: Path, results: dict, k: int = 4) -> dict[str, list[dict]]:
    return {name: pick_examples(run_dir, name, k, task=run_task(results, name)) for name in results["tasks"]}


def run_task(results: dict, name: str):
    """The task a run's results name by its id: bundled, or one of the run's task spec files; None if gone."""
    for entry in [name, *results.get("config", {}).get("tasks", [])]:
        try:
            task = get_task(entry)
        except Exception:  # a spec file moved or broken since the run: the report still renders
            continue
        if task.name == name:
            return task
    return None
