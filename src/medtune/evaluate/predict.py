"""Run a model (or several on the same items) over a task's test examples and score every answer."""

from __future__ import annotations

from ..generate import generate_each
from ..models import Compute
from ..tasks.common import Task
from .choose import choose_each


def predict(model, tokenizer, task: Task, examples: list[dict], compute: Compute, batch_size: int,
            desc: str | None, label_answers: str = "generate") -> list[dict]:
    """Scored rows in the examples' order; no progress bar when ``desc`` is None."""
    return predict_each([model], tokenizer, task, examples, compute, batch_size, desc, label_answers)[0]


def predict_each(models: list, tokenizer, task: Task, examples: list[dict], compute: Compute, batch_size: int,
                 desc: str | None, label_answers: str = "generate") -> list[list[dict]]:
    """Each model's scored rows on the same examples (layers the models share run once for them).
    ``label_answers``: a label task's answers are generated, or chosen among its well-formed answers
    (``choose``, evaluate/choose.py); open-answer tasks always generate."""
    prompts = [task.messages(ex) for ex in examples]
    if label_answers == "choose" and task.labels is not None:
        chosen = choose_each(models, tokenizer, prompts, [task.answers(ex) for ex in examples], compute, batch_size, desc)
        outputs = [[[answer] for answer in model_answers] for model_answers in chosen]
    else:
        outputs = generate_each(models, tokenizer, prompts, max_new_tokens=task.max_new_tokens, compute=compute,
                                batch_size=batch_size, desc=desc)
    return [[score_row(task, ex, out[0]) for ex, out in zip(examples, model_outputs)] for model_outputs in outputs]


def score_row(task: Task, example: dict, output: str) -> dict:
    return {"id": example["id"], "output": output, **task.score(example, output)}
