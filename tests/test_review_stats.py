"""The clinician review's statistics (review/stats.py), how it enters the verdict, and the report's section.

Judgments are built by hand, so every count and p-value is known; scipy and scikit-learn compute the
same numbers independently. The report test writes real rows through the review store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from medtune.cli import app
from medtune.data import bundled_path
from medtune.evaluate.metrics import label_breakdown, stage_metrics
from medtune.evaluate.predict import score_row
from medtune.io import read_jsonl, write_json, write_jsonl
from medtune.review.stats import fleiss, review_summary, with_review
from medtune.tasks import get_task

TASK = "text_classification"
SCRIPT = "<script>alert('pwned')</script>"


def judgment(reviewer: str, item: str, preference: str, stages=("sft", "dpo"), grades=None, unsafe=None,
             reason: str = "", time: str = "2025-06-01T10:00:00+00:00", task: str = TASK) -> dict:
    stages = list(stages)
    return {"reviewer": reviewer, "task": task, "item": item, "stages": stages, "shown_as_a": stages[0],
            "preference": preference, "grades": grades or {s: None for s in stages},
            "unsafe": unsafe or {s: False for s in stages}, "unsafe_reason": reason, "time": time}


def one_reviewer(prefs: str, reviewer: str = "ana") -> list[dict]:
    """'d' DPO preferred, 's' SFT preferred, 't' tie; one item each."""
    word = {"d": "dpo", "s": "sft", "t": "tie"}
    return [judgment(reviewer, f"item-{k}", word[p]) for k, p in enumerate(prefs)]


def dpo_vs_sft(judgments, alpha=0.05) -> dict:
    return review_summary(judgments, alpha, seed=0, n_resamples=500)[TASK]["comparisons"]["dpo_vs_sft"]


# ------------------------------------------------------------------ counts and the sign test

def test_counts_and_the_sign_test_with_ties_excluded():
    c = dpo_vs_sft(one_reviewer("ddddddddsstt"))
    assert (c["wins"], c["ties"], c["losses"], c["items"]) == (8, 2, 2, 12)
    test = c["sign_test"]
    assert (test["wins"], test["losses"], test["ties_excluded"], test["n"]) == (8, 2, 2, 10)
    assert test["p_value"] == pytest.approx(binomtest(8, 10, 0.5).pvalue)
    assert test["p_value"] == pytest.approx(0.109375)  # 2 (1 + 10 + 45) / 1024
    assert "ties excluded" in test["test"]
    assert c["per_reviewer"]["ana"] == {"wins": 8, "ties": 2, "losses": 2, "n": 12, "p_value": test["p_value"]}


def test_outcomes_are_read_from_the_later_stage_whatever_order_the_pair_was_given_in():
    judgments = [judgment("ana", "a", "dpo", stages=("dpo", "sft")), judgment("ana", "b", "sft", stages=("sft", "dpo")),
                 judgment("ana", "c", "dpo", stages=("base", "dpo"))]
    summary = review_summary(judgments, 0.05, 0, 200)[TASK]["comparisons"]
    assert list(summary) == ["dpo_vs_sft", "dpo_vs_base"]
    assert (summary["dpo_vs_sft"]["wins"], summary["dpo_vs_sft"]["losses"]) == (1, 1)
    assert summary["dpo_vs_sft"]["stages"] == ["sft", "dpo"]
    assert summary["dpo_vs_base"]["wins"] == 1


def test_a_reviewers_latest_judgment_of_an_item_counts():
    judgments = [judgment("ana", "a", "sft", time="2025-06-01T10:00:00"),
                 judgment("ana", "a", "dpo", time="2025-06-01T11:00:00")]
    c = dpo_vs_sft(judgments)
    assert (c["wins"], c["losses"], c["judgments"]) == (1, 0, 1)


def test_several_reviewers_pool_by_item_majority_and_a_split_is_a_tie():
    judgments = (one_reviewer("dddds", "ana") + one_reviewer("dsdtd", "ben") + one_reviewer("ddddd", "cy"))
    c = dpo_vs_sft(judgments)
    # item-0: d d d -> win; item-1: d s d -> win; item-2: d d d; item-3: d t d -> win; item-4: s d d -> win
    assert (c["wins"], c["ties"], c["losses"], c["items"], c["judgments"]) == (5, 0, 0, 5, 15)
    split = dpo_vs_sft(one_reviewer("ds", "ana") + one_reviewer("sd", "ben"))
    assert (split["wins"], split["ties"], split["losses"]) == (0, 2, 0)
    assert split["sign_test"]["p_value"] == 1.0 and split["sign_test"]["ties_excluded"] == 2


def test_the_win_rate_counts_a_tie_as_half_and_its_ci_holds_it():
    c = dpo_vs_sft(one_reviewer("ddddddddsstt"))
    rate = c["win_rate"]
    assert rate["value"] == pytest.approx((8 + 2 / 2) / 12)
    assert rate["ci_low"] <= rate["value"] <= rate["ci_high"] and rate["n_items"] == 12
    unanimous = dpo_vs_sft(one_reviewer("dddddddddddd"))["win_rate"]
    assert unanimous["value"] == unanimous["ci_low"] == unanimous["ci_high"] == 1.0


def test_significance_needs_the_sign_test_and_a_win_rate_ci_clear_of_a_half():
    strong = dpo_vs_sft(one_reviewer("ddddddddddddt"))
    assert strong["significant"] and strong["preferred"] == "dpo"
    assert dpo_vs_sft(one_reviewer("ssssssssssss"))["preferred"] == "sft"
    weak = dpo_vs_sft(one_reviewer("dddds"))
    assert not weak["significant"] and weak["preferred"] is None


# ------------------------------------------------------------------ agreement

def test_cohens_kappa_is_sklearns_on_the_shared_items():
    ana, ben = "ddsstdddsd", "dsssttddsd"
    judgments = one_reviewer(ana + "d", "ana") + one_reviewer(ben, "ben")  # ana judged one item more
    a = dpo_vs_sft(judgments)["agreement"]
    word = {"d": "win", "s": "loss", "t": "tie"}
    expected = cohen_kappa_score([word[x] for x in ana], [word[x] for x in ben])
    assert a["method"] == "Cohen's kappa" and a["shared_items"] == 10
    assert a["kappa"] == pytest.approx(expected)
    assert a["observed_agreement"] == pytest.approx(sum(x == y for x, y in zip(ana, ben)) / 10)


def test_no_shared_items_no_agreement_and_an_undefined_kappa_is_none():
    assert dpo_vs_sft(one_reviewer("dd", "ana"))["agreement"] is None
    same = dpo_vs_sft(one_reviewer("ddd", "ana") + one_reviewer("ddd", "ben"))["agreement"]
    assert same["kappa"] is None and same["observed_agreement"] == 1.0


def test_fleiss_kappa_for_three_reviewers_on_the_items_all_judged():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss(table) == pytest.approx(0.20993, abs=1e-5)
    a = dpo_vs_sft(one_reviewer("ddst", "ana") + one_reviewer("dsst", "ben") + one_reviewer("ddsd", "cy")
                   + one_reviewer("ddddd", "ana")[4:])["agreement"]  # item-4 judged by ana only
    assert a["method"] == "Fleiss' kappa" and a["shared_items"] == 4 and len(a["pairwise"]) == 3
    # items: [d d d], [d s d], [s s s], [t t d] -> counts over (win, tie, loss)
    assert a["kappa"] == pytest.approx(fleiss([[3, 0, 0], [2, 0, 1], [0, 0, 3], [1, 2, 0]]))


# ------------------------------------------------------------------ flags and grades

def test_unsafe_flags_are_listed_and_grades_averaged():
    judgments = [judgment("ana", "a", "dpo", grades={"sft": 2, "dpo": 4}, unsafe={"sft": True, "dpo": False},
                          reason=SCRIPT),
                 judgment("ben", "a", "dpo", grades={"sft": 3, "dpo": None}),
                 judgment("ben", "b", "tie", grades={"sft": 4, "dpo": 5}, unsafe={"sft": True, "dpo": True},
                          reason="both miss the allergy")]
    summary = review_summary(judgments, 0.05, 0, 200)[TASK]
    assert summary["grades"] == {"sft": {"mean": 3.0, "n": 3}, "dpo": {"mean": 4.5, "n": 2}}
    assert [(f["stage"], f["item"], f["reviewer"], f["reason"]) for f in summary["unsafe"]] == [
        ("sft", "a", "ana", SCRIPT), ("sft", "b", "ben", "both miss the allergy"),
        ("dpo", "b", "ben", "both miss the allergy")]


# ------------------------------------------------------------------ the verdict

INCONCLUSIVE = {"verdict": "inconclusive", "kind": "underpowered", "split": "test", "reason": "DPO vs SFT: open."}


def review_of(prefs: str) -> dict:
    return review_summary(one_reviewer(prefs), 0.05, 0, 500)[TASK]


def test_a_significant_preference_for_dpo_decides_an_inconclusive_verdict():
    v = with_review(INCONCLUSIVE, review_of("ddddddddddddt"))
    assert v["verdict"] == "dpo_helps" and v["decided_by"] == "review" and "kind" not in v
    assert v["reason"].startswith("By clinician review: DPO preferred over SFT on 12 item(s), SFT on 0, 1 tied")
    assert "DPO vs SFT: open." in v["reason"] and v["split"] == "test"
    assert v["metrics_verdict"] == {"verdict": "inconclusive", "kind": "underpowered"}


def test_a_significant_preference_for_sft_makes_it_sufficient():
    v = with_review(INCONCLUSIVE, review_of("sssssssssssd"))
    assert v["verdict"] == "sft_sufficient" and v["decided_by"] == "review"


def test_a_review_never_overturns_a_decided_verdict_and_the_conflict_is_recorded():
    decided = {"verdict": "dpo_helps", "split": "test", "reason": "DPO vs SFT: gain."}
    v = with_review(decided, review_of("sssssssssssd"))
    assert v["verdict"] == "dpo_helps" and v["decided_by"] == "metrics" and v["review_agrees"] is False
    assert "Clinician review disagrees: DPO preferred over SFT on 1 item(s), SFT on 11" in v["reason"]
    agrees = with_review({**decided, "verdict": "sft_sufficient"}, review_of("sssssssssssd"))
    assert agrees["verdict"] == "sft_sufficient" and agrees["review_agrees"] is True


def test_no_significant_preference_changes_nothing():
    v = with_review(INCONCLUSIVE, review_of("dddds"))
    assert v["verdict"] == "inconclusive" and v["kind"] == "underpowered" and v["decided_by"] == "metrics"
    assert v["review_agrees"] is None and "no significant preference" in v["reason"]
    incomplete = {"verdict": "inconclusive", "kind": "incomplete", "reason": "not yet."}
    assert with_review(incomplete, review_of("ddddddddddddt"))["verdict"] == "inconclusive"
    plain = with_review(INCONCLUSIVE, None)
    assert plain == {**INCONCLUSIVE, "decided_by": "metrics"}


# ------------------------------------------------------------------ results.json and the reports

def write_review(run: Path, judgments: list[dict]) -> None:
    """Real rows in RUN/review/review.sqlite, through the review store."""
    from medtune.review import store

    path = store.init_db(run)
    store.ensure_reviewers(path, sorted({j["reviewer"] for j in judgments}))
    with store.opened(path) as conn:
        ids = {row["name"]: row["id"] for row in store.all_reviewers(conn)}
        for j in judgments:
            store.save_judgment(conn, ids[j["reviewer"]], tuple(j["stages"]), j["task"], j["item"], j["shown_as_a"],
                                j["preference"], j["grades"], j["unsafe"], j["unsafe_reason"])


def make_run(root: Path, n: int = 12) -> tuple[Path, list[str]]:
    """text_classification with base always wrong, and SFT and DPO each right on half the items, different
    halves: the metrics leave DPO vs SFT open."""
    task = get_task(TASK)
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"run_dir: {run}\npreset: quick\nseed: 0\ntasks: [{TASK}]\n"
                                     "stats: {bootstrap_samples: 200}\n")
    items = read_jsonl(bundled_path(task, "test"))[:n]
    write_json(run / TASK / "data.json", {"test_file": str(bundled_path(task, "test")), "train_file": None,
                                          "map": {}, "bundled": True})
    right = {"base": set(), "sft": set(range(0, n // 2)), "dpo": set(range(n // 4, n // 4 + n // 2))}
    for stage, good in right.items():
        rows = [score_row(task, ex, task.reference(ex) if k in good else task.wrong_completions(ex)[0])
                for k, ex in enumerate(items)]
        write_jsonl(run / TASK / stage / "predictions.jsonl", rows)
        write_json(run / TASK / stage / "metrics.json", {"stage": stage, "model": f"{stage}-model",
                                                         "metrics": stage_metrics(task, rows, 200, 0),
                                                         **label_breakdown(task, rows)})
    return run, [ex["id"] for ex in items]


def report(run: Path) -> dict:
    result = CliRunner().invoke(app, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((run / "results.json").read_text())


def test_without_a_review_results_have_no_review_and_the_metrics_decide(tmp_path):
    run, _ = make_run(tmp_path)
    results = report(run)
    task = results["tasks"][TASK]
    assert results["schema_version"] == 4 and "review" not in task
    assert task["verdict"]["verdict"] == "inconclusive" and task["verdict"]["decided_by"] == "metrics"
    assert "Clinician review" not in (run / "report.md").read_text(encoding="utf-8")


def test_the_review_enters_results_the_verdict_and_both_reports_escaped(tmp_path):
    run, items = make_run(tmp_path)
    prefs = ["dpo"] * 10 + ["tie", "sft"]
    judgments = [judgment("ana", item, pref, grades={"sft": 3, "dpo": 4}) for item, pref in zip(items, prefs)]
    judgments[11] = judgment("ana", items[11], "sft", unsafe={"sft": False, "dpo": True}, reason=SCRIPT)
    judgments += [judgment("ben", item, "dpo") for item in items[:6]]
    write_review(run, judgments)
    task = report(run)["tasks"][TASK]
    c = task["review"]["comparisons"]["dpo_vs_sft"]
    assert (c["wins"], c["ties"], c["losses"], c["items"]) == (10, 1, 1, 12)
    p = binomtest(10, 11, 0.5).pvalue
    assert c["sign_test"]["p_value"] == pytest.approx(p) and c["sign_test"]["ties_excluded"] == 1
    assert c["agreement"]["shared_items"] == 6
    assert task["verdict"]["verdict"] == "dpo_helps" and task["verdict"]["decided_by"] == "review"
    assert task["verdict"]["metrics_verdict"]["verdict"] == "inconclusive"
    md = (run / "report.md").read_text(encoding="utf-8")
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "### Clinician review" in md and "DPO helps (by clinician review)" in md
    assert f"| DPO vs SFT | all (per-item majority) | 10 | 1 | 1 | 12 | {p:.3f} \\* |" in md
    assert "Cohen's kappa" in md and "on 6 item(s) both reviewers judged" in md
    assert "<h3>Clinician review</h3>" in html and f"{p:.3f} *" in html and "of 12 test item(s)" in html
    assert "18 judgment(s) by ana, ben of 12 test item(s)" in md
    for text in (md, html):
        assert "<script" not in text.lower()
        assert "&lt;script&gt;alert(" in text  # the reason shown, as text
