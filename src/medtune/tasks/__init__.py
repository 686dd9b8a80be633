"""The five clinical tasks. Each is one file ending with ``TASK = Task(...)``."""

from __future__ import annotations

from . import clinical_reasoning, numeric_classification, summarization, text_classification, triage
from .common import Task

TASKS: dict[str, Task] = {
    module.TASK.name: module.TASK
    for module in (text_classification, numeric_classification, clinical_reasoning, summarization, triage)
}
TASK_NAMES = list(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return TASKS[name]
