"""Paired statistics and the verdict rule, on hand-made rows with known answers."""

import math

from scipy.stats import binomtest

from medtune.evaluate.metrics import stage_metrics
from medtune.evaluate.stats import compare, mcnemar_exact, verdict
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


def comp(diff: float, p: float) -> dict:
    return {"accuracy": {"difference": diff, "p_value": p}}


def test_verdict_rule():
    task = fake_task()
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.1, 0.01)}, 0.05)["verdict"] == "dpo_helps"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(0.02, 0.4)}, 0.05)["verdict"] == "sft_sufficient"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001), "dpo_vs_sft": comp(-0.1, 0.01)}, 0.05)["verdict"] == "sft_sufficient"
    assert verdict(task, {"sft_vs_base": comp(0.01, 0.6), "dpo_vs_sft": comp(0.01, 0.7)}, 0.05)["verdict"] == "inconclusive"
    # a significant *drop* from SFT is not "SFT beat base"
    assert verdict(task, {"sft_vs_base": comp(-0.3, 0.001), "dpo_vs_sft": comp(0.0, 1.0)}, 0.05)["verdict"] == "inconclusive"
    assert verdict(task, {"sft_vs_base": comp(0.3, 0.001)}, 0.05)["verdict"] == "inconclusive"  # no DPO yet


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
    raw_only = {"sft_vs_base": {"accuracy": {"difference": 0.3, "p_value": 0.001, "p_holm": 0.003}},
                "dpo_vs_sft": {"accuracy": {"difference": 0.1, "p_value": 0.03, "p_holm": 0.06}}}
    v = verdict(task, raw_only, 0.05)
    assert v["verdict"] == "sft_sufficient"  # raw p 0.03 would have said dpo_helps
    assert "Holm p=0.003" in v["reason"]
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
