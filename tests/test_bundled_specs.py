"""The five bundled tasks are specs (tasks/specs/*.yaml): each does what its Python task did before.

tests/fixtures/bundled_tasks.json.gz froze, before the tasks became specs, every prompt (by its hash),
reference, well-formed answer and score of 36 examples per task, scored on their references, their wrong
labels, chatter and the base, SFT and DPO models' real answers from a quick study."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from medtune.data import bundled_path
from medtune.io import read_jsonl
from medtune.tasks import TASKS

GOLDEN = json.loads(gzip.decompress((Path(__file__).parent / "fixtures" / "bundled_tasks.json.gz").read_bytes()))


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_a_bundled_spec_does_what_its_python_task_did(name):
    task, frozen = TASKS[name], GOLDEN[name]
    assert task.description == frozen["description"] and task.labels == frozen["labels"]
    assert [[m.name, m.paired_test, m.item_key] for m in task.metrics] == frozen["metrics"]
    assert task.primary_metrics == frozen["primary"] and task.max_new_tokens == frozen["max_new_tokens"]
    assert list(task.required_fields) == frozen["required_fields"]
    assert list(task.any_of_fields) == frozen["any_of_fields"] and list(task.numeric_fields) == frozen["numeric_fields"]
    assert task.graded == frozen["graded"] and task.class_field == frozen["class_field"]
    examples = {ex["id"]: ex for split in ("train", "test") for ex in read_jsonl(bundled_path(task, split))}
    for row in frozen["examples"]:
        example = examples[row["id"]]
        assert digest(task.messages(example)) == row["messages"], (row["id"], task.build_prompt(example), row["prompt"])
        assert task.reference(example) == row["reference"]
        assert task.answers(example) == row["answers"]
        for output, scored in row["scores"]:
            assert json.loads(json.dumps(task.score(example, output))) == scored, (row["id"], output)


def test_one_head_triage_examples_are_asked_taught_and_scored_on_that_head():
    triage = TASKS["triage"]
    example = {"id": "x", "input": "Can I get my lisinopril refilled?", "personnel": "pharmacist"}
    assert triage.build_prompt(example).endswith("Answer in exactly one line:\npersonnel: <one of physician, nurse, "
                                                 "pharmacist, admin>")
    assert triage.reference(example) == "personnel: pharmacist"
    assert triage.wrong_completions(example) == ["personnel: physician", "personnel: nurse", "personnel: admin"]
    row = triage.score(example, "personnel: pharmacist")
    assert row["correct"] is True and row["correct_urgency"] is None
