"""Triage: a patient portal message -> who should answer it, and how urgently.

Two heads, each with a written rule (stated to the model in every prompt):

personnel
  * ``admin``: scheduling, billing, forms, records;
  * ``pharmacist``: refills, dosing questions, drug interactions, insurance
    coverage of a medication;
  * ``nurse``: symptom questions manageable by protocol, wound care, vaccine
    questions, home monitoring readings;
  * ``physician``: new or worsening complex symptoms, test result
    interpretation, diagnosis or treatment changes.

urgency
  * ``urgent``: red-flag symptoms (chest pain, shortness of breath, stroke
    signs, severe bleeding, suicidal thoughts, high fever in an infant,
    anaphylaxis signs, running out of a critical medication such as insulin or
    an anticoagulant today), whoever handles the message;
  * ``non-urgent``: everything else (negated red flags such as "no chest pain"
    do not count).

The gold completion is two lines: ``personnel: nurse`` / ``urgency: non-urgent``.
The bundled messages are written by ``scripts/synthetic/triage.py``.
"""

from __future__ import annotations

import itertools
import re

from .common import Metric, Task, accuracy, find_label, macro_f1, normalize

PERSONNEL = ["physician", "nurse", "pharmacist", "admin"]
URGENCY = ["urgent", "non-urgent"]
LABELS = {"personnel": PERSONNEL, "urgency": URGENCY}
# Conservative: "doctor" or "pharmacy" turn up in chatter ("I'm not a doctor", "ask your pharmacy"),
# so they do not count as answers.
ALIASES = {
    "nurse": ["rn"],
    "admin": ["administrative", "administration", "front desk", "office staff"],
    "urgent": ["emergent"],
    "non-urgent": ["nonurgent", "not urgent", "low urgency"],
}

SYSTEM_PROMPT = "You are a clinic triage assistant. You route patient portal messages by the written rules you are given."

RULES = """Personnel rules:
- admin: scheduling, billing, forms, records
- pharmacist: refills, dosing questions, drug interactions, insurance coverage of a medication
- nurse: symptom questions manageable by protocol, wound care, vaccine questions, home monitoring readings
- physician: new or worsening complex symptoms, test result interpretation, diagnosis or treatment changes
Urgency rules:
- urgent: red-flag symptoms (chest pain, shortness of breath, stroke signs, severe bleeding, suicidal thoughts, \
high fever in an infant, signs of anaphylaxis, running out of a critical medication such as insulin or an \
anticoagulant today)
- non-urgent: everything else"""


def heads(example: dict) -> list[str]:
    """The heads this example is labelled for: both in the bundled data; a user's file may carry
    only ``personnel`` or only ``urgency``, and then only that head is asked, taught and scored."""
    present = [head for head in LABELS if example.get(head) is not None]
    return present or list(LABELS)


def build_prompt(example: dict) -> str:
    asked = heads(example)
    if len(asked) == len(LABELS):
        return (f"Triage this patient portal message.\n{RULES}\n\nMessage:\n{example['input']}\n\n"
                f"Answer in exactly two lines:\npersonnel: <one of {', '.join(PERSONNEL)}>\n"
                f"urgency: <one of {', '.join(URGENCY)}>")
    head = asked[0]
    return (f"Triage this patient portal message.\n{RULES}\n\nMessage:\n{example['input']}\n\n"
            f"Answer in exactly one line:\n{head}: <one of {', '.join(LABELS[head])}>")


def render(personnel: str | None, urgency: str | None) -> str:
    lines = [f"{head}: {value}" for head, value in (("personnel", personnel), ("urgency", urgency)) if value]
    return "\n".join(lines)


def reference(example: dict) -> str:
    return render(example.get("personnel"), example.get("urgency"))


def read_head(output: str, head: str) -> str | None:
    """The value given after "<head>:", else the first label of that head anywhere in the output."""
    other = "urgency" if head == "personnel" else "personnel"
    after = re.search(rf"\b{head}\b(.*?)(?=\b{other}\b|$)", normalize(output))
    if after:
        value = find_label(after.group(1), LABELS[head], ALIASES)
        if value:
            return value
    return find_label(output, LABELS[head], ALIASES)


def score(example: dict, output: str) -> dict:
    """Both heads scored; a head the example has no gold for (a one-head file) gets ``gold_<head>``
    and ``correct_<head>`` None and is left out of ``correct``, ``parse_failed`` and its metrics."""
    row, asked = {}, heads(example)
    for head in LABELS:
        pred, gold = read_head(output, head), example.get(head)
        row[f"gold_{head}"], row[f"pred_{head}"] = gold, pred
        row[f"correct_{head}"] = pred == gold if gold is not None else None
    row["correct"] = all(row[f"correct_{head}"] for head in asked)
    row["parse_failed"] = all(row[f"pred_{head}"] is None for head in asked)
    return row


def wrong_completions(example: dict) -> list[str]:
    options = [LABELS[head] if example.get(head) is not None else [None] for head in LABELS]
    gold = (example.get("personnel"), example.get("urgency"))
    return [render(p, u) for p, u in itertools.product(*options) if (p, u) != gold]


def labelled(rows: list[dict], head: str) -> list[dict] | None:
    """The rows that have a gold label for ``head``; None when none has (the metric does not apply)."""
    kept = [r for r in rows if r.get(f"gold_{head}") is not None]
    return kept or (None if rows else [])


def head_f1(head: str):
    def compute(rows):
        kept = labelled(rows, head)
        return None if kept is None else macro_f1(kept, LABELS[head], f"gold_{head}", f"pred_{head}")
    return compute


def head_accuracy(head: str):
    def compute(rows):
        kept = labelled(rows, head)
        return None if kept is None else accuracy(kept, f"correct_{head}")
    return compute


TASK = Task(
    name="triage",
    description="patient portal message -> personnel (physician/nurse/pharmacist/admin) and urgency (urgent/non-urgent)",
    system_prompt=SYSTEM_PROMPT,
    labels=LABELS,
    # a metric returns None when no row has gold for its head (a one-head file): it is then omitted
    metrics=[
        Metric("personnel_macro_f1", head_f1("personnel"), "bootstrap"),
        Metric("urgency_macro_f1", head_f1("urgency"), "bootstrap"),
        Metric("personnel_accuracy", head_accuracy("personnel"), "mcnemar", item_key="correct_personnel"),
        Metric("urgency_accuracy", head_accuracy("urgency"), "mcnemar", item_key="correct_urgency"),
    ],
    primary_metrics=["personnel_macro_f1", "urgency_macro_f1"],
    max_new_tokens=16,
    build_prompt=build_prompt,
    reference=reference,
    score=score,
    wrong_completions=wrong_completions,
    required_fields=("input", "personnel", "urgency"),
    # a user's file needs at least one of these columns (the doctor checks); the other head is not evaluated
    any_of_fields=("personnel", "urgency"),
)
