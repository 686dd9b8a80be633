"""Text classification: smoking status from a short clinical note snippet.

Labelling rule (stated to the model in every prompt):

* ``current smoker``: smokes now, or quit less than 12 months before the note date
  (a relapse after quitting counts as smoking now);
* ``former smoker``: quit 12 months or more before the note date;
* ``never smoker``: no history of tobacco use ("denies tobacco", "never smoked").

Only the patient's own tobacco use counts: a spouse who smokes, second-hand smoke,
alcohol and cannabis are distractors. Every note states its date, so "quit in
2019" or "quit in March 2024" can be resolved against it. The bundled notes are
written by ``scripts/synthetic/text_classification.py``.
"""

from __future__ import annotations

from .common import Task, label_metrics, normalize, other_labels, score_label

LABELS = ["current smoker", "former smoker", "never smoker"]

# Conservative aliases: multi-word forms that cannot be read the other way round.
ALIASES = {
    "current smoker": ["active smoker", "current tobacco user", "currently smokes", "current every day smoker"],
    "former smoker": ["ex-smoker", "ex smoker", "past smoker", "previous smoker", "quit smoker"],
    "never smoker": ["non-smoker", "nonsmoker", "never-smoker", "lifelong nonsmoker", "never smoked"],
}
# One-word answers accepted only when they are the whole answer: inside chatter
# ("based on the current note") they mean nothing.
BARE_ANSWERS = {"current": "current smoker", "former": "former smoker", "never": "never smoker"}

SYSTEM_PROMPT = "You are a careful clinical documentation assistant. You classify notes by the written rule you are given."

RULE = ("Rule: current smoker = smokes now or quit less than 12 months before the note date; "
        "former smoker = quit 12 months or more before the note date; "
        "never smoker = no history of tobacco use. Only the patient's own tobacco use counts.")


def build_prompt(example: dict) -> str:
    return (f"What is the patient's smoking status?\n{RULE}\n\nNote:\n{example['input']}\n\n"
            f"Answer with exactly one of: {', '.join(LABELS)}.")


def reference(example: dict) -> str:
    return example["target"]


def score(example: dict, output: str) -> dict:
    bare = BARE_ANSWERS.get(normalize(output))
    if bare:
        return {"gold": example["target"], "pred": bare, "correct": bare == example["target"], "parse_failed": False}
    return score_label(example, output, LABELS, ALIASES)


def wrong_completions(example: dict) -> list[str]:
    return other_labels(example["target"], LABELS)


TASK = Task(
    name="text_classification",
    description="smoking status (current / former / never) from a clinical note, by a written rule",
    system_prompt=SYSTEM_PROMPT,
    labels={"label": LABELS},
    metrics=label_metrics(LABELS),
    primary_metrics=["macro_f1"],
    max_new_tokens=12,
    build_prompt=build_prompt,
    reference=reference,
    score=score,
    wrong_completions=wrong_completions,
)
