"""What a review judges: one item per test example that both stages answered, read from the run directory.

An item carries the prompt the model saw (the task's user message), the reference answer, and both stages'
answers from ``RUN/<task>/<stage>/predictions.jsonl`` (the in-distribution test split). The test examples are
read as the study read them: the test file ``RUN/<task>/data.json`` names, through the data doctor, or where the
study split them off the training file, ``task_data`` with the run's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import MedtuneError
from ..io import read_json, read_jsonl
from ..rundir import STAGES

DEFAULT_STAGES = ("sft", "dpo")


@dataclass(frozen=True)
class Item:
    task: str
    item: str  # the example's id
    prompt: str  # the user message the models answered
    reference: str | None  # the task's gold answer, None where it has none
    answers: dict[str, str]  # stage -> the stage's answer

    @property
    def key(self) -> tuple[str, str]:
        return self.task, self.item


def parse_stages(text: str) -> tuple[str, str]:
    """``--stages``: two different stages of base, sft and dpo, comma-separated (``sft,dpo``)."""
    stages = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    if len(stages) != 2 or stages[0] == stages[1] or any(s not in STAGES for s in stages):
        raise MedtuneError(f"--stages {text!r}: give two different stages of {', '.join(STAGES)}, e.g. sft,dpo")
    return stages  # type: ignore[return-value]


def run_config(run_dir: Path):
    """The configuration a run directory was made with, as ``medtune report`` reads it."""
    from ..config import load_config

    config_file = Path(run_dir) / "config.yaml"
    if not config_file.is_file():
        raise MedtuneError(f"{run_dir}: not a medtune run directory (no config.yaml)")
    return load_config(config_file, {"run_dir": str(run_dir)})


def run_tasks(cfg, wanted: list[str] | None = None) -> list:
    """The run's tasks, or those of them ``wanted`` names (by id, or as the config names them)."""
    from ..tasks import get_task

    tasks = {name: get_task(name) for name in cfg.tasks}
    if not wanted:
        return list(tasks.values())
    chosen = []
    for name in wanted:
        match = tasks.get(name) or next((t for t in tasks.values() if t.name == name), None)
        if match is None:
            raise MedtuneError(f"--task {name}: not a task of this run (its tasks: "
                               f"{', '.join(t.name for t in tasks.values())})")
        if match not in chosen:
            chosen.append(match)
    return chosen


def test_examples(run_dir: Path, cfg, task) -> tuple[list[dict], str]:
    """The task's test examples as the study read them, and where they came from (for messages)."""
    from ..data import bundled_path, task_data
    from ..data.doctor import check_task_file

    info_file = Path(run_dir) / task.name / "data.json"
    info = read_json(info_file) if info_file.is_file() else {}
    if info.get("test_file"):
        path = Path(info["test_file"])
        if not path.is_file() and info.get("bundled"):  # the run was made by a medtune installed elsewhere
            path = bundled_path(task, "test")
        if not path.is_file():
            raise MedtuneError(f"{path}: the test file {info_file} names is not there; the items to review are "
                               "read from it")
        diag = check_task_file(path, task, info.get("map") or {})
        if diag.errors:
            raise MedtuneError(f"{path}: the data doctor finds errors in the test file:\n  " +
                               "\n  ".join(diag.lines()))
        return diag.records, str(path)
    data = task_data(cfg.for_task(task.name), task)  # split off the training file, as the study split it
    return data["test"], data["info"]["train_file"]


def predictions(run_dir: Path, task, stage: str) -> list[dict]:
    path = Path(run_dir) / task.name / stage / "predictions.jsonl"
    if not path.is_file():
        raise MedtuneError(f"{path}: no predictions of the {stage} stage for task {task.name}; evaluate it first "
                           f"(finish the study, or `medtune eval --task {task.name} --stage {stage}`), or review "
                           "other --stages")
    try:
        rows = read_jsonl(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MedtuneError(f"{path}: not a predictions file ({exc})") from None
    if not all(isinstance(r, dict) and "id" in r and "output" in r for r in rows):
        raise MedtuneError(f"{path}: not a predictions file (each row needs an id and an output)")
    return rows


def reference_of(task, example: dict) -> str | None:
    try:
        text = task.reference(example)
    except (KeyError, TypeError, ValueError):
        return None
    return text if isinstance(text, str) and text.strip() else None


def task_items(run_dir: Path, cfg, task, stages: tuple[str, str]) -> list[Item]:
    answers = {stage: {str(r["id"]): str(r["output"]) for r in predictions(run_dir, task, stage)} for stage in stages}
    examples, source = test_examples(run_dir, cfg, task)
    by_id = {str(ex["id"]): ex for ex in examples}
    items = []
    for item_id in answers[stages[0]]:
        if item_id not in answers[stages[1]]:
            continue
        example = by_id.get(item_id)
        if example is None:
            raise MedtuneError(f"{source}: has no test example {item_id!r}, which the {stages[0]} stage answered "
                               f"({Path(run_dir) / task.name / stages[0] / 'predictions.jsonl'})")
        items.append(Item(task.name, item_id, task.build_prompt(example), reference_of(task, example),
                          {stage: answers[stage][item_id] for stage in stages}))
    if not items:
        raise MedtuneError(f"{Path(run_dir) / task.name}: the {stages[0]} and {stages[1]} stages answered no test "
                           "item in common: nothing to review")
    return items


def load_items(run_dir: Path, tasks: list[str] | None = None, stages: tuple[str, str] = DEFAULT_STAGES,
               cfg=None) -> list[Item]:
    """Every item to judge for ``stages`` in the run's ``tasks`` (default: all of them)."""
    cfg = cfg if cfg is not None else run_config(run_dir)
    return [item for task in run_tasks(cfg, tasks) for item in task_items(Path(run_dir), cfg, task, stages)]
