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
                max_new_tokens=4, build_prompt=str, reference=str, score=lambda e, o: {}, wrong_completions=list,
                generate_examples=lambda r, n: [])


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
