"""results.json (+ picked test examples) -> report.html: one self-contained page.

Plots are PNGs embedded as base64 data URIs, the stylesheet is inline, and every
piece of text goes through jinja2's autoescaping (model outputs included).
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape

from . import plots
from .tables import (BASELINE_LABELS, COMPARISON_LABELS, SPLIT_WORDS, STAGE_LABELS, STAGES, comparison_rows, heads,
                     label_answers_note, n_items, number_formats, pairs_line, per_class_rows, splits, stage_rows,
                     verdict_splits, review_view, summary_rows, training_line, verdict_words, learning_notes)


def environment() -> Environment:
    return Environment(loader=PackageLoader("medtune.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                       trim_blocks=True, lstrip_blocks=True)


def task_view(name: str, task: dict, alpha: float, examples: list[dict]) -> dict:
    comps = task["comparisons"]
    split, other = verdict_splits(task)
    other_verdict = splits(task)[other]["verdict"] if other else None
    return {
        "name": name, "description": task["description"], "verdict": task["verdict"]["verdict"],
        "verdict_words": verdict_words(task["verdict"]), "reason": task["verdict"]["reason"],
        "verdict_split": SPLIT_WORDS[split],
        "other_verdict": other_verdict and {"split": SPLIT_WORDS[other], "verdict": other_verdict["verdict"],
                                            "words": verdict_words(other_verdict), "reason": other_verdict["reason"]},
        "shifted_n": n_items(task["shifted"]) if task.get("shifted") else None,
        "notes": learning_notes(task),
        "n": n_items(task), "primary": task["primary_metrics"],
        "chart": plots.metric_bars(task),
        "stage_rows": stage_rows(task),
        "baseline_names": [BASELINE_LABELS.get(b, b) for b in (task.get("baselines") or {})],
        "comparison_rows": comparison_rows(task, alpha),
        "tests": sorted({c["test"] for comp in comps.values() for c in comp.values()}),
        "heads": [{"name": head, "plot": plots.confusion_plot(task["stages"], head),
                   "rows": per_class_rows(task, head)} for head in heads(task)],
        "review": review_view(task),
        "pairs": pairs_line(task["pairs"]) if task.get("pairs") else None,
        "training": training_line(task),
        "examples": examples,
    }


def render_html(results: dict, examples: dict[str, list[dict]] | None = None) -> str:
    cfg = results["config"]
    alpha = cfg["stats"]["alpha"]
    tasks = [task_view(name, task, alpha, (examples or {}).get(name, [])) for name, task in results["tasks"].items()]
    return environment().get_template("report.html.j2").render(
        results=results, cfg=cfg, alpha=alpha, tasks=tasks, summary=summary_rows(results),
        stages=STAGES, stage_labels=STAGE_LABELS, comparison_labels=COMPARISON_LABELS,
        versions={k: v for k, v in results.get("versions", {}).items() if v}, number_formats=number_formats(results),
        label_answers_note=label_answers_note(results))
