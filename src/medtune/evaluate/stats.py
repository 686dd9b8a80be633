"""Paired comparisons between two stages on the same test items, and the verdict.

* accuracy-like metrics (a mean of 0/1 item scores): exact McNemar test, i.e. a
  two-sided binomial test on the discordant items;
* everything else (macro-F1, mean Likert grade): paired bootstrap. Test items are
  resampled with replacement, the same items for both stages; the two-sided
  p-value is twice the share of resampled differences on the far side of zero
  (capped at 1).

The verdict rule is written out in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from ..tasks.common import Metric, Task

COMPARISONS = {"sft_vs_base": ("sft", "base"), "dpo_vs_sft": ("dpo", "sft"), "dpo_vs_base": ("dpo", "base")}


def align(rows_a: list[dict], rows_b: list[dict]) -> tuple[list[dict], list[dict]]:
    """The two stages' rows for the items both have, in the same order."""
    by_id = {r["id"]: r for r in rows_b}
    pairs = [(r, by_id[r["id"]]) for r in rows_a if r["id"] in by_id]
    return [a for a, _ in pairs], [b for _, b in pairs]


def mcnemar_exact(a: list[bool], b: list[bool]) -> dict:
    """Exact McNemar: among items where a and b disagree, is 'a right, b wrong' a coin flip?"""
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_bootstrap(rows_a: list[dict], rows_b: list[dict], metric: Metric, n_resamples: int,
                     seed: int, level: float = 0.95) -> dict:
    rng = np.random.default_rng(seed)
    n = len(rows_a)
    diffs = np.empty(n_resamples)
    for k in range(n_resamples):
        idx = rng.integers(0, n, n)
        diffs[k] = metric.compute([rows_a[i] for i in idx]) - metric.compute([rows_b[i] for i in idx])
    tail = (1 - level) / 2
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"ci_low": float(np.quantile(diffs, tail)), "ci_high": float(np.quantile(diffs, 1 - tail)), "p_value": float(p)}


def compare(metric: Metric, rows_a: list[dict], rows_b: list[dict], n_resamples: int, seed: int) -> dict:
    """Stage a minus stage b on one metric, with a CI, the test used and its p-value."""
    rows_a, rows_b = align(rows_a, rows_b)
    diff = metric.compute(rows_a) - metric.compute(rows_b)
    boot = paired_bootstrap(rows_a, rows_b, metric, n_resamples, seed)
    result = {"difference": diff, "ci_low": boot["ci_low"], "ci_high": boot["ci_high"], "n": len(rows_a)}
    if metric.paired_test == "mcnemar":
        test = mcnemar_exact([bool(r[metric.item_key]) for r in rows_a], [bool(r[metric.item_key]) for r in rows_b])
        result.update(test="exact McNemar", p_value=test["p_value"], a_only=test["a_only"], b_only=test["b_only"])
    else:
        result.update(test="paired bootstrap", p_value=boot["p_value"])
    return result


def compare_stages(task: Task, rows: dict[str, list[dict]], n_resamples: int, seed: int) -> dict:
    """``{comparison: {metric: result}}`` for every comparison whose two stages exist."""
    out = {}
    for name, (a, b) in COMPARISONS.items():
        if a in rows and b in rows:
            out[name] = {m.name: compare(m, rows[a], rows[b], n_resamples, seed) for m in task.metrics}
    return out


def _better(result: dict, metric: Metric, alpha: float) -> bool:
    sign = 1 if metric.higher_is_better else -1
    return result["p_value"] < alpha and sign * result["difference"] > 0


def _worse(result: dict, metric: Metric, alpha: float) -> bool:
    sign = 1 if metric.higher_is_better else -1
    return result["p_value"] < alpha and sign * result["difference"] < 0


def verdict(task: Task, comparisons: dict, alpha: float) -> dict:
    """sft_sufficient / dpo_helps / inconclusive on the task's primary metrics (docs/statistics.md)."""
    primary = [task.metric(name) for name in task.primary_metrics]
    dpo_sft = comparisons.get("dpo_vs_sft")
    sft_base = comparisons.get("sft_vs_base")
    if dpo_sft is None or sft_base is None:
        return {"verdict": "inconclusive", "reason": "the study has not evaluated base, SFT and DPO yet"}

    def names(results, test):
        return [m.name for m in primary if test(results[m.name], m, alpha)]

    dpo_up, dpo_down = names(dpo_sft, _better), names(dpo_sft, _worse)
    sft_up = names(sft_base, _better)
    if dpo_up and not dpo_down:
        p = ", ".join(f"{n} {dpo_sft[n]['difference']:+.3f} (p={dpo_sft[n]['p_value']:.3g})" for n in dpo_up)
        return {"verdict": "dpo_helps", "reason": f"DPO beat SFT significantly on {p} and was not worse on any primary metric."}
    if sft_up:
        p = ", ".join(f"{n} {sft_base[n]['difference']:+.3f} (p={sft_base[n]['p_value']:.3g})" for n in sft_up)
        tail = ("DPO was significantly worse than SFT on " + ", ".join(dpo_down)) if dpo_down else \
            "DPO did not improve on SFT significantly"
        return {"verdict": "sft_sufficient", "reason": f"SFT beat the base model on {p}; {tail}."}
    return {"verdict": "inconclusive",
            "reason": f"Neither SFT over base nor DPO over SFT was significant at alpha={alpha} on "
                      f"{', '.join(task.primary_metrics)}; more test data or training may settle it."}
