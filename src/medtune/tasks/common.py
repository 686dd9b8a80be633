"""What every task provides (``Task``), and the small helpers the answer kinds share.

A task is usually a spec file (``tasks/specs/*.yaml``, or a user's own; spec.py
reads it into a ``Task``); a rule a spec cannot express is a ``Task`` written in
Python. The engine (evaluation, pair mining, statistics, report) only talks to a
task through this interface: what differs between tasks is a field of ``Task``,
never a branch on a task's name elsewhere. The generators of the bundled
synthetic data live in ``scripts/synthetic/``.

Scored prediction rows
----------------------
``Task.score(example, output)`` turns the model's raw text into a dict of fields
that is stored in ``predictions.jsonl`` and fed to the metrics. It always holds:

* ``correct`` (bool): the task's own judgement that the answer is right. Pair
  mining uses it: an output with ``correct == False`` becomes a ``rejected``.
* ``parse_failed`` (bool): no answer could be read from the output (chatter,
  empty text). A parse failure is scored as wrong, never raised.

plus whatever the task's metrics read (e.g. ``gold``/``pred`` for label tasks).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

Row = dict  # a scored prediction row (see module docstring)


@dataclass(frozen=True)
class Metric:
    """One number reported per stage.

    ``paired_test`` says how two stages are compared on the same test items:
    ``mcnemar`` for a mean of 0/1 item scores (``item_key`` names the 0/1 field),
    ``wilcoxon`` for a mean of ordinal item grades (``item_key`` names the grade,
    e.g. the 1-5 Likert grade), ``bootstrap`` for anything else (macro-F1, mean
    coverage; an ``item_key`` there adds Cohen's d_z as an effect size).
    """

    name: str
    compute: Callable[[list[Row]], float]
    paired_test: Literal["mcnemar", "wilcoxon", "bootstrap"]
    item_key: str | None = None
    higher_is_better: bool = True
    # the smallest difference that matters to a user (docs/statistics.md); stats.min_effect overrides it
    min_effect: float = 0.05


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    system_prompt: str
    # head -> allowed labels; None for open-answer tasks (reasoning, summarization)
    labels: dict[str, list[str]] | None
    metrics: list[Metric]
    # metrics the verdict is decided on (see docs/statistics.md)
    primary_metrics: list[str]
    max_new_tokens: int
    # example -> user message text (the system prompt is added by the engine)
    build_prompt: Callable[[dict], str]
    # example -> the gold completion, exactly what SFT teaches and DPO prefers
    reference: Callable[[dict], str]
    # (example, raw model output) -> scored row fields (see module docstring)
    score: Callable[[dict, str], Row]
    # example -> wrong completions for label-swap pairs ([] for open tasks)
    wrong_completions: Callable[[dict], list[str]]
    # fields an example must carry besides "id"
    required_fields: tuple[str, ...] = ("input", "target")
    # required fields of which one is enough (triage: a user's file may carry only one head);
    # a head the file lacks is neither taught nor scored
    any_of_fields: tuple[str, ...] = ()
    # optional example fields that must hold a number when present (numeric_classification: "value")
    numeric_fields: tuple[str, ...] = ()
    # open answers graded 1-5 in the scored row's "grade" (summarization): samples can be ranked into
    # judge_ranked pairs, the LLM judge can re-grade them, and the lead-sentences baseline applies
    graded: bool = False
    # open answers that still come from a closed set (clinical_reasoning's diagnoses): the example
    # field a classifier baseline learns to predict
    class_field: str | None = None
    # fields that hold more than one text: "facts" (key facts, each a list of wordings) or "texts" (a list of
    # alternatives, e.g. accepted answers); the doctor checks each by its kind
    field_kinds: dict[str, str] = field(default_factory=dict)
    # graded tasks: the LLM judge's rubric, where the task brings its own (None: the built-in rubric's text)
    rubric: str | None = None
    # the doctor checks that the parser reads each example's reference completion back as correct
    checks_reference: bool = True
    # where the task's data lives when the config names none (a spec's data section); None: bundled
    data: object | None = None
    # the spec a task was read from (tasks/spec.py), None for a task written in Python
    source: object | None = None

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.name} has no metric {name!r}")

    def answers(self, example: dict) -> list[str] | None:
        """Every well-formed answer to ``example``: the gold one and its label swaps (label tasks); None for
        open-answer tasks. ``eval.label_answers: choose`` picks among these."""
        if self.labels is None:
            return None
        return sorted({self.reference(example), *self.wrong_completions(example)})

    def messages(self, example: dict) -> list[dict]:
        """The chat prompt (system + user) for one example."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.build_prompt(example)},
        ]


# ---------------------------------------------------------------- text helpers

def normalize(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse whitespace."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return " ".join(text.split())


def find_label(output: str, labels: list[str], aliases: dict[str, list[str]] | None = None) -> str | None:
    """The label the output commits to, or None.

    Chatter around the answer is fine ("Sure! The answer is: hypernatremia.").
    Labels are matched as whole words after normalisation; aliases map a label
    to other accepted spellings. When several labels appear, the one that
    appears first wins (models usually state the answer before explaining it);
    a label that is a substring of another (``urgent`` in ``non-urgent``) is
    handled by preferring the longer match at the same position.
    """
    text = f" {normalize(output)} "
    if not text.strip():
        return None
    best: tuple[int, int, str] | None = None  # (position, -length, label)
    for label in labels:
        for form in [label, *(aliases or {}).get(label, [])]:
            needle = f" {normalize(form)} "
            pos = text.find(needle)
            if pos >= 0:
                cand = (pos, -len(needle), label)
                if best is None or cand < best:
                    best = cand
    return best[2] if best else None


# ---------------------------------------------------------------- metric helpers

def accuracy(rows: list[Row], key: str = "correct") -> float:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else 0.0


def macro_f1(rows: list[Row], labels: list[str], gold_key: str = "gold", pred_key: str = "pred") -> float:
    """Macro-F1 over the task's label set; an unparsed answer counts as wrong.

    Same definition as ``sklearn.metrics.f1_score(average="macro", labels=labels,
    zero_division=0)`` (tests check they agree), computed from counts because the
    bootstrap calls it thousands of times and sklearn's input checks dominate such small calls.
    """
    if not rows:
        return 0.0
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    gold = np.array([index.get(r[gold_key], k) for r in rows])
    pred = np.array([index.get(r[pred_key], k) for r in rows])  # k: unparsed or outside the label set
    tp = np.bincount(gold[gold == pred], minlength=k + 1)[:k]
    gold_count = np.bincount(gold, minlength=k + 1)[:k]
    pred_count = np.bincount(pred, minlength=k + 1)[:k]
    denom = gold_count + pred_count  # = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def label_metrics(labels: list[str]) -> list[Metric]:
    """accuracy + macro-F1 for a single-head label task."""
    return [
        Metric("accuracy", accuracy, "mcnemar", item_key="correct"),
        Metric("macro_f1", lambda rows: macro_f1(rows, labels), "bootstrap"),
    ]


def score_label(example: dict, output: str, labels: list[str],
                aliases: dict[str, list[str]] | None = None) -> Row:
    pred = find_label(output, labels, aliases)
    gold = example["target"]
    return {"gold": gold, "pred": pred, "correct": pred == gold, "parse_failed": pred is None}


def other_labels(gold: str, labels: list[str]) -> list[str]:
    return [label for label in labels if label != gold]
