"""Per-stage metrics with 95% bootstrap confidence intervals (scipy)."""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap

from ..tasks.common import Metric, Task


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
        low, high = bootstrap_ci(rows, metric, n_resamples, seed)
        out[metric.name] = {"value": metric.compute(rows), "ci_low": low, "ci_high": high, "n": len(rows)}
    failures = sum(bool(r["parse_failed"]) for r in rows)
    out["parse_failure_rate"] = {"value": failures / len(rows) if rows else 0.0, "n": len(rows)}
    return out
