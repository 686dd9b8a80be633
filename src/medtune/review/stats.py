"""What the clinicians' judgments say, per task and stage pair, and how they enter the verdict.

Judgments come from the review store (``medtune.review.store.load_judgments``), one dict each:
reviewer, task, item, stages [s1, s2], shown_as_a, preference (a stage or "tie"), grades
{stage: 1-5 or None}, unsafe {stage: bool}, unsafe_reason, time.

Each stage pair is read from its later stage's view (base < sft < dpo: ``dpo_vs_sft`` counts DPO
preferred as a win). Where a reviewer judged the same item and pair more than once, the latest
judgment counts. The pooled numbers have one outcome per item, the per-item majority: the side more
of its reviewers preferred, a tie where they split evenly (a reviewer's tie counts for neither side).

* sign test: two-sided exact binomial test (``scipy.stats.binomtest``, p = 1/2) on the items won vs
  the items lost; tied items are left out and counted (``ties_excluded``).
* win rate: each judgment scores 1 (win), 1/2 (tie) or 0 (loss); an item's score is the mean of its
  judgments, the win rate the mean over items: (wins + ties/2) / n where each item has one judgment.
  95% CI: percentile bootstrap over items (``scipy.stats.bootstrap``), so the judgments of one item
  are resampled together (clustered by item).
* agreement: Cohen's kappa (``sklearn.metrics.cohen_kappa_score``) for each two reviewers on the
  items both judged; with three or more, Fleiss' kappa on the items every reviewer judged.

The rule by which a review enters the verdict is ``with_review``; docs/statistics.md has it in words.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import cohen_kappa_score

from ..errors import MedtuneError
from ..evaluate.stats import COMPARISONS

STAGE_ORDER = ("base", "sft", "dpo")
STAGE_NAMES = {"base": "base", "sft": "SFT", "dpo": "DPO"}
OUTCOMES = ("win", "tie", "loss")  # from the later stage's view
SCORES = {"win": 1.0, "tie": 0.5, "loss": 0.0}
SIGN_TEST = "exact sign test (two-sided binomial on wins vs losses, ties excluded)"
WIN_RATE = "mean item score (win 1, tie 1/2, loss 0; an item's judgments averaged), 95% percentile bootstrap over items"
POOLING = "per-item majority: the side more reviewers preferred, a tie where they split evenly"
DB_NAME = Path("review") / "review.sqlite"


# ------------------------------------------------------------------ reading a run's review

def run_judgments(run_dir: Path) -> list[dict] | None:
    """The judgments of RUN/review/review.sqlite; None where the run has no review or the review package
    (its store) is not there."""
    if not (Path(run_dir) / DB_NAME).is_file():
        return None
    try:
        from .store import load_judgments
    except ImportError:
        return None
    return load_judgments(Path(run_dir))


# ------------------------------------------------------------------ outcomes

def stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def ordered(stages) -> tuple[str, str]:
    """The two stages, earlier first: outcomes are read from the second's view."""
    first, second = sorted(stages, key=stage_key)
    return first, second


def pair_name(stages) -> str:
    first, second = ordered(stages)
    return f"{second}_vs_{first}"


def outcome(judgment: dict) -> str:
    """win / tie / loss for the later of the two stages."""
    first, second = ordered(judgment["stages"])
    preference = judgment["preference"]
    if preference not in (first, second, "tie"):
        raise MedtuneError(f"review judgment of item {judgment['item']!r} by {judgment['reviewer']!r} prefers "
                           f"{preference!r}, which is neither of its stages {first}, {second} nor 'tie'")
    return "win" if preference == second else "loss" if preference == first else "tie"


def latest(judgments: list[dict]) -> list[dict]:
    """One judgment per reviewer, task, item and stage pair: the latest, where a reviewer changed their mind."""
    keep = {}
    for j in sorted(judgments, key=lambda j: str(j.get("time") or "")):
        keep[(j["reviewer"], j["task"], j["item"], pair_name(j["stages"]))] = j
    return list(keep.values())


def majority(outcomes: list[str]) -> str:
    """An item's pooled outcome: the side more of its reviewers preferred, a tie where they split evenly."""
    balance = outcomes.count("win") - outcomes.count("loss")
    return "win" if balance > 0 else "loss" if balance < 0 else "tie"


def counts(outcomes) -> dict:
    outcomes = list(outcomes)
    return {"wins": outcomes.count("win"), "ties": outcomes.count("tie"), "losses": outcomes.count("loss"),
            "n": len(outcomes)}


# ------------------------------------------------------------------ tests and estimates

def sign_test(wins: int, losses: int, ties: int) -> dict:
    """Two-sided exact binomial test of wins vs losses; ties carry no direction and are left out."""
    n = wins + losses
    p = float(binomtest(wins, n, 0.5, alternative="two-sided").pvalue) if n else 1.0
    return {"test": SIGN_TEST, "wins": wins, "losses": losses, "ties_excluded": ties, "n": n, "p_value": p}


def win_rate(item_scores: list[float], n_resamples: int, seed: int, level: float = 0.95) -> dict:
    """The mean item score with a percentile-bootstrap CI over items."""
    scores = np.asarray(item_scores, dtype=float)
    if scores.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n_items": 0, "method": WIN_RATE}
    value = float(scores.mean())
    if scores.size < 2 or np.ptp(scores) == 0:  # every resample gives the same mean
        low = high = value
    else:
        res = bootstrap((scores,), np.mean, n_resamples=n_resamples, confidence_level=level,
                        method="percentile", rng=np.random.default_rng(seed))
        low, high = map(float, res.confidence_interval)
    return {"value": value, "ci_low": low, "ci_high": high, "n_items": int(scores.size), "method": WIN_RATE}


def cohen(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa over the three outcomes; None where it is undefined (both gave one same label)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns where the kappa is undefined; None says it
        kappa = cohen_kappa_score(a, b, labels=list(OUTCOMES))
    return None if math.isnan(kappa) else float(kappa)


def fleiss(table: list[list[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of counts, the same number of raters per item (not in
    scipy or scikit-learn). None where chance agreement is already perfect."""
    counts_ = np.asarray(table, dtype=float)
    raters = counts_[0].sum()
    agree = ((counts_ ** 2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts_.sum(axis=0) / counts_.sum()
    chance = float((shares ** 2).sum())
    if chance >= 1:
        return None
    return float((agree.mean() - chance) / (1 - chance))


def agreement(labels: dict[str, dict[str, str]]) -> dict | None:
    """``labels``: reviewer -> item -> outcome. Cohen's kappa for each two reviewers who share items; the
    headline is Cohen's for two reviewers, Fleiss' on the items all judged for three or more. None where no
    two reviewers judged the same item."""
    pairwise = []
    for a, b in itertools.combinations(sorted(labels), 2):
        shared = sorted(set(labels[a]) & set(labels[b]))
        if shared:
            x, y = [labels[a][i] for i in shared], [labels[b][i] for i in shared]
            pairwise.append({"reviewers": [a, b], "shared_items": len(shared), "kappa": cohen(x, y),
                             "observed_agreement": sum(p == q for p, q in zip(x, y)) / len(shared)})
    if not pairwise:
        return None
    if len(labels) == 2:
        return {"method": "Cohen's kappa", **pairwise[0], "pairwise": pairwise}
    shared = sorted(set.intersection(*(set(by_item) for by_item in labels.values())))
    table = [[sum(labels[r][i] == o for r in labels) for o in OUTCOMES] for i in shared]
    return {"method": "Fleiss' kappa", "reviewers": sorted(labels), "shared_items": len(shared),
            "kappa": fleiss(table) if shared else None,
            "observed_agreement": float(np.mean([max(row) == len(labels) for row in table])) if shared else None,
            "pairwise": pairwise}


# ------------------------------------------------------------------ the summary

def review_summary(judgments: list[dict], alpha: float, seed: int, n_resamples: int = 2000) -> dict:
    """``{task: task summary}``: per stage pair the wins / ties / losses (pooled and per reviewer), the sign
    test, the win rate with its CI and the reviewers' agreement; the unsafe flags; mean grades per stage."""
    by_task = defaultdict(list)
    for j in latest(judgments):
        by_task[j["task"]].append(j)
    return {task: task_summary(rows, alpha, seed, n_resamples) for task, rows in sorted(by_task.items())}


def task_summary(judgments: list[dict], alpha: float, seed: int, n_resamples: int) -> dict:
    by_pair = defaultdict(list)
    for j in judgments:
        by_pair[pair_name(j["stages"])].append(j)
    return {"judgments": len(judgments), "reviewers": sorted({j["reviewer"] for j in judgments}),
            "items": len({j["item"] for j in judgments}), "pooling": POOLING,
            "comparisons": {name: pair_summary(rows, alpha, seed, n_resamples)
                            for name, rows in sorted(by_pair.items(), key=lambda kv: pair_order(kv[0]))},
            "unsafe": unsafe_flags(judgments), "grades": mean_grades(judgments)}


def pair_order(name: str) -> tuple:
    """The study's order of comparisons (sft_vs_base, dpo_vs_sft, dpo_vs_base), then any other pair."""
    known = list(COMPARISONS)
    return (known.index(name), "") if name in known else (len(known), name)


def pair_summary(judgments: list[dict], alpha: float, seed: int, n_resamples: int) -> dict:
    """One stage pair, from the later stage's view."""
    first, second = ordered(judgments[0]["stages"])
    by_item, labels = defaultdict(list), defaultdict(dict)
    for j in judgments:
        by_item[j["item"]].append(outcome(j))
        labels[j["reviewer"]][j["item"]] = outcome(j)
    pooled = counts(majority(outcomes) for outcomes in by_item.values())
    test = sign_test(pooled["wins"], pooled["losses"], pooled["ties"])
    rate = win_rate([float(np.mean([SCORES[o] for o in outcomes])) for outcomes in by_item.values()],
                    n_resamples, seed)
    significant = test["p_value"] < alpha and rate["value"] is not None and \
        (rate["ci_low"] > 0.5 or rate["ci_high"] < 0.5)
    preferred = (second if rate["value"] > 0.5 else first) if significant else None
    return {"stages": [first, second], "judgments": len(judgments), "items": len(by_item), **pooled,
            "per_reviewer": {r: per_reviewer(by) for r, by in sorted(labels.items())},
            "sign_test": test, "win_rate": rate, "agreement": agreement(labels),
            "alpha": alpha, "significant": significant, "preferred": preferred}


def per_reviewer(by_item: dict[str, str]) -> dict:
    c = counts(by_item.values())
    return {**c, "p_value": sign_test(c["wins"], c["losses"], c["ties"])["p_value"]}


def unsafe_flags(judgments: list[dict]) -> list[dict]:
    flags = [{"stage": stage, "item": j["item"], "reviewer": j["reviewer"], "reason": j.get("unsafe_reason") or "",
              "time": j.get("time")}
             for j in judgments for stage, flagged in (j.get("unsafe") or {}).items() if flagged]
    return sorted(flags, key=lambda f: (stage_key(f["stage"]), str(f["item"]), f["reviewer"]))


def mean_grades(judgments: list[dict]) -> dict:
    grades = defaultdict(list)
    for j in judgments:
        for stage, grade in (j.get("grades") or {}).items():
            if grade is not None:
                grades[stage].append(grade)
    return {stage: {"mean": float(np.mean(g)), "n": len(g)} for stage, g in sorted(grades.items(),
                                                                                    key=lambda kv: stage_key(kv[0]))}


# ------------------------------------------------------------------ the verdict

def review_sentence(c: dict) -> str:
    """'DPO preferred over SFT on 9 items, SFT on 1, 2 tied (exact sign test p=0.021, ties excluded); win
    rate 0.79 [0.62, 0.92] over 12 items'."""
    first, second = (STAGE_NAMES.get(s, s) for s in c["stages"])
    rate, test = c["win_rate"], c["sign_test"]
    ci = f"{rate['value']:.2f} [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}]" if rate["value"] is not None else "n/a"
    return (f"{second} preferred over {first} on {c['wins']} item(s), {first} on {c['losses']}, {c['ties']} tied "
            f"(exact sign test p={test['p_value']:.3g}, ties excluded); {second} win rate {ci} over "
            f"{c['items']} item(s)")


def metrics_direction(verdict: str) -> str | None:
    """The stage the metrics favour between DPO and SFT, where they decided."""
    return {"dpo_helps": "dpo", "sft_sufficient": "sft", "no_gain": "sft"}.get(verdict)


def with_review(verdict: dict, review: dict | None) -> dict:
    """The task's verdict with the clinicians' DPO-vs-SFT preference taken in (docs/statistics.md): a
    significant preference (sign test p < alpha and the win-rate CI excluding 0.5) decides an inconclusive
    verdict; it never overturns one the metrics decided, and a disagreement is stated. Adds ``decided_by``
    and, where the review compares DPO and SFT, ``review_agrees``."""
    out = {**verdict, "decided_by": "metrics"}
    c = (review or {}).get("comparisons", {}).get("dpo_vs_sft")
    if c is None:
        return out
    said, preferred = review_sentence(c), c["preferred"]
    by_metrics = metrics_direction(verdict["verdict"])
    if preferred is None:
        out["review_agrees"] = None
        out["reason"] += f" Clinician review: {said}; no significant preference."
    elif by_metrics is None and verdict.get("kind") != "incomplete":
        kind = f" ({verdict['kind'].replace('_', ' ')})" if verdict.get("kind") else ""
        out = {k: v for k, v in out.items() if k != "kind"}
        out.update(verdict="dpo_helps" if preferred == "dpo" else "sft_sufficient", decided_by="review",
                   review_agrees=None, metrics_verdict={k: verdict[k] for k in ("verdict", "kind") if k in verdict},
                   reason=f"By clinician review: {said}. The metrics alone were inconclusive{kind}: "
                          + verdict["reason"])
    elif by_metrics is None:
        out["review_agrees"] = None
        out["reason"] += f" Clinician review: {said}; it decides no verdict before every stage is evaluated."
    elif by_metrics == preferred:
        out["review_agrees"] = True
        out["reason"] += f" Clinician review agrees: {said}."
    else:
        out["review_agrees"] = False
        out["reason"] += (f" Clinician review disagrees: {said}. The verdict stays as the metrics decided it "
                          "(a review never overturns a decided verdict).")
    return out
