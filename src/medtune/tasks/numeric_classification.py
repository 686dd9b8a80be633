"""Numeric classification: serum sodium from a lab line or note -> hypo / normal / hyper.

Labelling rule (stated to the model in every prompt):

* ``hyponatremia``: Na below 135 mmol/L;
* ``normal``: 135 to 145 mmol/L inclusive;
* ``hypernatremia``: Na above 145 mmol/L.

Sodium is reported in mmol/L or mEq/L, which are numerically equal for a
monovalent ion, so the number decides on its own. In the bundled data
(``scripts/synthetic/numeric_classification.py``) the text also carries other
labs (K, Cl, HCO3, BUN, creatinine, glucose) and vitals as distractors, and
about half the values lie within 3 mmol/L of a threshold.
"""

from __future__ import annotations

from .common import Task, label_metrics, other_labels, score_label

LABELS = ["hyponatremia", "normal", "hypernatremia"]
ALIASES = {
    "hyponatremia": ["hyponatraemia", "low sodium"],
    "normal": ["normonatremia", "normonatraemia", "eunatremia", "normal sodium"],
    "hypernatremia": ["hypernatraemia", "high sodium"],
}
LOW, HIGH = 135.0, 145.0

SYSTEM_PROMPT = "You are a careful clinical laboratory assistant. You classify lab results by the written rule you are given."

RULE = ("Rule: serum sodium below 135 mmol/L = hyponatremia; 135 to 145 mmol/L inclusive = normal; "
        "above 145 mmol/L = hypernatremia. mEq/L and mmol/L are equal for sodium.")


def label_for(value: float) -> str:
    if value < LOW:
        return "hyponatremia"
    if value > HIGH:
        return "hypernatremia"
    return "normal"


def build_prompt(example: dict) -> str:
    return (f"Classify the patient's serum sodium.\n{RULE}\n\nResult:\n{example['input']}\n\n"
            f"Answer with exactly one of: {', '.join(LABELS)}.")


def reference(example: dict) -> str:
    return example["target"]


def score(example: dict, output: str) -> dict:
    return score_label(example, output, LABELS, ALIASES)


def wrong_completions(example: dict) -> list[str]:
    return other_labels(example["target"], LABELS)


TASK = Task(
    name="numeric_classification",
    description="serum sodium in a lab report -> hyponatremia / normal / hypernatremia",
    system_prompt=SYSTEM_PROMPT,
    labels={"label": LABELS},
    metrics=label_metrics(LABELS),
    primary_metrics=["macro_f1"],
    max_new_tokens=12,
    build_prompt=build_prompt,
    reference=reference,
    score=score,
    wrong_completions=wrong_completions,
    # "value" is optional in a user's file; when present it must be a number (the doctor checks)
    numeric_fields=("value",),
)
