"""Summarization: a clinical note (discharge summary or progress note) -> a 1-2 sentence summary.

Each example carries ``facts``: the 3-5 key facts a good summary must state
(diagnosis, main treatment, disposition, and sometimes the key new/stopped
medication and the follow-up), each as a list of accepted phrasings, e.g.
``[["atrial fibrillation", "afib", "af"], ["diltiazem"], ["home"]]``. The bundled
notes, summaries and facts are written by ``scripts/synthetic/summarization.py``.

Grading: the built-in rubric grader (``medtune.evaluate.grader``, ``docs/grading.md``) puts each
output on the paper's 1-5 Likert scale from key-fact coverage, unsupported statements
(numbers, drugs, diagnoses, patient details the note does not state) and length. Row fields:

* ``grade`` (int 1-5), ``coverage`` (fraction of facts stated as whole words);
* ``unsupported`` (list of what was not found in the note), ``words``, ``length``
  (ok / long / very_long), ``copy`` (a copy of the note), ``grader`` ("builtin");
* ``correct``: ``grade >= 4``; ``parse_failed``: the output is empty after strip.

With ``eval.grader: llm`` the study re-grades ``grade`` with an LLM judge
(``medtune.evaluate.judge``) and keeps the built-in fields as ``builtin_grade`` etc.
"""

from __future__ import annotations

from ..evaluate.grader import coverage, fact_present, grade_summary  # noqa: F401 (re-exported)
from .common import Metric, Task

SYSTEM_PROMPT = "You are a clinical documentation assistant. You write short, accurate summaries of clinical notes."


def build_prompt(example: dict) -> str:
    return (f"Note:\n{example['input']}\n\n"
            "Summarize this note in 1-2 sentences (at most 45 words). State the diagnosis, the main treatment, "
            "the disposition and any key medication change or follow-up.")


def reference(example: dict) -> str:
    return example["target"]


# ---------------------------------------------------------------- grading (evaluate/grader.py)

def grade(output: str, facts: list[list[str]], reference_text: str, note: str = "") -> int:
    """The built-in rubric grade (1-5) of one output."""
    return grade_summary(note, reference_text, facts, output)["grade"]


def score(example: dict, output: str) -> dict:
    graded = grade_summary(example["input"], example["target"], example["facts"], output)
    return {"coverage": graded["coverage"], "grade": graded["grade"], "unsupported": graded["unsupported"],
            "words": graded["words"], "length": graded["length"], "copy": graded["copy"], "grader": "builtin",
            "correct": graded["grade"] >= 4, "parse_failed": not output.strip()}


def mean_of(key: str):
    def compute(rows: list[dict]) -> float:
        return sum(float(r[key]) for r in rows) / len(rows) if rows else 0.0
    return compute


def wrong_completions(example: dict) -> list[str]:
    return []  # open answers: pairs come from the model's own errors


TASK = Task(
    name="summarization",
    description="clinical note -> 1-2 sentence summary, graded 1-5 by a rubric (facts, unsupported details, length)",
    system_prompt=SYSTEM_PROMPT,
    labels=None,
    metrics=[Metric("likert", mean_of("grade"), "wilcoxon", item_key="grade"),
             Metric("fact_coverage", mean_of("coverage"), "bootstrap")],
    primary_metrics=["likert"],
    max_new_tokens=64,  # the longest reference summary is 59 tokens
    build_prompt=build_prompt,
    reference=reference,
    score=score,
    wrong_completions=wrong_completions,
    required_fields=("input", "target", "facts"),
    graded=True,
)
