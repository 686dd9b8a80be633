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

import math

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


# ------------------------------------------------------------------ findings and the verdict

def min_effect_of(metric: Metric, overrides: dict[str, float] | None = None) -> float:
    """The smallest difference in the metric that matters: ``stats.min_effect`` by metric name, else the
    metric's own default."""
    return (overrides or {}).get(metric.name, metric.min_effect)


def finding(result: dict, metric: Metric, alpha: float, min_effect: float) -> dict:
    """What one comparison (first stage minus second) shows on one metric, read against the smallest
    difference that matters. ``gain`` and its CI are turned so that positive is better."""
    sign = 1 if metric.higher_is_better else -1
    gain = sign * result["difference"]
    low, high = sorted((sign * result["ci_low"], sign * result["ci_high"]))
    no_gain, no_loss = high < min_effect, low > -min_effect
    if adjusted_p(result) < alpha:
        kind = ("gain" if gain >= min_effect else "small_gain") if gain > 0 else \
            ("loss" if gain <= -min_effect else "small_loss")
    else:
        kind = {(True, True): "equivalent", (True, False): "no_gain", (False, True): "no_loss",
                (False, False): "underpowered"}[(no_gain, no_loss)]
    out = {"finding": kind, "min_effect": min_effect, "rules_out_gain": no_gain, "rules_out_loss": no_loss}
    if not no_gain and kind != "gain":
        out["n_to_decide"] = items_to_decide(result.get("n"), gain, low, high, min_effect)
    return out


def items_to_decide(n: int | None, gain: float, low: float, high: float, min_effect: float) -> int | None:
    """Test items that would likely settle whether the step gains min_effect, if the observed difference and
    its per-item spread held: the CI's half-width shrinks as 1/sqrt(n) until the CI clears zero (an estimate
    at or above min_effect) or min_effect (one below it)."""
    half = (high - low) / 2
    need = gain if gain >= min_effect else min_effect - gain
    if not n or half <= 0 or need <= 0:
        return None
    return max(n, math.ceil(n * (half / need) ** 2))


def add_findings(task: Task, comparisons: dict, alpha: float, min_effects: dict[str, float] | None = None) -> dict:
    """Every comparison's result gains its finding (``finding``), which the report states."""
    for results in comparisons.values():
        for name, result in results.items():
            metric = task.metric(name)
            result.update(finding(result, metric, alpha, min_effect_of(metric, min_effects)))
    return comparisons


def step_outcome(findings: dict[str, dict]) -> str:
    """One step (SFT over base, DPO over SFT) on the primary metrics: ``helps`` -- a significant gain of at
    least min_effect on one and a significant loss on none; ``no_help`` -- no such gain, and the step is
    significantly worse on one or every CI rules out a gain of min_effect; otherwise ``open``."""
    kinds = [f["finding"] for f in findings.values()]
    worse = any(k in ("loss", "small_loss") for k in kinds)
    if "gain" in kinds and not worse:
        return "helps"
    if "gain" not in kinds and (worse or all(f["rules_out_gain"] for f in findings.values())):
        return "no_help"
    return "open"


FINDING_WORDS = {
    "gain": "significantly better, by at least min_effect {e:g}",
    "small_gain": "significantly better, by less than min_effect {e:g}",
    "loss": "significantly worse, by at least min_effect {e:g}",
    "small_loss": "significantly worse, by less than min_effect {e:g}",
    "equivalent": "not significant; the CI rules out a change of {e:g} either way",
    "no_gain": "not significant; the CI rules out a gain of {e:g}",
    "no_loss": "not significant; the CI rules out a loss of {e:g}, not a gain",
    "underpowered": "not significant; the CI reaches both -{e:g} and +{e:g} (underpowered)",
}
STEP_NAMES = {"sft_vs_base": "SFT vs base", "dpo_vs_sft": "DPO vs SFT"}


def signed(x: float) -> str:
    """+0.123, and +0.000 rather than -0.000 for a difference that rounds to zero."""
    return f"{round(x, 3) + 0.0:+.3f}"


def describe_step(comp: str, findings: dict[str, dict], results: dict) -> str:
    """A sentence: each primary metric's difference, CI, Holm p and what the CI rules out."""
    parts = [f"{name} {signed(results[name]['difference'])} [{signed(results[name]['ci_low'])}, "
             f"{signed(results[name]['ci_high'])}], Holm p={adjusted_p(results[name]):.3g}, "
             + FINDING_WORDS[f["finding"]].format(e=f["min_effect"]) for name, f in findings.items()]
    return f"{STEP_NAMES[comp]}: " + "; ".join(parts) + "."


def verdict(task: Task, comparisons: dict, alpha: float, min_effects: dict[str, float] | None = None) -> dict:
    """dpo_helps / sft_sufficient / no_gain / inconclusive on the task's primary metrics (docs/statistics.md)."""
    if "dpo_vs_sft" not in comparisons or "sft_vs_base" not in comparisons:
        return {"verdict": "inconclusive", "kind": "incomplete",
                "reason": "The study has not evaluated base, SFT and DPO yet."}
    steps = {}
    for comp in ("sft_vs_base", "dpo_vs_sft"):
        results = comparisons[comp]
        steps[comp] = {m: finding(results[m], task.metric(m), alpha, min_effect_of(task.metric(m), min_effects))
                       for m in task.primary_metrics if m in results}
    reason = " ".join(describe_step(comp, steps[comp], comparisons[comp]) for comp in ("dpo_vs_sft", "sft_vs_base"))
    dpo, sft = step_outcome(steps["dpo_vs_sft"]), step_outcome(steps["sft_vs_base"])
    if dpo == "helps":
        return {"verdict": "dpo_helps", "reason": reason}
    if dpo == "no_help":
        return {"verdict": "no_gain" if sft == "no_help" else "sft_sufficient", "reason": reason}
    open_ones = [f for f in steps["dpo_vs_sft"].values() if not f["rules_out_gain"]]
    kinds = {f["finding"] for f in steps["dpo_vs_sft"].values()}
    if "gain" in kinds:
        kind = "mixed"  # a gain on one primary metric, a significant loss on another
    elif any(f["finding"] == "underpowered" for f in open_ones):
        kind = "underpowered"
    else:
        kind = "no_difference_found"
    needed = [f["n_to_decide"] for f in open_ones if f.get("n_to_decide")]
    if needed and kind != "mixed":
        reason += f" About {max(needed)} test items would likely decide whether DPO gains min_effect."
    return {"verdict": "inconclusive", "kind": kind, "reason": reason}
