"""`medtune report RUN` on a synthetic run directory: report.md and a self-contained report.html.

The run directory is built without any model: real bundled test items, made-up
answers for base/SFT/DPO scored by each task's own ``score``; the CLI must rebuild
results.json, report.md and report.html from it alone.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.data import bundled_path
from medtune.evaluate.metrics import label_breakdown, stage_metrics
from medtune.evaluate.predict import score_row
from medtune.io import read_jsonl, write_json, write_jsonl
from medtune.tasks import get_task

TASKS = ["text_classification", "triage", "summarization", "clinical_reasoning"]
N = 24
SCRIPT = "<script>alert('pwned')</script>"
# share of items each stage answers with the reference; DPO clearly best
SKILL = {"base": 0.1, "sft": 0.45, "dpo": 0.95}


def make_run(root: Path) -> Path:
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"run_dir: {run}\npreset: quick\nseed: 0\ntasks: {json.dumps(TASKS)}\n"
                                     "stats: {bootstrap_samples: 200}\n")
    for name in TASKS:
        task = get_task(name)
        items = read_jsonl(bundled_path(task, "test"))
        test = items[:N]
        # text_classification also has a shifted split (other items stand in for it: the report reads any rows)
        shifted = items[N:2 * N] if name == "text_classification" else []
        write_json(run / name / "data.json", {"test_file": str(bundled_path(task, "test")), "train_file": None,
                                              "map": {}, "bundled": True})
        for stage, skill in SKILL.items():
            rows = answers(task, test, skill, f"{name}-{stage}")
            saved = {"stage": stage, "model": f"{stage}-model", "metrics": stage_metrics(task, rows, 200, 0),
                     **label_breakdown(task, rows), "elapsed_s": 1.0}
            if shifted:  # what was learned carries over less: half the skill
                shifted_rows = answers(task, shifted, skill / 2, f"{name}-{stage}-shifted")
                write_jsonl(run / name / stage / "predictions_shifted.jsonl", shifted_rows)
                saved["shifted"] = {"metrics": stage_metrics(task, shifted_rows, 200, 0)}
            write_jsonl(run / name / stage / "predictions.jsonl", rows)
            write_json(run / name / stage / "metrics.json", saved)
        if task.labels:
            write_json(run / name / "baselines.json", {"majority": {m.name: 0.3 for m in task.metrics},
                                                       "tfidf_logreg": {m.name: 0.7 for m in task.metrics}})
    return run


def answers(task, examples: list[dict], skill: float, seed: str) -> list[dict]:
    """Scored rows: the reference for a share ``skill`` of the items, else a wrong answer (the base model's
    carries markup the report must escape)."""
    rng = random.Random(seed)
    rows = []
    for k, ex in enumerate(examples):
        if rng.random() < skill:
            output = task.reference(ex)
        elif seed.split("-")[1] == "base":
            output = f"{SCRIPT} I am not sure & cannot say"
        else:
            wrong = task.wrong_completions(ex)
            output = wrong[k % len(wrong)] if wrong else "unclear"
        rows.append(score_row(task, ex, output))
    return rows


@pytest.fixture(scope="module")
def built_run(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("report"))
    result = CliRunner().invoke(app, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


def test_report_html_is_self_contained_and_complete(built_run):
    html = (built_run / "report.html").read_text(encoding="utf-8")
    results = json.loads((built_run / "results.json").read_text())
    assert results["schema_version"] == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I), "external resource in report.html"
    assert "<link" not in html and "<script" not in html.lower()
    assert html.count("data:image/png;base64,") >= len(TASKS)  # a bar chart per task, plus confusion matrices
    # the summary table comes first, before any task section
    assert html.index('id="summary"') < min(html.index(f'id="{name}"') for name in TASKS)
    for name, task in results["tasks"].items():
        assert f'id="{name}"' in html
        assert task["verdict"]["verdict"] in ("sft_sufficient", "dpo_helps", "no_gain", "inconclusive")
        assert task["verdict"]["split"] == "test"
        words = {"sft_sufficient": "SFT is sufficient", "dpo_helps": "DPO helps", "no_gain": "neither step helps",
                 "inconclusive": "inconclusive"}
        assert words[task["verdict"]["verdict"]] in html
        for comp in task["comparisons"].values():
            for c in comp.values():
                for key in ("p_value", "p_holm"):
                    p = c[key]
                    assert ("<0.001" if p < 0.001 else f"{p:.3f}") in html.replace("&lt;", "<")
                assert c["finding"] and c["min_effect"] in (0.05, 0.25)
    assert "p (Holm)" in html and "effect size" in html and "the CI rules out" in html
    assert "Test examples" in html and "(the stages disagree)" in html


def test_the_shifted_split_is_reported_beside_the_in_distribution_one(built_run):
    results = json.loads((built_run / "results.json").read_text())
    tc = results["tasks"]["text_classification"]
    assert set(tc["shifted"]["stages"]) == {"base", "sft", "dpo"} and tc["shifted"]["verdict"]["verdict"]
    assert "shifted" not in results["tasks"]["triage"]
    sft_test = tc["stages"]["sft"]["metrics"]["macro_f1"]["value"]
    sft_shifted = tc["shifted"]["stages"]["sft"]["metrics"]["macro_f1"]["value"]
    assert sft_shifted != sft_test
    md = (built_run / "report.md").read_text(encoding="utf-8")
    assert f"{sft_shifted:.3f}" in md and "SFT (shifted)" in md and "| text_classification | shifted |" in md
    assert "On the shifted test split:" in md
    html = (built_run / "report.html").read_text(encoding="utf-8")
    assert f"{sft_shifted:.3f}" in html and "SFT (shifted)" in html and "On the shifted test split" in html


def test_the_verdict_can_rest_on_the_shifted_split(built_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(built_run, run)
    config = (run / "config.yaml").read_text().replace("stats: {bootstrap_samples: 200}",
                                                       "stats: {bootstrap_samples: 200, verdict_on: shifted}")
    (run / "config.yaml").write_text(config.replace(str(built_run), str(run)))
    result = CliRunner().invoke(app, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((run / "results.json").read_text())
    tc, triage = results["tasks"]["text_classification"], results["tasks"]["triage"]
    assert tc["verdict"]["split"] == "shifted" and tc["verdict"]["reason"] == tc["shifted"]["verdict"]["reason"]
    assert triage["verdict"]["split"] == "test" and "has no shifted split" in triage["verdict"]["reason"]


def test_model_output_is_escaped(built_run):
    html = (built_run / "report.html").read_text(encoding="utf-8")
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(" in html
    md = (built_run / "report.md").read_text(encoding="utf-8")
    assert "Test examples" in md and SCRIPT not in md


def test_label_tasks_have_per_class_scores_and_confusion(built_run):
    results = json.loads((built_run / "results.json").read_text())
    triage = results["tasks"]["triage"]["stages"]["dpo"]
    assert set(triage["per_class"]) == {"personnel", "urgency"}
    conf = triage["confusion"]["personnel"]
    assert conf["columns"][-1] == "unparsed" and len(conf["matrix"]) == len(conf["labels"])
    assert sum(map(sum, conf["matrix"])) == N
    base_tc = results["tasks"]["text_classification"]["stages"]["base"]["confusion"]["label"]
    assert sum(row[-1] for row in base_tc["matrix"]) > 0  # the chatter lands in "unparsed"
    assert "per_class" not in results["tasks"]["summarization"]["stages"]["dpo"]
    summ = results["tasks"]["summarization"]["comparisons"]["dpo_vs_base"]["likert"]
    assert summ["test"] == "Wilcoxon signed-rank" and summ["effect_size_name"] == "rank-biserial correlation"
    assert results["tasks"]["triage"]["multiple_testing"]["families"]["primary"][0] == "sft_vs_base/personnel_macro_f1"
    md = (built_run / "report.md").read_text(encoding="utf-8")
    assert "Holm" in md and "unparsed" in md and "**Verdict (in-distribution test split):" in md


def test_report_rebuilds_identically_without_a_model(built_run):
    md = (built_run / "report.md").read_text(encoding="utf-8")
    (built_run / "report.md").unlink()
    (built_run / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(built_run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (built_run / "report.md").read_text(encoding="utf-8") == md
    assert (built_run / "report.html").is_file()


def test_dpo_health_says_what_the_guard_watched_and_kept():
    from medtune.report.tables import dpo_health

    heldout = [{"rewards/accuracies": 0.9, "rewards/margins": 0.4, "chosen_logp_change_per_token": -0.1,
                "task_accuracy": 0.5}]
    by_task = dpo_health({"heldout": heldout, "heldout_pairs": 30,
                          "task_check": {"active": True, "prompts": 20, "accuracy_start": 0.65},
                          "collapse": {"fired": True, "reason": "task_accuracy", "step": 12, "task_accuracy_start": 0.65,
                                       "task_accuracy": 0.5, "p_value": 0.021, "threshold": 0.05,
                                       "restored": {"step": 4, "heldout_task_accuracy": 0.7}}})
    assert "Prompts DPO did not train on, answered correctly (20): 0.65 before DPO, 0.50 after." in by_task
    assert "held-out task accuracy fell from 0.65 to 0.50 (McNemar p=0.021" in by_task
    assert "the weights of step 4 (held-out task accuracy 0.70) were kept" in by_task
    by_logp = dpo_health({"heldout": heldout, "heldout_pairs": 30, "task_check": {"active": False},
                          "collapse": {"fired": True, "reason": "chosen_logp", "step": 8,
                                       "chosen_logp_drop_per_token": 0.8, "threshold": 0.5,
                                       "restored": {"step": 0, "heldout_reward_accuracy": 0.0}}})
    assert "chosen log-prob fell 0.80 nats/token" in by_logp and "answered correctly" not in by_logp
    assert "the DPO model equals SFT here" in by_logp
    by_label = dpo_health({"heldout": heldout, "heldout_pairs": 30, "task_check": {"active": True, "prompts": 64,
                                                                                  "accuracy_start": 0.3},
                           "collapse": {"fired": True, "reason": "one_label", "step": 48, "at_end": True,
                                        "head": "label", "label": "hyponatremia", "share": 0.95,
                                        "reference_share": 0.42, "restored": {"step": 0, "heldout_task_accuracy": 0.3}}})
    assert ("fired at step 48, the last evaluation: the model answered 'hyponatremia' (label) to 95% of the "
            "held-out prompts, though 42% of their references say so") in by_label


def test_report_md_escapes_hostile_ids(tmp_path):
    """Ids come from the user's file: in report.md they are shown, never read as HTML or markdown."""
    run = make_run(tmp_path)
    hostile = "<img src=x onerror=alert(1)>[see](javascript:alert(1))|"
    for path in run.glob("*/*/predictions.jsonl"):
        rows = read_jsonl(path)
        write_jsonl(path, [{**r, "id": f"{hostile}{k}"} for k, r in enumerate(rows)])
    result = CliRunner().invoke(app, ["report", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "Test examples" in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "<img" not in md and "[see](javascript" not in md


def test_the_report_says_what_the_model_did_not_learn():
    from medtune.report.tables import learning_notes

    conf = {"labels": ["current", "former", "never"], "columns": ["current", "former", "never", "unparsed"],
            "matrix": [[30, 0, 3, 0], [33, 0, 0, 0], [31, 0, 3, 0]]}  # 94 of 100 answered "current"
    task = {"primary_metrics": ["macro_f1"], "baselines": {"tfidf_logreg": {"macro_f1": 0.79}}, "comparisons": {},
            "stages": {"sft": {"confusion": {"label": conf},
                               "metrics": {"macro_f1": {"value": 0.24, "ci_low": 0.15, "ci_high": 0.33}}}}}
    notes = learning_notes(task)
    assert any("answered 'current' (label) to 94 of 100 items" in n for n in notes)
    assert any("below the TF-IDF + logistic regression baseline (0.790)" in n for n in notes)
    # a model that learned: varied answers, above the baseline's reach
    conf["matrix"] = [[30, 2, 1, 0], [3, 28, 2, 0], [1, 2, 31, 0]]
    task["stages"]["sft"]["metrics"]["macro_f1"] = {"value": 0.88, "ci_low": 0.8, "ci_high": 0.94}
    assert learning_notes(task) == []
    # a DPO run that left every score where SFT had it is said to have changed too little
    task["comparisons"] = {"dpo_vs_sft": {"macro_f1": {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}}}
    task["stages"]["dpo"] = {"training": {"steps": 2}}
    assert learning_notes(task) == ["DPO (2 steps) left every primary score as SFT had it: this DPO run changed "
                                    "too little to measure what DPO can do (more dpo.max_steps, or a higher "
                                    "dpo.learning_rate, would)."]
