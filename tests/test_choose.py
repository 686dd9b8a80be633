"""Label answers chosen among the well-formed ones (eval.label_answers: choose)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import medtune.generate as gen
from medtune.cli import app
from medtune.data import bundled_path
from medtune.evaluate.choose import STOP, Tree, answer_tokens, choose_each
from medtune.io import read_jsonl
from medtune.models import Compute
from medtune.tasks import get_task
from test_generate import prompt_sensitive_model

ROOT = Path(__file__).resolve().parents[1]


def test_label_tasks_offer_every_label_and_open_tasks_none():
    text = get_task("text_classification")
    example = read_jsonl(bundled_path(text, "test"))[0]
    assert text.answers(example) == sorted(text.labels["label"])
    triage = get_task("triage")
    both = {"input": "refill please", "personnel": "pharmacist", "urgency": "non-urgent"}
    one = {"input": "refill please", "personnel": "pharmacist"}
    assert len(triage.answers(both)) == len(triage.labels["personnel"]) * len(triage.labels["urgency"])
    assert triage.reference(both) in triage.answers(both)
    assert triage.answers(one) == sorted(f"personnel: {p}" for p in triage.labels["personnel"])
    assert get_task("summarization").answers({"input": "x", "target": "y"}) is None


def test_the_tree_walk_takes_the_best_token_at_each_choice_and_stops_where_the_stop_scores_best():
    tree = Tree(root_token=1, options=[[5, 6, 9], [5, 7], [8]])
    assert tree.forced_run(0) == ([0], None)  # the root chooses between 5 and 8
    scores = torch.zeros(10)
    scores[5], scores[8] = 2.0, 1.0
    five, answer = tree.best_option(0, scores, stops=[2])
    assert answer is None and tree.tokens[five] == 5
    scores[7] = 3.0  # after 5: 7 beats 6
    seven, answer = tree.best_option(five, scores, stops=[2])
    assert tree.tokens[seven] == 7 and tree.forced_run(seven) == ([], 1)  # nothing left to choose: answer 1
    six = tree.children[five][6]
    assert tree.forced_run(six) == ([], 0)  # 6 leads on to 9 and the end, one way only
    nested = Tree(root_token=1, options=[[5], [5, 6]])  # one answer continues the other
    assert nested.options(nested.children[0][5]) == {6: 2, STOP: None}
    scores = torch.zeros(10)
    scores[3], scores[6] = 4.0, 1.0  # the second stop token scores best: the shorter answer ends there
    assert nested.best_option(nested.children[0][5], scores, stops=[2, 3]) == (nested.children[0][5], 0)


def test_answers_are_tokenized_as_they_follow_the_prompt():
    """A tokenizer that marks the start of a text (as SentencePiece's leading space does) encodes an answer
    differently alone and after the prompt: the choice walks the tokens generation would write."""
    class StartMarking:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "Q:" + messages[-1]["content"] + "\nA:"

        def __call__(self, text, add_special_tokens):  # 0 marks the start of a text
            encode = lambda one: [0] + [ord(c) for c in one]  # noqa: E731
            return {"input_ids": [encode(t) for t in text] if isinstance(text, list) else encode(text)}

    tokenizer, messages = StartMarking(), [{"role": "user", "content": "x"}]
    prompt_ids = tokenizer("Q:x\nA:", add_special_tokens=False)["input_ids"]
    assert answer_tokens(tokenizer, messages, prompt_ids, ["ab", "c"]) == [[97, 98], [99]]
    assert answer_tokens(tokenizer, messages, [5, 6], ["ab"]) == [[0, 97, 98]]  # the prompt is not first: alone


def well_formed_greedy(model, tokenizer, prompts, n_tokens):
    """Each prompt's greedy continuation of ``n_tokens`` tokens, as text that encodes back to those tokens
    (None where it does not: the tiny byte-level tokenizer may merge a decoded string differently)."""
    out = []
    for prompt in prompts:
        ids = torch.tensor([gen.encode_prompts(tokenizer, [prompt])[0]])
        tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tokens,
                                do_sample=False)[0, ids.shape[1]:].tolist()
        text = tokenizer.decode(tokens)
        out.append(text if tokenizer(text, add_special_tokens=False)["input_ids"] == tokens else None)
    return out


def other_answers(tokenizer, text: str, where: tuple[int, ...]) -> list[str]:
    """Well-formed answers that leave ``text`` at each token ``where`` (each encodes back)."""
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    others = []
    for at in where:
        for token in range(5, len(tokenizer)):
            if token == tokens[at]:
                continue
            candidate = tokenizer.decode(tokens[:at] + [token] + tokens[at + 1:])
            if tokenizer(candidate, add_special_tokens=False)["input_ids"] == tokens[:at] + [token] + tokens[at + 1:]:
                others.append(candidate)
                break
    return others


@pytest.mark.parametrize("compute", [Compute(), Compute(accel=frozenset({"fast_generation"}))], ids=["stock", "fast"])
@pytest.mark.parametrize("task_name", ["triage", "text_classification"])
def test_choice_is_the_greedy_answer_wherever_that_is_well_formed(tiny_model, task_name, compute):
    """Where greedy decoding writes one of the well-formed answers, choosing gives that answer: among answers
    that leave it at the first, second and last token, or at the last only (a run of forced tokens first, so
    the prompts feed runs of different lengths in one round), with prompts computed through the shared prefix
    in chunks of different lengths, and for two models at once."""
    task = get_task(task_name)
    model, tokenizer = prompt_sensitive_model(tiny_model, static=False)
    other, _ = prompt_sensitive_model(tiny_model, static=False)
    with torch.no_grad():
        other.model.layers[-1].mlp.down_proj.weight.mul_(-1)  # a second model that answers differently
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:8]]
    greedy = well_formed_greedy(model, tokenizer, prompts, 3)
    kept = [i for i, text in enumerate(greedy) if text is not None]
    assert len(kept) >= 4, greedy
    prompts = [prompts[i] for i in kept]
    greedy_other = well_formed_greedy(other, tokenizer, prompts, 3)
    answers = [sorted({greedy[i], *other_answers(tokenizer, greedy[i], (0, 1, 2) if j % 2 else (2,)),
                       *([g] if g else [])}) for j, (i, g) in enumerate(zip(kept, greedy_other))]
    assert all(len(a) >= 2 for a in answers)
    chosen, chosen_other = choose_each([model, other], tokenizer, prompts, answers, compute, batch_size=8, desc=None)
    assert chosen == [greedy[i] for i in kept]
    formed = [j for j, g in enumerate(greedy_other) if g is not None]
    assert len(formed) >= 2 and [chosen_other[j] for j in formed] == [greedy_other[j] for j in formed]
    assert chosen_other != chosen
    assert choose_each([model], tokenizer, prompts, answers, compute, batch_size=1, desc=None)[0] == chosen  # one at a time


def test_a_study_with_chosen_label_answers_records_it_and_refuses_to_mix(tiny_config):
    runner = CliRunner()
    config = yaml.safe_load(tiny_config.read_text())
    config["eval"]["label_answers"] = "choose"
    config["tasks"] = ["numeric_classification", "summarization"]
    tiny_config.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["study", "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    run = tiny_config.parent / "run"
    labels = get_task("numeric_classification").labels["label"]
    for stage in ("base", "sft", "dpo"):
        rows = read_jsonl(run / "numeric_classification" / stage / "predictions.jsonl")
        assert all(row["output"] in labels and not row["parse_failed"] for row in rows)  # a label, every time
        assert json.loads((run / "numeric_classification" / stage / "metrics.json").read_text())["label_answers"] \
            == "choose"
        summary = json.loads((run / "summarization" / stage / "metrics.json").read_text())
        assert "label_answers" not in summary  # open answers are generated
    assert "eval.label_answers: choose" in (run / "report.md").read_text()
    assert "eval.label_answers: choose" in (run / "report.html").read_text()
    # the benchmark answers the run's label items both ways with each stage's model
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "choose.py"), "--run", str(run)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(r["task"], r["stage"]) for r in bench["rows"]] == [("numeric_classification", stage)
                                                                for stage in ("base", "sft", "dpo")]
    assert bench["precision"] == "fp32" and bench["choose_s"] > 0 and 0 <= bench["agree"] <= bench["well_formed"]
    assert all(r["batch_agree"] == r["items"] == 10 for r in bench["rows"])  # fp32 generation: batch-invariant
    config["eval"]["label_answers"] = "generate"
    tiny_config.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["eval", "--task", "numeric_classification", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "eval.label_answers" in result.output
