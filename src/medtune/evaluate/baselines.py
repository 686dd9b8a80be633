"""Baselines that show how much headroom a task leaves (scikit-learn).

* majority: always the most frequent training label (per head);
* tfidf_logreg: TF-IDF word n-grams + logistic regression, per head; for an
  open-answer task with a ``class_field`` (clinical reasoning) the classes are
  the training values of that field (the diagnoses);
* lead: graded free-text tasks only (summarization), the first sentences of the note.

Baseline answers are rendered with the task's own ``reference`` and scored by
its own ``score``, so they are measured exactly like a model's answers.
"""

from __future__ import annotations

import re
from collections import Counter

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ..data.importer import label_fields
from ..tasks.common import Task


def head_fields(task: Task, train: list[dict]) -> list[str]:
    """The fields a classifier predicts: label heads the data carries (a triage file may have one),
    or the task's ``class_field`` for an open-answer task (reasoning's diagnosis)."""
    fields = [f for f in label_fields(task) if any(ex.get(f) is not None for ex in train)]
    if not fields and task.class_field:
        fields = [task.class_field]
    return fields


def score_predictions(task: Task, test: list[dict], predicted: list[dict]) -> dict:
    rows = []
    for example, fields in zip(test, predicted):
        answer = task.reference({**example, **fields})
        rows.append(task.score(example, answer))
    return applicable(task, rows)


def applicable(task: Task, rows: list[dict]) -> dict:
    values = {m.name: m.compute(rows) for m in task.metrics}
    return {name: value for name, value in values.items() if value is not None}


def majority(task: Task, train: list[dict], test: list[dict]) -> dict | None:
    fields = head_fields(task, train)
    if not fields:
        return None
    most = {f: Counter(ex[f] for ex in train).most_common(1)[0][0] for f in fields}
    return score_predictions(task, test, [dict(most) for _ in test])


def tfidf_logreg(task: Task, train: list[dict], test: list[dict], seed: int = 0) -> dict | None:
    fields = head_fields(task, train)
    if not fields:
        return None
    predicted = [{} for _ in test]
    for f in fields:
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                              LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
        labelled = [ex for ex in train if ex.get(f) is not None]
        model.fit([ex["input"] for ex in labelled], [ex[f] for ex in labelled])
        for slot, label in zip(predicted, model.predict([ex["input"] for ex in test])):
            slot[f] = label
    return score_predictions(task, test, predicted)


def lead(task: Task, test: list[dict], sentences: int = 2) -> dict | None:
    if not task.graded:
        return None
    rows = []
    for example in test:
        text = " ".join(example["input"].split())
        first = " ".join(re.split(r"(?<=[.!?])\s+", text)[:sentences])
        rows.append(task.score(example, first))
    return applicable(task, rows)


def all_baselines(task: Task, train: list[dict], test: list[dict], seed: int = 0) -> dict:
    out = {"majority": majority(task, train, test), "tfidf_logreg": tfidf_logreg(task, train, test, seed),
           "lead_2_sentences": lead(task, test)}
    return {name: metrics for name, metrics in out.items() if metrics is not None}
