"""The tasks: the five bundled ones, each a spec in ``tasks/specs/`` (read by spec.py), and any task spec a
user names by its file's path (docs/tasks.md). A task the spec kinds cannot express is written in Python as
a ``Task`` (common.py) and added to ``TASKS``."""

from __future__ import annotations

from pathlib import Path

from ..errors import MedtuneError
from .common import Task
from .spec import load_spec

SPECS = Path(__file__).parent / "specs"
BUNDLED = ["text_classification", "numeric_classification", "clinical_reasoning", "summarization", "triage"]
TASKS: dict[str, Task] = {name: load_spec(SPECS / f"{name}.yaml") for name in BUNDLED}
TASK_NAMES = list(TASKS)


def is_spec_path(name: str) -> bool:
    """A task named by a spec file rather than a bundled id."""
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def get_task(name: str) -> Task:
    """A bundled task by its id, or the task a spec file describes; MedtuneError naming what is wrong."""
    if name in TASKS:
        return TASKS[name]
    if not is_spec_path(name):
        raise MedtuneError(f"unknown task {name!r}; bundled tasks: {', '.join(TASK_NAMES)}, or give the path "
                           "of a task spec file (docs/tasks.md)")
    task = load_spec(Path(name).expanduser())
    if task.name in TASKS:
        raise MedtuneError(f"{name}: id {task.name!r} is a bundled task's; give your task another id")
    return task
