"""Per-stage metrics with 95% bootstrap confidence intervals (scipy), and, for label
tasks, per-class precision/recall/F1 and confusion matrices (scikit-learn)."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ..tasks.common import Metric, Task

UNPARSED = "unparsed"  # the confusion matrix's extra column: no label could be read from the output


def bootstrap_ci(rows: list[dict], metric: Metric, n_resamples: int, seed: int,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap over test items (any metric, F1 included)."""
    if len(rows) < 2:
        value = metric.compute(rows)
        return value, value
    index = np.arange(len(rows))

    def statistic(idx):
        return metric.compute([rows[int(i)] for i in idx])

    res = bootstrap((index,), statistic, vectorized=False, n_resamples=n_resamples,
                    confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return float(low), float(high)


def stage_metrics(task: Task, rows: list[dict], n_resamples: int, seed: int) -> dict:
    """``{metric: {value, ci_low, ci_high, n}}`` plus the parse-failure rate."""
    out = {}
    for metric in task.metrics:
        value = metric.compute(rows)
        if value is None:  # the metric does not apply (e.g. a triage file with only one of the two heads)
            continue
        low, high = bootstrap_ci(rows, metric, n_resamples, seed)
        out[metric.name] = {"value": value, "ci_low": low, "ci_high": high, "n": len(rows)}
    failures = sum(bool(r["parse_failed"]) for r in rows)
    out["parse_failure_rate"] = {"value": failures / len(rows) if rows else 0.0, "n": len(rows)}
    return out


def head_keys(task: Task, head: str, rows: list[dict]) -> tuple[str, str]:
    """The (gold, pred) fields of a head: ``gold_<head>``/``pred_<head>`` for multi-head tasks
    (triage), plain ``gold``/``pred`` for single-head tasks."""
    if rows and f"gold_{head}" in rows[0]:
        return f"gold_{head}", f"pred_{head}"
    return "gold", "pred"


def label_breakdown(task: Task, rows: list[dict]) -> dict:
    """Per head: per-class precision/recall/F1/support and the confusion matrix.

    ``{"per_class": {head: {label: {precision, recall, f1, support}}},
       "confusion": {head: {"labels": [...], "columns": [..., "unparsed"], "matrix": [[...]]}}}``

    Matrix rows are the gold labels, columns the predicted labels plus ``unparsed`` (an answer
    from which no label could be read, or one outside the label set). Empty for open-answer tasks.
    """
    if not task.labels or not rows:
        return {}
    per_class, confusion = {}, {}
    for head, labels in task.labels.items():
        gold_key, pred_key = head_keys(task, head, rows)
        head_rows = [r for r in rows if r.get(gold_key) is not None]  # a one-head triage file has no gold here
        if gold_key not in rows[0] or not head_rows:
            continue
        gold = [r[gold_key] for r in head_rows]
        pred = [r[pred_key] if r.get(pred_key) in labels else UNPARSED for r in head_rows]
        p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
        per_class[head] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(s[i])} for i, label in enumerate(labels)}
        columns = [*labels, UNPARSED]
        matrix = confusion_matrix(gold, pred, labels=columns)[: len(labels)]  # no gold row is "unparsed"
        confusion[head] = {"labels": list(labels), "columns": columns, "matrix": matrix.tolist()}
    return {"per_class": per_class, "confusion": confusion} if per_class else {}
