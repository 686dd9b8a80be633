"""Synthetic-data generators for the bundled datasets, one module per task (no real patient data).

Each module has ``generate_examples(rng, n, split="train")`` -> n examples in the task's canonical
fields, and ``ID_PREFIX`` for the ids ``scripts/make_datasets.py`` gives them. The task files in
``src/medtune/tasks/`` know nothing of these: they read, score and measure whatever data they get.
"""

from __future__ import annotations

from . import clinical_reasoning, numeric_classification, summarization, text_classification, triage

GENERATORS = {
    "text_classification": text_classification,
    "numeric_classification": numeric_classification,
    "clinical_reasoning": clinical_reasoning,
    "summarization": summarization,
    "triage": triage,
}
