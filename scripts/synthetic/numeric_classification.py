"""Synthetic lab reports for numeric_classification (serum sodium).

A sodium value drawn in a label's range (half of them within 3 mmol/L of a threshold), written
in one of several units and spellings among distractor labs and vitals, in five layouts. The
target comes from the rule the task's prompt states (``label_for``).
"""

from __future__ import annotations

import random

from medtune.tasks import TASKS

LABELS = TASKS["numeric_classification"].labels["label"]
LOW, HIGH = 135.0, 145.0  # the rule the task's prompt states


def label_for(value: float) -> str:
    """The rule's label for a sodium value (mmol/L)."""
    if value < LOW:
        return "hyponatremia"
    if value > HIGH:
        return "hypernatremia"
    return "normal"


ID_PREFIX = "nc"


def sodium_value(rng: random.Random, label: str) -> float:
    """A value in the label's range; half of them within 3 mmol/L of a threshold."""
    near = rng.random() < 0.5
    if label == "hyponatremia":
        value = rng.uniform(132, 134.49) if near else rng.uniform(112, 132)
    elif label == "hypernatremia":
        value = rng.uniform(145.51, 148) if near else rng.uniform(148, 168)
    else:
        value = rng.choice([rng.uniform(135, 137.9), rng.uniform(142, 145.49)]) if near else rng.uniform(135, 145.49)
    # most labs report whole numbers; some report one decimal
    value = round(value, 1) if rng.random() < 0.25 else float(round(value))
    return value


def show(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def sodium_text(rng: random.Random, value: float) -> str:
    unit = rng.choice(["mmol/L", "mEq/L", "mmol/l", "meq/L", ""])
    v = show(value)
    return rng.choice([
        f"Na {v} {unit}", f"sodium: {v} {unit}", f"Na+ = {v} {unit}", f"Sodium {v} {unit}",
        f"NA: {v} {unit}", f"Serum sodium {v} {unit}", f"Na+ {v}{unit and ' ' + unit}",
    ]).strip()


def distractor_labs(rng: random.Random) -> list[str]:
    return [
        rng.choice([f"K {rng.uniform(2.9, 5.9):.1f}", f"potassium: {rng.uniform(2.9, 5.9):.1f} mmol/L",
                    f"K+ = {rng.uniform(2.9, 5.9):.1f} mEq/L"]),
        rng.choice([f"Cl {rng.randint(92, 115)}", f"chloride: {rng.randint(92, 115)} mmol/L",
                    f"Cl- = {rng.randint(92, 115)} mEq/L"]),
        rng.choice([f"HCO3 {rng.randint(16, 32)}", f"bicarb {rng.randint(16, 32)}", f"CO2: {rng.randint(16, 32)} mmol/L"]),
        rng.choice([f"BUN {rng.randint(6, 60)}", f"urea {rng.uniform(2.5, 20):.1f} mmol/L", f"BUN: {rng.randint(6, 60)} mg/dL"]),
        rng.choice([f"Cr {rng.uniform(0.5, 3.5):.2f}", f"creatinine: {rng.uniform(0.5, 3.5):.1f} mg/dL",
                    f"creat {rng.randint(45, 300)} umol/L"]),
        rng.choice([f"Glu {rng.randint(60, 420)}", f"glucose: {rng.randint(60, 420)} mg/dL",
                    f"glucose {rng.uniform(3.5, 22):.1f} mmol/L"]),
    ]


def vitals(rng: random.Random) -> str:
    return (f"BP {rng.randint(90, 180)}/{rng.randint(50, 105)}, HR {rng.randint(50, 125)}, "
            f"T {rng.uniform(36.0, 38.9):.1f} C, SpO2 {rng.randint(88, 100)}%")


def write_report(rng: random.Random, value: float) -> str:
    labs = distractor_labs(rng)
    rng.shuffle(labs)
    labs = labs[: rng.randint(2, 6)]
    labs.insert(rng.randint(0, len(labs)), sodium_text(rng, value))
    style = rng.randrange(5)
    if style == 0:  # one-line panel
        return f"{rng.choice(['BMP', 'Chem 7', 'Basic metabolic panel', 'Renal panel'])}: " + ", ".join(labs)
    if style == 1:  # slash-separated, as pasted into notes
        return f"Labs {rng.choice(['today', 'this AM', 'on admission', '(06:00)'])}: " + " / ".join(labs)
    if style == 2:  # multi-line result list
        return "\n".join([rng.choice(["LAB RESULTS", "Results:", "Chemistry"]), *labs])
    if style == 3:  # a sentence inside a progress note
        context = rng.choice(["with CHF", "post-op day 2", "with pneumonia", "admitted for falls", "on HCTZ",
                              "with vomiting x2d"])
        return (f"{rng.randint(19, 95)}yo {rng.choice(['M', 'F'])} {context}. Vitals: {vitals(rng)}. "
                "Labs notable for " + ", ".join(labs[:-1]) + f" and {labs[-1]}.")
    return f"Vitals {vitals(rng)}\nChem: " + "; ".join(labs) + rng.choice(["", "\nRepeat BMP in AM.", "\nUA pending."])


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n reports, labels in turn; ``split`` is unused: test reports differ from training ones by the draw."""
    examples = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        value = sodium_value(rng, label)
        examples.append({"input": write_report(rng, value), "target": label_for(value), "value": value})
    rng.shuffle(examples)
    return examples
