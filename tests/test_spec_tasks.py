"""A user's own task as a spec file (docs/tasks.md): each answer kind through the whole study on the tiny
model, a spec mixed with bundled tasks, two heads, and one clear error for each kind of mistake."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.errors import MedtuneError
from medtune.tasks import get_task

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
LEVELS = ["ESI-1", "ESI-2", "ESI-3", "ESI-4", "ESI-5"]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def label_spec(folder: Path, extra: str = "", rows: int = 40) -> Path:
    write_csv(folder / "cases.csv", [{"case": f"c{i}", "text": f"patient {i} with chest pain level {i % 5}",
                                      "esi": LEVELS[i % 5]} for i in range(rows)])
    spec = folder / "esi.yaml"
    spec.write_text(f"""
id: esi_level
description: vignette -> ESI level
kind: label
system_prompt: You are a triage nurse.
prompt: |-
  Vignette:
  {{{{ input }}}}
  Answer with one of: {{{{ labels | join(', ') }}}}.
labels: [{', '.join(LEVELS)}]
aliases: {{ESI-1: [level one]}}
data:
  train: cases.csv
  map: {{id: case, input: text, target: esi}}
{extra}""")
    return spec


def short_answer_spec(folder: Path) -> Path:
    drugs = ["warfarin", "amiodarone", "lisinopril", "metformin"]
    rows = [{"id": f"s{i}", "input": f"report {i}: bleeding after antibiotics" , "target": drugs[i % 4],
             "accepted": "coumadin" if i % 4 == 0 else ""} for i in range(40)]
    (folder / "reports.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if v}) + "\n" for r in rows))
    spec = folder / "culprit.yaml"
    spec.write_text("""
id: culprit_drug
description: adverse event report -> culprit drug
kind: short_answer
system_prompt: You are a clinical pharmacist.
prompt: "Report: {{ input }}\\nWhich drug caused it?"
reference: "Drug: {{ target }}"
answer_cue: "drug\\\\s*:"
accepted_field: accepted
data: {train: reports.jsonl}
""")
    return spec


def free_text_spec(folder: Path) -> Path:
    rows = [{"id": f"f{i}", "input": f"Take aspirin {i} mg daily. Return if bleeding.",
             "target": f"Take {i} mg of aspirin every day and come back if you bleed.",
             "facts": ["aspirin", "daily;every day", "bleeding;bleed"]} for i in range(40)]
    for r in rows:  # key facts: a list of facts, each its wordings
        r["facts"] = [f.split(";") for f in r["facts"]]
    (folder / "instructions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = folder / "plain.yaml"
    spec.write_text("""
id: plain_instructions
description: discharge instructions -> plain language
kind: free_text
system_prompt: You are a nurse educator.
prompt: "Rewrite for the patient: {{ input }}"
rubric: "5 = every instruction kept, in plain words; 1 = wrong or empty."
max_new_tokens: 24
data: {train: instructions.jsonl}
""")
    return spec


def study_config(tiny_config: Path, tasks: list) -> Path:
    text = tiny_config.read_text().replace("data: {train_limit: 12, test_limit: 10}",
                                           "data: {train_limit: 24, test_limit: 8}")
    tiny_config.write_text(text + f"tasks: {json.dumps([str(t) for t in tasks])}\n")
    return tiny_config


# ------------------------------------------------------------------ each kind, the whole study

def test_each_kind_and_a_bundled_task_in_one_study(tiny_config, tmp_path):
    specs = [label_spec(tmp_path), short_answer_spec(tmp_path), free_text_spec(tmp_path)]
    config = study_config(tiny_config, [*specs, "numeric_classification"])
    result = invoke("study", "--config", config)
    assert result.exit_code == 0, result.output
    run = tiny_config.parent / "run"
    results = json.loads((run / "results.json").read_text())
    assert list(results["tasks"]) == ["esi_level", "culprit_drug", "plain_instructions", "numeric_classification"]
    expected = {"esi_level": ["macro_f1"], "culprit_drug": ["accuracy"], "plain_instructions": ["likert"],
                "numeric_classification": ["macro_f1"]}
    for name, primary in expected.items():
        task = results["tasks"][name]
        assert task["primary_metrics"] == primary
        assert set(task["stages"]) == {"base", "sft", "dpo"}
        assert task["verdict"]["verdict"] in ("sft_sufficient", "dpo_helps", "no_gain", "inconclusive")
        assert all(task["stages"][s]["metrics"][primary[0]]["n"] == 8 for s in ("base", "sft", "dpo"))
    esi = results["tasks"]["esi_level"]
    assert "per_class" in esi["stages"]["sft"] and esi["baselines"]["tfidf_logreg"]
    pairs = [json.loads(line) for line in (run / "esi_level" / "pairs" / "pairs.jsonl").open()]
    assert pairs and all(p["chosen"] in LEVELS for p in pairs)  # chosen: the reference label
    assert "lead_2_sentences" in results["tasks"]["plain_instructions"]["baselines"]
    report = (run / "report.md").read_text()
    for name in expected:
        assert f"## {name}" in report.replace("\\_", "_")


def test_a_two_head_label_spec(tiny_config, tmp_path):
    write_csv(tmp_path / "messages.csv", [{"message": f"message {i} about refills", "who": ["nurse", "admin"][i % 2],
                                           "when": ["today", "later"][i // 2 % 2]} for i in range(40)])
    spec = tmp_path / "route.yaml"
    spec.write_text("""
id: route
description: message -> who and when
kind: label
system_prompt: You route messages.
prompt: "{{ input }}\\nwho: one of {{ heads.who | join('/') }}; when: one of {{ heads.when | join('/') }}"
heads:
  who: {labels: [nurse, admin]}
  when: {labels: [today, later]}
data: {train: messages.csv, map: {input: message}}
""")
    task = get_task(str(spec))
    example = {"id": "x", "input": "hi", "who": "nurse", "when": "later"}
    assert task.reference(example) == "who: nurse\nwhen: later"
    assert task.wrong_completions(example) == ["who: nurse\nwhen: today", "who: admin\nwhen: today",
                                               "who: admin\nwhen: later"]
    row = task.score(example, "when: later\nwho: nurse")
    assert row["correct"] and row["pred_who"] == "nurse" and row["pred_when"] == "later"
    assert task.primary_metrics == ["who_macro_f1", "when_macro_f1"]
    result = invoke("study", "--config", study_config(tiny_config, [spec]))
    assert result.exit_code == 0, result.output
    route = json.loads((tiny_config.parent / "run" / "results.json").read_text())["tasks"]["route"]
    assert set(route["stages"]["dpo"]["per_class"]) == {"who", "when"}
    assert set(route["comparisons"]["dpo_vs_sft"]) == {"who_macro_f1", "when_macro_f1", "who_accuracy",
                                                       "when_accuracy"}


def test_short_answers_accept_the_examples_alternatives_and_read_after_the_cue(tmp_path):
    task = get_task(str(short_answer_spec(tmp_path)))
    example = {"id": "x", "input": "r", "target": "warfarin", "accepted": ["coumadin"]}
    assert task.score(example, "Maybe aspirin. Drug: Coumadin")["correct"] is True
    assert task.score(example, "Drug: aspirin")["correct"] is False
    assert task.score(example, "")["parse_failed"] is True


def test_pairs_come_from_a_specs_labels_and_grades(tmp_path):
    from types import SimpleNamespace
    import random
    from medtune.train.pairs import check_strategy, strategy_pairs

    esi = get_task(str(label_spec(tmp_path)))
    example = {"id": "x", "input": "chest pain", "target": "ESI-2"}
    swap = SimpleNamespace(strategy="label_swap", label_swap_fallback=True, min_grade_gap=1)
    [pair] = strategy_pairs(esi, example, [], swap, random.Random(0))
    assert pair["chosen"] == "ESI-2" and pair["rejected"] in set(LEVELS) - {"ESI-2"}
    assert "chest pain" in pair["prompt"]

    plain = get_task(str(free_text_spec(tmp_path)))
    example = {"id": "y", "input": "Take aspirin daily. Return if bleeding.", "target": "Take aspirin every day.",
               "facts": [["aspirin"], ["daily", "every day"], ["bleeding", "bleed"]]}
    outputs = ["Take aspirin every day and come back if you bleed.", "Drink water."]
    scored = [(o, plain.score(example, o)) for o in outputs]
    ranked = SimpleNamespace(strategy="judge_ranked", label_swap_fallback=False, min_grade_gap=1)
    [pair] = strategy_pairs(plain, example, scored, ranked, random.Random(0))
    assert (pair["chosen"], pair["rejected"]) == tuple(outputs) and pair["chosen_grade"] > pair["rejected_grade"]
    with pytest.raises(MedtuneError, match="label_swap needs a label task"):
        check_strategy(plain, "label_swap")
    with pytest.raises(MedtuneError, match="judge_ranked ranks graded answers"):
        check_strategy(esi, "judge_ranked")


# ------------------------------------------------------------------ the spec commands

def test_task_new_writes_a_spec_that_checks(tmp_path):
    for kind in ("label", "short_answer", "free_text"):
        out = tmp_path / f"my_{kind}.yaml"
        assert invoke("task", "new", kind, "--out", out).exit_code == 0
        task = get_task(str(out))
        assert task.name == f"my_{kind}"
    result = invoke("task", "new", "label", "--out", tmp_path / "my_label.yaml")
    assert result.exit_code == 2 and "exists" in result.output
    assert invoke("task", "new", "regression", "--out", tmp_path / "x.yaml").exit_code == 2


def test_data_import_converts_a_spec_tasks_file(tmp_path):
    spec = label_spec(tmp_path)
    out = tmp_path / "imported"
    result = invoke("data", "import", tmp_path / "cases.csv", "--task", spec, "--map", "id=case",
                    "--map", "input=text", "--map", "target=esi", "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "train.jsonl").open()] + \
        [json.loads(line) for line in (out / "test.jsonl").open()]
    assert len(rows) == 40 and {r["target"] for r in rows} == set(LEVELS)
    assert f"tasks: [{spec}]" in result.output.replace("\n", "")


def test_a_value_that_looks_like_console_markup_is_printed_as_it_is(tmp_path):
    spec = label_spec(tmp_path)
    rows = list(csv.DictReader((tmp_path / "cases.csv").open()))
    rows[3]["esi"] = "[/bold]ESI-9"
    write_csv(tmp_path / "cases.csv", rows)
    for args in (("task", "check", spec), ("data", "check", tmp_path / "cases.csv", "--task", spec,
                                           "--map", "id=case", "--map", "input=text", "--map", "target=esi")):
        result = invoke(*args)
        assert result.exit_code == 2 and "[/bold]ESI-9" in result.output, result.output


def test_task_check_renders_what_the_model_reads(tmp_path):
    result = invoke("task", "check", label_spec(tmp_path))
    assert result.exit_code == 0, result.output
    assert "Answer with one of: ESI-1, ESI-2, ESI-3, ESI-4, ESI-5." in result.output
    assert "assistant" in result.output and "usable" in result.output
    listed = invoke("tasks", tmp_path / "esi.yaml")
    assert listed.exit_code == 0 and "esi_level" in listed.output and "triage" in listed.output


def test_the_example_esi_task_checks():
    result = invoke("task", "check", ROOT / "examples" / "esi" / "esi.yaml")
    assert result.exit_code == 0, result.output
    assert "300 rows" in result.output


# ------------------------------------------------------------------ bad specs: one clear error each

@pytest.mark.parametrize("change, expected", [
    (("kind: label", "kind: regression"), "kind: Input should be 'label', 'short_answer' or 'free_text'"),
    ((f"labels: [{', '.join(LEVELS)}]", "labels: []"), "labels: List should have at least 1 item"),
    ((f"labels: [{', '.join(LEVELS)}]", "labels: [ESI-1, esi 1, ESI-3]"), "are the same once case"),
    (("data:", "primary: [likert]\ndata:"), "primary: ['likert'] is not a metric of a label task"),
    (("kind: label", "kind: label\nlabel_set: [a]"), "label_set: unknown key"),
    (("{{ input }}", "{{ input }"), "not a valid template"),
])
def test_spec_mistakes_are_named(tmp_path, change, expected):
    spec = label_spec(tmp_path)
    spec.write_text(spec.read_text().replace(*change, 1))
    with pytest.raises(MedtuneError, match="invalid task spec") as error:
        get_task(str(spec))
    assert str(spec) in str(error.value) and expected in str(error.value), str(error.value)
    result = invoke("task", "check", spec)
    assert result.exit_code == 2 and expected in result.output


def test_a_template_field_the_data_lacks_is_a_missing_column(tmp_path):
    spec = label_spec(tmp_path)
    spec.write_text(spec.read_text().replace("Vignette:", "Age {{ age }}. Vignette:"))
    assert "age" in get_task(str(spec)).required_fields
    result = invoke("task", "check", spec)
    assert result.exit_code == 2 and "missing column(s) age" in result.output


def test_a_reference_the_parser_would_not_read_back_is_named_by_row(tmp_path):
    spec = label_spec(tmp_path, extra='reference: "Level {{ target | lower | replace(\'esi-\', \'\') }}"\n')
    result = invoke("task", "check", spec)
    assert result.exit_code == 2
    assert "does not read the reference completion back as right" in result.output and "row 2's reference is 'Level 1'" in result.output


def test_an_unknown_task_and_a_clash_with_a_bundled_id(tmp_path):
    with pytest.raises(MedtuneError, match="unknown task 'esi'"):
        get_task("esi")
    spec = label_spec(tmp_path)
    spec.write_text(spec.read_text().replace("id: esi_level", "id: triage"))
    with pytest.raises(MedtuneError, match="is a bundled task's"):
        get_task(str(spec))
