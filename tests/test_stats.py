"""Paired statistics and the verdict rule, on hand-made rows with known answers."""

import math

from scipy.stats import binomtest

from medtune.evaluate.metrics import stage_metrics
from medtune.evaluate.stats import add_findings, compare, compare_stages, mcnemar_exact, verdict
from medtune.tasks.common import Metric, Task, accuracy, label_metrics


def rows_from(correct: list[int], prefix="i") -> list[dict]:
    return [{"id": f"{prefix}{k}", "correct": bool(c), "parse_failed": False,
             "gold": "a", "pred": "a" if c else "b"} for k, c in enumerate(correct)]


def test_mcnemar_matches_binomial_on_discordant_pairs():
    a = [1] * 10 + [0] * 2 + [1] * 20
    b = [0] * 10 + [1] * 2 + [1] * 20
    res = mcnemar_exact([bool(x) for x in a], [bool(x) for x in b])
    assert (res["a_only"], res["b_only"]) == (10, 2)
    assert math.isclose(res["p_value"], binomtest(10, 12, 0.5).pvalue)
    assert res["p_value"] < 0.05


def test_mcnemar_without_disagreement_is_one():
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0


def test_compare_aligns_items_by_id():
    metric = Metric("accuracy", accuracy, "mcnemar", item_key="correct")
    a = rows_from([1, 1, 1, 0])
    b = list(reversed(rows_from([1, 1, 1, 0])))  # same answers, other order
    res = compare(metric, a, b, 200, 0)
    assert res["difference"] == 0 and res["p_value"] == 1.0 and res["n"] == 4


def test_paired_bootstrap_detects_a_clear_gain_and_not_noise():
    metric = label_metrics(["a", "b"])[1]  # macro-F1
    better = rows_from([1] * 40 + [0] * 10)
    worse = rows_from([0] * 40 + [1] * 10)
    clear = compare(metric, better, worse, 500, 0)
    assert clear["test"] == "paired bootstrap" and clear["difference"] > 0 and clear["p_value"] < 0.01
    assert clear["ci_low"] > 0
    same = compare(metric, better, better, 500, 0)
    assert same["difference"] == 0 and same["p_value"] == 1.0


def test_stage_metrics_have_ci_around_value():
    task = fake_task()
    rows = rows_from([1] * 30 + [0] * 20)
    m = stage_metrics(task, rows, 500, 0)
    acc = m["accuracy"]
    assert acc["value"] == 0.6 and acc["n"] == 50
    assert acc["ci_low"] < 0.6 < acc["ci_high"]
    assert m["parse_failure_rate"]["value"] == 0.0


def fake_task() -> Task:
    return Task(name="t", description="", system_prompt="", labels={"label": ["a", "b"]},
                metrics=[Metric("accuracy", accuracy, "mcnemar", item_key="correct")], primary_metrics=["accuracy"],
                max_new_tokens=4, build_prompt=str, reference=str, score=lambda e, o: {}, wrong_completions=list)


def comp(diff: float, p: float, half_width: float = 0.02) -> dict:
    return {"accuracy": {"difference": diff, "p_value": p, "ci_low": diff - half_width, "ci_high": diff + half_width,
                         "n": 100}}


def test_verdict_rule_on_summaries():
    task = fake_task()
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.1, 0.01)}, 0.05)["verdict"] == "dpo_helps"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.0, 0.9)}, 0.05)["verdict"] == "sft_sufficient"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(-0.1, 0.01)}, 0.05)["verdict"] == "sft_sufficient"
    # not significant, and the CI reaches a gain of min_effect: no claim of sufficiency
    wide = verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.02, 0.4, 0.15)}, 0.05)
    assert (wide["verdict"], wide["kind"]) == ("inconclusive", "underpowered")
    narrow = verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.02, 0.2, 0.04)}, 0.05)
    assert (narrow["verdict"], narrow["kind"]) == ("inconclusive", "no_difference_found")
    # a significant drop from the base model is not "SFT helps"; with DPO ruling out a gain too, neither helps
    assert verdict(task, {"sft_vs_base": comp(-0.3, 0.001), "dpo_vs_sft": comp(0.0, 1.0)}, 0.05)["verdict"] == "no_gain"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001)}, 0.05)["verdict"] == "inconclusive"  # no DPO yet
    # min_effect from the config, by metric name: a +0.1 gain is not enough where 0.2 is what matters
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.1, 0.01)}, 0.05,
                   {"accuracy": 0.2})["verdict"] == "sft_sufficient"


def stage_rows(n: int, right: set[int], prefix: str = "i") -> list[dict]:
    return rows_from([int(k in right) for k in range(n)], prefix)


def constructed(n: int, dpo_gains: int, dpo_losses: int, sft_right: int) -> dict:
    """Paired rows for base, SFT and DPO on n items: the base model gets n/10 right, SFT ``sft_right``; DPO
    turns ``dpo_gains`` of SFT's wrong items right and ``dpo_losses`` of its right ones wrong."""
    base = set(range(n // 10))
    sft = set(range(sft_right))
    dpo = (sft - set(range(dpo_losses))) | set(range(sft_right, sft_right + dpo_gains))
    return {"base": stage_rows(n, base), "sft": stage_rows(n, sft), "dpo": stage_rows(n, dpo)}


def decide(rows: dict) -> dict:
    task = fake_task()
    comparisons = add_findings(task, compare_stages(task, rows, 400, 0), 0.05)
    return verdict(task, comparisons, 0.05)


def test_verdict_on_constructed_paired_data():
    """The five cases docs/statistics.md names, each from item-level rows through the real tests and CIs."""
    # a large significant gain: DPO right on 60 more of 400 items (+0.15)
    assert decide(constructed(400, 60, 0, 240))["verdict"] == "dpo_helps"
    # a significant gain below min_effect (+0.03 on 2,000 items; the CI stays under +0.05)
    small = decide(constructed(2000, 60, 0, 1200))
    assert small["verdict"] == "sft_sufficient" and "by less than min_effect 0.05" in small["reason"]
    # a narrow CI around zero: 20 items won, 20 lost, of 2,000
    assert decide(constructed(2000, 20, 20, 1200))["verdict"] == "sft_sufficient"
    # a wide CI around zero: 4 won, 4 lost, of 40; how many items would decide it is said
    wide = decide(constructed(40, 4, 4, 24))
    assert (wide["verdict"], wide["kind"]) == ("inconclusive", "underpowered")
    needed = int(wide["reason"].split("About ")[1].split()[0])
    assert 150 < needed < 1000
    # a significant loss: DPO wrong on 60 items SFT had right
    loss = decide(constructed(400, 0, 60, 240))
    assert loss["verdict"] == "sft_sufficient" and "significantly worse, by at least min_effect" in loss["reason"]


def test_sft_that_does_not_help_is_a_finding():
    rows = constructed(2000, 20, 20, 200)  # SFT right on the base model's 200 items and no more
    assert decide(rows)["verdict"] == "no_gain"


def test_findings_name_what_each_ci_rules_out():
    from medtune.evaluate.stats import finding

    metric = fake_task().metrics[0]
    result = {"difference": 0.0, "ci_low": -0.02, "ci_high": 0.03, "p_value": 0.8, "n": 500}
    assert finding(result, metric, 0.05, 0.05)["finding"] == "equivalent"
    assert finding({**result, "ci_low": -0.2}, metric, 0.05, 0.05)["finding"] == "no_gain"
    assert finding({**result, "ci_high": 0.2}, metric, 0.05, 0.05)["finding"] == "no_loss"
    under = finding({**result, "ci_low": -0.2, "ci_high": 0.2}, metric, 0.05, 0.05)
    assert under["finding"] == "underpowered" and under["n_to_decide"] == 500 * 16  # half-width 0.2 -> 0.05
    lower = Metric("error_rate", accuracy, "mcnemar", item_key="correct", higher_is_better=False)
    assert finding({**result, "difference": -0.1, "ci_low": -0.15, "ci_high": -0.06, "p_value": 0.001},
                   lower, 0.05, 0.05)["finding"] == "gain"  # lower is better: a fall is a gain


def test_macro_f1_agrees_with_sklearn():
    import random

    from sklearn.metrics import f1_score

    from medtune.tasks.common import macro_f1

    labels = ["a", "b", "c", "d"]
    rng = random.Random(3)
    for trial in range(200):
        n = rng.randint(1, 30)
        rows = [{"gold": rng.choice(labels[:3]), "pred": rng.choice(labels + [None, "zzz"])} for _ in range(n)]
        expected = f1_score([r["gold"] for r in rows], [r["pred"] or "<unparsed>" for r in rows],
                            labels=labels, average="macro", zero_division=0)
        assert abs(macro_f1(rows, labels) - expected) < 1e-12, rows


# ---------------------------------------------------------------- issue #5: Holm, Wilcoxon, effect sizes

def test_holm_by_hand():
    from medtune.evaluate.stats import holm

    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert [round(p, 10) for p in holm([0.03, 0.01, 0.04, 0.02])] == [0.06, 0.04, 0.06, 0.06]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_wilcoxon_matches_scipy_and_exact_by_hand():
    from scipy.stats import wilcoxon

    from medtune.evaluate.stats import wilcoxon_signed_rank

    # six distinct positive differences, no zeros: exact two-sided p = 2 / 2**6
    a, b = [3, 4, 5, 5, 5, 5, 2], [2, 2, 2, 1, 0, 5, 6]  # differences 1, 2, 3, 4, 5, 0, -4
    a6, b6 = [2, 3, 4, 5, 6, 7], [1, 1, 1, 1, 1, 1]
    assert math.isclose(wilcoxon_signed_rank(a6, b6)["p_value"], 2 / 64)
    res = wilcoxon_signed_rank(a, b)
    assert math.isclose(res["p_value"], wilcoxon(a, b, zero_method="pratt").pvalue)
    assert (res["a_better"], res["b_better"], res["ties"]) == (5, 1, 1)
    assert wilcoxon_signed_rank([4, 4], [4, 4])["p_value"] == 1.0  # nothing changed


def test_rank_biserial_by_hand():
    from medtune.evaluate.stats import rank_biserial

    # |d| = 1, 2, 3, 4(-), 4(+), 5 -> ranks 1, 2, 3, 4.5, 4.5, 6; R+ = 16.5, R- = 4.5
    assert math.isclose(rank_biserial([1, 2, 3, -4, 4, 5, 0]), (16.5 - 4.5) / 21)
    assert rank_biserial([1, 2]) == 1.0 and rank_biserial([-1]) == -1.0 and rank_biserial([0, 0]) == 0.0


def test_mcnemar_p_and_effect_sizes_by_hand():
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    res = mcnemar_exact([bool(x) for x in a], [bool(x) for x in b])
    # two-sided binomial on 10 discordant pairs, 8 vs 2: 2 * P(X <= 2), X ~ Bin(10, 1/2)
    by_hand = 2 * (math.comb(10, 0) + math.comb(10, 1) + math.comb(10, 2)) / 2 ** 10
    assert math.isclose(res["p_value"], by_hand)  # 0.109375
    assert res["odds_ratio"] == 4.0 and math.isclose(res["cohens_g"], 0.3)
    one_sided = mcnemar_exact([True, True, False], [False, False, False])
    assert one_sided["odds_ratio"] == (2 + 0.5) / 0.5  # Haldane-Anscombe when a count is zero


def test_compare_uses_wilcoxon_for_likert_grades():
    metric = Metric("likert", lambda rows: sum(r["grade"] for r in rows) / len(rows), "wilcoxon", item_key="grade")
    a = [{"id": k, "grade": g} for k, g in enumerate([5, 4, 5, 4, 3, 5, 4, 4, 5, 3, 4, 5])]
    b = [{"id": k, "grade": g} for k, g in enumerate([3, 3, 4, 4, 2, 3, 4, 3, 4, 3, 2, 4])]
    res = compare(metric, a, b, 200, 0)
    from scipy.stats import wilcoxon

    assert res["test"] == "Wilcoxon signed-rank" and res["difference"] > 0
    assert math.isclose(res["p_value"], wilcoxon([r["grade"] for r in a], [r["grade"] for r in b],
                                                 zero_method="pratt").pvalue)
    assert res["effect_size_name"] == "rank-biserial correlation" and res["effect_size"] == 1.0


def test_compare_stages_adds_holm_within_primary_family():
    from medtune.evaluate.stats import compare_stages

    task = fake_task()
    rows = {"base": rows_from([0] * 20 + [1] * 10), "sft": rows_from([1] * 20 + [1] * 10),
            "dpo": rows_from([1] * 20 + [1] * 10)}
    comps = compare_stages(task, rows, 200, 0)
    raw = [comps[c]["accuracy"]["p_value"] for c in ("sft_vs_base", "dpo_vs_sft", "dpo_vs_base")]
    from medtune.evaluate.stats import holm

    assert [comps[c]["accuracy"]["p_holm"] for c in ("sft_vs_base", "dpo_vs_sft", "dpo_vs_base")] == holm(raw)
    assert comps["sft_vs_base"]["accuracy"]["holm_m"] == 3 and comps["sft_vs_base"]["accuracy"]["holm_family"] == "primary"


def test_verdict_uses_holm_adjusted_p():
    task = fake_task()
    raw_only = {"sft_vs_base": {"accuracy": {"difference": 0.3, "p_value": 0.001, "p_holm": 0.003,
                                             "ci_low": 0.2, "ci_high": 0.4, "n": 100}},
                "dpo_vs_sft": {"accuracy": {"difference": 0.1, "p_value": 0.03, "p_holm": 0.06,
                                            "ci_low": 0.01, "ci_high": 0.19, "n": 100}}}
    v = verdict(task, raw_only, 0.05)
    assert v["verdict"] == "inconclusive"  # raw p 0.03 would have said dpo_helps
    assert "Holm p=0.003" in v["reason"] and "Holm p=0.06" in v["reason"]
    raw_only["dpo_vs_sft"]["accuracy"]["p_holm"] = 0.04
    assert verdict(task, raw_only, 0.05)["verdict"] == "dpo_helps"


def test_label_breakdown_matches_sklearn_and_counts_unparsed():
    from medtune.evaluate.metrics import label_breakdown

    task = fake_task()
    rows = [{"gold": "a", "pred": "a"}, {"gold": "a", "pred": None}, {"gold": "b", "pred": "a"},
            {"gold": "b", "pred": "b"}, {"gold": "b", "pred": "b"}]
    out = label_breakdown(task, rows)
    conf = out["confusion"]["label"]
    assert conf["columns"] == ["a", "b", "unparsed"]
    assert conf["matrix"] == [[1, 0, 1], [1, 2, 0]]
    a = out["per_class"]["label"]["a"]
    assert (a["precision"], a["recall"], a["support"]) == (0.5, 0.5, 2)
    assert math.isclose(out["per_class"]["label"]["b"]["f1"], 2 * 1 * (2 / 3) / (1 + 2 / 3))
