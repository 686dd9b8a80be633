"""Commented task spec skeletons, one per answer kind (``medtune task new KIND``): a valid spec to edit."""

from __future__ import annotations

COMMON = """\
# A medtune task spec (docs/tasks.md explains every key). Check it with:  medtune task check {path}
id: {id}                              # the task's name in reports and run folders: lower case, digits, _
description: {description}
kind: {kind}
system_prompt: {system_prompt}
# The user message, a Jinja2 template over the example's fields ({{{{ input }}}} is the text column;
# any other column you use here becomes a required field of your data).
prompt: |-
{prompt}
"""

LABEL = """\
# What SFT teaches and DPO prefers; the parser must read it back as right (the doctor checks every row).
reference: "{{{{ target }}}}"
labels: [ESI-1, ESI-2, ESI-3, ESI-4, ESI-5]  # the allowed answers, field `target` of your data
aliases:                              # other wordings that count as a label (optional)
  ESI-1: [level 1, esi 1]
  ESI-2: [level 2, esi 2]
# Several heads instead of `labels` (each head is a column of your data; metrics get the head's name):
# heads:
#   personnel: {{labels: [physician, nurse, pharmacist, admin]}}
#   urgency: {{labels: [urgent, non-urgent], aliases: {{non-urgent: [not urgent]}}}}
# optional_heads: true                # a file may carry only some heads
metrics: [accuracy, macro_f1]
primary: [macro_f1]                   # what the verdict is decided on
max_new_tokens: 12
"""

SHORT_ANSWER = """\
reference: "{{{{ target }}}}"
answer_cue: "(answer|drug)\\\\s*(is|:)"  # optional: the answer is read after this first (a regular expression)
# accepted_field: accepted            # optional: a column listing other accepted answers (';'-separated in CSV)
# vocabulary:                         # optional: every answer the parser knows, canonical name first
#   - [warfarin, coumadin]
#   - [amiodarone, cordarone]
metrics: [accuracy]
max_new_tokens: 16
"""

FREE_TEXT = """\
reference: "{{{{ target }}}}"
facts_field: facts                    # the column with the key facts the built-in rubric grader checks
# rubric: |                           # optional: the LLM judge's rubric (eval.grader: llm)
#   5 = every key fact, nothing unsupported ...
metrics: [likert, fact_coverage]
max_new_tokens: 96
"""

DATA = """\
data:                                 # relative to this file
  train: {id}_train.csv
  # test: {id}_test.csv               # without it, a seeded stratified split of train
  # map: {{input: vignette}}            # canonical field -> your column
"""

KINDS = {
    "label": ("ESI level of an emergency vignette",
              "You are an emergency triage nurse. You assign the Emergency Severity Index by its written rules.",
              "  Assign the Emergency Severity Index level.\n\n  Vignette:\n  {{ input }}\n\n"
              "  Answer with exactly one of: {{ labels | join(', ') }}.", LABEL),
    "short_answer": ("the drug most likely responsible for an adverse event",
                     "You are a clinical pharmacist. You name the single most likely culprit drug.",
                     "  Adverse event report:\n  {{ input }}\n\n  Which drug most likely caused it? Answer with the "
                     "drug name only.", SHORT_ANSWER),
    "free_text": ("discharge instructions rewritten in plain language",
                  "You are a nurse educator. You rewrite discharge instructions for patients.",
                  "  Instructions:\n  {{ input }}\n\n  Rewrite these for the patient in 2-4 plain sentences.",
                  FREE_TEXT),
}


def skeleton(kind: str, task_id: str, path: str) -> str:
    description, system, prompt, rest = KINDS[kind]
    head = COMMON.format(path=path, id=task_id, description=description, kind=kind, system_prompt=system,
                         prompt=prompt)
    return head + rest.format() + DATA.format(id=task_id)
