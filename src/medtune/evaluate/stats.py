"""Paired comparisons between two stages on the same test items, Holm correction,
effect sizes, and the verdict.

Tests (``Metric.paired_test``):

* ``mcnemar`` -- accuracy-like metrics (a mean of 0/1 item scores): exact McNemar,
  i.e. a two-sided binomial test on the discordant items. Effect size: the odds
  ratio of the discordant pairs, ``a_only / b_only`` (Haldane's +0.5 on both counts
  when one of them is zero), and Cohen's g = ``a_only / (a_only + b_only) - 0.5``.
* ``wilcoxon`` -- ordinal item grades (the 1-5 Likert grade): Wilcoxon signed-rank
  on the per-item differences (``scipy.stats.wilcoxon``, ``zero_method="pratt"``:
  items graded the same by both stages are kept in the ranking and then dropped,
  which is the conservative choice when many items tie, as Likert grades do; p from
  an exhaustive permutation for up to 13 items, else the tie-corrected normal
  approximation). All-zero differences give p = 1. Effect size: the matched-pairs
  rank-biserial correlation ``(R+ - R-) / (R+ + R-)`` over the non-zero differences
  (Kerby 2014), from -1 (every change favours b) to +1 (every change favours a).
* ``bootstrap`` -- everything else (macro-F1, mean coverage): paired bootstrap. Test
  items are resampled with replacement, the same items for both stages; the two-sided
  p-value is 2 (k + 1) / (B + 1), k the number of the B resampled differences on the far
  side of zero (capped at 1; the +1 keeps a finite resample count from claiming p = 0). Effect size: the difference itself (metric units, with its CI), plus Cohen's
  d_z (mean / SD of the per-item differences) when the metric is a mean of an item field.

Every comparison also carries a 95% paired-bootstrap CI of the difference.

Holm correction: the family is one task's primary metrics x its three comparisons
(``sft_vs_base``, ``dpo_vs_sft``, ``dpo_vs_base``); secondary metrics form a second
family. Each result keeps its raw ``p_value`` and gains ``p_holm``; the verdict reads
``p_holm``. The rule is written out in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, rankdata, wilcoxon

from ..errors import MedtuneError
from ..tasks.common import Metric, Task

COMPARISONS = {"sft_vs_base": ("sft", "base"), "dpo_vs_sft": ("dpo", "sft"), "dpo_vs_base": ("dpo", "base")}
TEST_NAMES = {"mcnemar": "exact McNemar", "wilcoxon": "Wilcoxon signed-rank", "bootstrap": "paired bootstrap"}


def align(rows_a: list[dict], rows_b: list[dict]) -> tuple[list[dict], list[dict]]:
    """The two stages' rows for the items both have, in the same order. Ids are unique (the doctor sees to
    it in the data); predictions that repeat one would pair the wrong answers, so they stop here."""
    for rows in (rows_a, rows_b):
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise MedtuneError(f"predictions repeat the test item id(s) {', '.join(map(repr, repeated))}; the "
                               "stages cannot be paired. Give every test example its own id and evaluate again")
    by_id = {r["id"]: r for r in rows_b}
    pairs = [(r, by_id[r["id"]]) for r in rows_a if r["id"] in by_id]
    return [a for a, _ in pairs], [b for _, b in pairs]


def mcnemar_exact(a: list[bool], b: list[bool]) -> dict:
    """Exact McNemar: among items where a and b disagree, is 'a right, b wrong' a coin flip?"""
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)
    if n == 0:
        odds = 1.0
    elif a_only == 0 or b_only == 0:
        odds = (a_only + 0.5) / (b_only + 0.5)  # Haldane-Anscombe: finite when one side is empty
    else:
        odds = a_only / b_only
    g = a_only / n - 0.5 if n else 0.0
    return {"a_only": a_only, "b_only": b_only, "p_value": p, "odds_ratio": float(odds), "cohens_g": float(g)}


def rank_biserial(diffs) -> float:
    """Matched-pairs rank-biserial correlation: (R+ - R-) / (R+ + R-) over non-zero differences."""
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = rankdata(np.abs(d))  # average ranks for ties
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def wilcoxon_signed_rank(a: list[float], b: list[float]) -> dict:
    """Wilcoxon signed-rank on a - b (zero_method='pratt'); p = 1 when nothing changed."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0 or not np.any(d):
        return {"p_value": 1.0, "statistic": 0.0, "rank_biserial": 0.0,
                "a_better": 0, "b_better": 0, "ties": int(d.size)}
    res = wilcoxon(a, b, zero_method="pratt", method="auto")
    return {"p_value": float(res.pvalue), "statistic": float(res.statistic), "rank_biserial": rank_biserial(d),
            "a_better": int((d > 0).sum()), "b_better": int((d < 0).sum()), "ties": int((d == 0).sum())}


def cohens_dz(a: list[float], b: list[float]) -> float | None:
    """Mean of the paired differences over their standard deviation (None when it is undefined)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size < 2:
        return None
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else None


def paired_bootstrap(rows_a: list[dict], rows_b: list[dict], metric: Metric, n_resamples: int,
                     seed: int, level: float = 0.95) -> dict:
    rng = np.random.default_rng(seed)
    n = len(rows_a)
    diffs = np.empty(n_resamples)
    for k in range(n_resamples):
        idx = rng.integers(0, n, n)
        diffs[k] = metric.compute([rows_a[i] for i in idx]) - metric.compute([rows_b[i] for i in idx])
    tail = (1 - level) / 2
    # +1 in numerator and denominator (the observed sample counts as one resample): never p = 0
    far = min(int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0)))
    p = min(1.0, 2 * (far + 1) / (n_resamples + 1))
    return {"ci_low": float(np.quantile(diffs, tail)), "ci_high": float(np.quantile(diffs, 1 - tail)), "p_value": float(p)}


def compare(metric: Metric, rows_a: list[dict], rows_b: list[dict], n_resamples: int, seed: int) -> dict:
    """Stage a minus stage b on one metric: difference, CI, test, raw p-value and an effect size."""
    rows_a, rows_b = align(rows_a, rows_b)
    diff = metric.compute(rows_a) - metric.compute(rows_b)
    boot = paired_bootstrap(rows_a, rows_b, metric, n_resamples, seed)
    result = {"difference": diff, "ci_low": boot["ci_low"], "ci_high": boot["ci_high"], "n": len(rows_a),
              "test": TEST_NAMES[metric.paired_test]}
    if metric.paired_test == "mcnemar":
        test = mcnemar_exact([bool(r[metric.item_key]) for r in rows_a], [bool(r[metric.item_key]) for r in rows_b])
        result.update(p_value=test["p_value"], a_only=test["a_only"], b_only=test["b_only"],
                      effect_size=test["odds_ratio"], effect_size_name="odds ratio (discordant pairs)",
                      cohens_g=test["cohens_g"])
    elif metric.paired_test == "wilcoxon":
        test = wilcoxon_signed_rank([float(r[metric.item_key]) for r in rows_a],
                                    [float(r[metric.item_key]) for r in rows_b])
        result.update(p_value=test["p_value"], statistic=test["statistic"], a_better=test["a_better"],
                      b_better=test["b_better"], ties=test["ties"], effect_size=test["rank_biserial"],
                      effect_size_name="rank-biserial correlation")
    else:
        result.update(p_value=boot["p_value"], effect_size=diff, effect_size_name="difference")
        if metric.item_key:
            result["cohens_dz"] = cohens_dz([float(r[metric.item_key]) for r in rows_a],
                                            [float(r[metric.item_key]) for r in rows_b])
    return result


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    Sort ascending; the i-th smallest (i = 0..m-1) becomes (m - i) * p, made monotone
    with the running maximum and capped at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def apply_holm(task: Task, comparisons: dict) -> dict:
    """Add ``p_holm`` (and ``holm_family``) to every result; two families per task:
    primary metrics x comparisons, and secondary metrics x comparisons."""
    families = {"primary": [], "secondary": []}
    for comp_name, results in comparisons.items():
        for metric_name, result in results.items():
            family = "primary" if metric_name in task.primary_metrics else "secondary"
            families[family].append(result)
    for family, results in families.items():
        for result, adjusted in zip(results, holm([r["p_value"] for r in results])):
            result["p_holm"] = adjusted
            result["holm_family"] = family
            result["holm_m"] = len(results)
    return comparisons


def compare_stages(task: Task, rows: dict[str, list[dict]], n_resamples: int, seed: int) -> dict:
    """``{comparison: {metric: result}}`` for every comparison whose two stages exist, Holm-adjusted."""
    out = {}
    for name, (a, b) in COMPARISONS.items():
        if a in rows and b in rows:
            # a metric that does not apply (a triage file with one head) computes to None: no test
            out[name] = {m.name: compare(m, rows[a], rows[b], n_resamples, seed) for m in task.metrics
                         if m.compute(rows[a]) is not None}
    return apply_holm(task, out)


def adjusted_p(result: dict) -> float:
    """The p-value the verdict reads: Holm-adjusted (the raw one only if no adjustment was made)."""
    return result.get("p_holm", result["p_value"])


def _better(result: dict, metric: Metric, alpha: float) -> bool:
    sign = 1 if metric.higher_is_better else -1
    return adjusted_p(result) < alpha and sign * result["difference"] > 0


def _worse(result: dict, metric: Metric, alpha: float) -> bool:
    sign = 1 if metric.higher_is_better else -1
    return adjusted_p(result) < alpha and sign * result["difference"] < 0


def verdict(task: Task, comparisons: dict, alpha: float) -> dict:
    """sft_sufficient / dpo_helps / inconclusive on the task's primary metrics, Holm-adjusted p
    (docs/statistics.md)."""
    dpo_sft = comparisons.get("dpo_vs_sft")
    sft_base = comparisons.get("sft_vs_base")
    if dpo_sft is None or sft_base is None:
        return {"verdict": "inconclusive", "reason": "the study has not evaluated base, SFT and DPO yet"}
    primary = [task.metric(name) for name in task.primary_metrics if name in dpo_sft and name in sft_base]

    def names(results, test):
        return [m.name for m in primary if test(results[m.name], m, alpha)]

    def cite(results, found):
        return ", ".join(f"{n} {results[n]['difference']:+.3f} (Holm p={adjusted_p(results[n]):.3g})" for n in found)

    dpo_up, dpo_down = names(dpo_sft, _better), names(dpo_sft, _worse)
    sft_up = names(sft_base, _better)
    if dpo_up and not dpo_down:
        return {"verdict": "dpo_helps",
                "reason": f"DPO beat SFT significantly on {cite(dpo_sft, dpo_up)} and was not worse on any primary metric."}
    if sft_up:
        tail = ("DPO was significantly worse than SFT on " + cite(dpo_sft, dpo_down)) if dpo_down else \
            "DPO did not improve on SFT significantly"
        return {"verdict": "sft_sufficient", "reason": f"SFT beat the base model on {cite(sft_base, sft_up)}; {tail}."}
    return {"verdict": "inconclusive",
            "reason": f"Neither SFT over base nor DPO over SFT was significant at alpha={alpha} (Holm-adjusted) on "
                      f"{', '.join(task.primary_metrics)}; more test data or training may settle it."}
