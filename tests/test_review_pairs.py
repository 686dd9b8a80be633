"""Preference pairs from a clinician review, end to end: `medtune pairs --strategy human --from-review RUN`
on a copy of the finished tiny study, with judgments written through the review store, then `medtune dpo`
trains on them and `medtune report` records both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from medtune.cli import app
from medtune.io import read_jsonl
from medtune.report.examples import load_inputs
from medtune.review.pairs import pairs_from_judgments
from medtune.tasks import get_task
from test_review_stats import SCRIPT, judgment, write_review

TASK = "text_classification"


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def judgments_for(items: list[str]) -> list[dict]:
    """SFT vs base on every item, DPO vs SFT on three; ties, a split vote and unsafe flags among them."""
    base_sft = ("base", "sft")
    out = [judgment("ana", item, "sft", stages=base_sft) for item in items[:6]]
    out += [judgment("ana", items[6], "tie", stages=base_sft),
            # ana prefers an answer she flags unsafe: her judgment is left out, and the item has no vote
            judgment("ana", items[7], "base", stages=base_sft, unsafe={"base": True, "sft": False},
                     reason="wrong dose"),
            judgment("ben", items[0], "sft", stages=base_sft),
            judgment("ben", items[1], "base", stages=base_sft),  # ana sft, ben base: split
            judgment("ana", items[0], "dpo", unsafe={"sft": True, "dpo": False}, reason=SCRIPT),
            judgment("ana", items[2], "dpo"),
            # ben prefers DPO too but flags it unsafe: no pair may choose an answer a reviewer called unsafe
            judgment("ben", items[2], "dpo", unsafe={"sft": False, "dpo": True}, reason="misses the allergy")]
    return out


def answers_of(run: Path, stage: str) -> dict[str, str]:
    return {r["id"]: r["output"] for r in read_jsonl(run / TASK / stage / "predictions.jsonl")}


def test_pairs_from_a_review_then_dpo_trains_on_them(tiny_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(tiny_study.parent, study)  # the fixture is shared: work on a copy
    run = study / "run"
    mined = (run / TASK / "pairs" / "pairs.jsonl").read_text(encoding="utf-8")
    answers = {s: answers_of(run, s) for s in ("base", "sft", "dpo")}
    # items whose base and SFT answers differ first: the two-reviewer vote below needs a pair to make
    items = sorted(answers["sft"], key=lambda i: answers["base"][i] == answers["sft"][i])
    assert len(items) == 8 and answers["base"][items[0]] != answers["sft"][items[0]]
    write_review(run, judgments_for(items))

    result = run_cli("pairs", "--task", TASK, "--strategy", "human", "--from-review", run)
    assert result.exit_code == 0, result.output
    assert "TEST items" in result.output

    pairs = read_jsonl(run / TASK / "pairs" / "pairs.jsonl")
    stats = json.loads((run / TASK / "pairs" / "stats.json").read_text())
    # expected: SFT over base on items 0, 2-5; DPO over SFT on item 0 -- less those whose answers are the same
    expected = [(items[k], "sft", "base") for k in (0, 2, 3, 4, 5)] + [(items[0], "dpo", "sft")]
    same = [e for e in expected if " ".join(answers[e[1]][e[0]].split()) == " ".join(answers[e[2]][e[0]].split())]
    made = sorted((p["item"], p["chosen_stage"], p["rejected_stage"]) for p in pairs)
    assert made == sorted(set(expected) - set(same))
    assert stats["skipped"] == {"tied": 3, "chosen_flagged_unsafe": 1, "no_answer": 0, "same_answer": len(same)}
    assert stats["judgments_left_out_unsafe"] == 2 and stats["from_review"] == str(run)
    assert stats["strategy"] == "human" and stats["trained_on_test_items"] is True
    task, inputs = get_task(TASK), load_inputs(run, get_task(TASK))
    for p in pairs:
        assert p["source"] == "human" and p["task"] == TASK and p["example_id"] == p["item"]
        assert p["prompt"] == task.build_prompt(inputs[p["item"]])  # what the model saw
        assert p["chosen"] == answers[p["chosen_stage"]][p["item"]]
        assert p["rejected"] == answers[p["rejected_stage"]][p["item"]]
        assert p["reviewers"] and p["time"] and sorted(p["stages"]) == sorted([p["chosen_stage"], p["rejected_stage"]])
    assert len({p["id"] for p in pairs}) == len(pairs)
    first = next(p for p in pairs if p["item"] == items[0] and p["chosen_stage"] == "sft")
    assert first["reviewers"] == ["ana", "ben"] and first["votes"] == {"base": 0, "sft": 2, "tie": 0}
    # the mined pairs are kept, and a second review round does not put its own pairs there
    assert (run / TASK / "pairs" / "before_review" / "pairs.jsonl").read_text(encoding="utf-8") == mined
    assert run_cli("pairs", "--task", TASK, "--strategy", "human", "--from-review", run).exit_code == 0
    assert (run / TASK / "pairs" / "before_review" / "pairs.jsonl").read_text(encoding="utf-8") == mined

    result = run_cli("dpo", "--task", TASK, "--force", "--config", study / "config.yaml", "--run-dir", run)
    assert result.exit_code == 0, result.output
    log = json.loads((run / TASK / "dpo" / "train_log.json").read_text())
    assert log["pairs"] + log["heldout_pairs"] == len(pairs)

    assert run_cli("report", run).exit_code == 0
    results = json.loads((run / "results.json").read_text())["tasks"][TASK]
    assert results["pairs"]["from_review"] == str(run)
    assert results["review"]["comparisons"]["sft_vs_base"]["wins"] == 5
    assert "preference pairs from the clinicians' judgments" in (run / "report.md").read_text(encoding="utf-8")


def test_other_strategies_and_runs_without_a_review_are_refused(tiny_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(tiny_study.parent, study)
    run = study / "run"
    result = run_cli("pairs", "--task", TASK, "--strategy", "label_swap", "--from-review", run)
    assert result.exit_code == 2 and "--strategy human" in result.output
    result = run_cli("pairs", "--task", TASK, "--strategy", "human", "--from-review", run)
    assert result.exit_code == 2 and "no clinician review" in result.output


def test_an_unsafe_flag_on_the_rejected_answer_keeps_the_pair():
    task = get_task(TASK)
    example = {"id": "x", "input": "Social: quit smoking in 2010."}
    answers = {"sft": {"x": "current smoker"}, "dpo": {"x": "former smoker"}}
    kept = [judgment("ana", "x", "dpo", unsafe={"sft": True, "dpo": False})]
    pairs, stats = pairs_from_judgments(task, kept, {"x": example}, answers)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("former smoker", "current smoker")]
    both = [judgment("ana", "x", "dpo", unsafe={"sft": True, "dpo": True})]
    pairs, stats = pairs_from_judgments(task, both, {"x": example}, answers)
    assert pairs == [] and stats["judgments_left_out_unsafe"] == 1 and stats["skipped"]["tied"] == 1
