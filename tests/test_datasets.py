"""Issue #3: headroom of the bundled data, importing every supported format, one-head triage files,
and the doctor's messages on the deliberately broken files in tests/fixtures/broken/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.config import Config, DataSettings, TaskData
from medtune.data import task_data
from medtune.data.doctor import check_pairs_file, check_task_file
from medtune.evaluate.baselines import majority, tfidf_logreg
from medtune.evaluate.metrics import label_breakdown, stage_metrics
from medtune.tasks import get_task

runner = CliRunner()
BUNDLED = Path(__file__).resolve().parents[1] / "src" / "medtune" / "data" / "bundled"
BROKEN = Path(__file__).parent / "fixtures" / "broken"
TRIAGE = get_task("triage")


def read_split(name: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (BUNDLED / name / f"{split}.jsonl").read_text("utf-8").splitlines()]


# ------------------------------------------------------------------ headroom

# Ceilings the TF-IDF + logistic-regression baseline must stay under (measured: reasoning 0.63,
# triage personnel F1 0.62, urgency F1 0.51; see docs/datasets.md). If a generator change makes
# the data trivially keyword-solvable again, these fail.
CEILINGS = {"clinical_reasoning": {"accuracy": 0.80},
            "triage": {"personnel_macro_f1": 0.80, "urgency_macro_f1": 0.75}}


@pytest.mark.parametrize("name", sorted(CEILINGS))
def test_tfidf_baseline_does_not_solve_the_task(name):
    task = get_task(name)
    train, test = read_split(name, "train"), read_split(name, "test")
    scores = tfidf_logreg(task, train, test)
    for metric, ceiling in CEILINGS[name].items():
        assert scores[metric] < ceiling, (metric, scores[metric])
    floor = majority(task, train, test)
    for metric in CEILINGS[name]:  # but it does learn something: the task is learnable from the data
        assert scores[metric] > floor[metric] + 0.05, (metric, scores[metric], floor[metric])


# ------------------------------------------------------------------ import: every format

NOTES = [("Na 128 mmol/L, K 4.1", "hyponatremia"), ("Na 140 mEq/L", "normal"), ("sodium 151", "hypernatremia")]


def numeric_rows(n: int = 30) -> list[dict]:
    return [{"note_text": f"{NOTES[i % 3][0]} (sample {i})", "label": NOTES[i % 3][1]} for i in range(n)]


def write_format(folder: Path, fmt: str, rows: list[dict]) -> Path:
    from datasets import Dataset

    if fmt == "csv":
        path = folder / "notes.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path = folder / "notes.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "parquet":
        path = folder / "notes.parquet"
        Dataset.from_list(rows).to_parquet(str(path))
    else:
        path = folder / "notes_hf"
        Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "hf"])
def test_cli_import_every_format_with_map_and_recorded_split(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    path = write_format(tmp_path, fmt, numeric_rows())
    result = runner.invoke(app, ["data", "import", str(path), "--task", "numeric_classification",
                                 "--map", "input=note_text", "--map", "target=label", "--seed", "7"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "numeric_classification"
    train = [json.loads(line) for line in (out / "train.jsonl").open()]
    test = [json.loads(line) for line in (out / "test.jsonl").open()]
    assert len(train) == 24 and len(test) == 6
    assert sorted(r["target"] for r in test) == ["hypernatremia"] * 2 + ["hyponatremia"] * 2 + ["normal"] * 2
    assert not {r["input"] for r in train} & {r["input"] for r in test}
    info = json.loads((out / "import.json").read_text())
    assert info["split"] == {"test_fraction": 0.2, "seed": 7, "stratified_by": ["label"]}
    assert info["map"] == {"input": "note_text", "target": "label"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "hf"])
def test_config_data_section_reads_every_format(tmp_path, fmt):
    train = write_format(tmp_path, fmt, numeric_rows())
    (tmp_path / "t").mkdir()
    test = write_format(tmp_path / "t", fmt, numeric_rows(6)[::-1])
    cfg = Config(seed=3, data=DataSettings(tasks={"numeric_classification": TaskData(
        train=train, test=test, map={"input": "note_text", "target": "label"})}))
    data = task_data(cfg, get_task("numeric_classification"))
    assert len(data["train"]) == 30 and len(data["test"]) == 6
    assert data["info"]["split"] is None and data["info"]["bundled"] is False
    assert any("also appear in" in w for w in data["info"]["warnings"])  # the test rows are in train too


def test_preference_pairs_csv_and_openai_jsonl_via_cli(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("question,good,bad\nNa 129?,hyponatremia,normal\nNa 150?,hypernatremia,normal\n", "utf-8")
    result = runner.invoke(app, ["data", "check", str(pairs), "--task", "numeric_classification", "--kind", "pairs",
                                 "--map", "prompt=question", "--map", "chosen=good", "--map", "rejected=bad", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) | {"file": None} == {"file": None, "kind": "pairs", "rows": 2, "errors": [],
                                                         "warnings": []}
    oai = tmp_path / "oai.jsonl"
    oai.write_text(json.dumps({"input": {"messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Triage: refill please"}]},
                               "preferred_output": [{"role": "assistant", "content": "personnel: pharmacist"}],
                               "non_preferred_output": [{"role": "assistant", "content": "personnel: admin"}]}) + "\n")
    diag = check_pairs_file(oai)
    assert not diag.findings and diag.records[0]["prompt"] == "Triage: refill please"
    assert (diag.records[0]["chosen"], diag.records[0]["rejected"]) == ("personnel: pharmacist", "personnel: admin")


def test_numeric_value_must_be_a_number(tmp_path):
    f = tmp_path / "v.csv"
    f.write_text("input,target,value\nNa 131,hyponatremia,131\nNa 140,normal,about 140\n", "utf-8")
    diag = check_task_file(f, get_task("numeric_classification"))
    assert [line for line in diag.lines()] == [
        f"error: {f}, row 3: value 'about 140' is not a number; write it as digits without units (e.g. 131 or 131.5)"]


# ------------------------------------------------------------------ triage with only one head

MESSAGES = [("Can I get a refill on my metformin?", "pharmacist", "non-urgent"),
            ("I need to reschedule my appointment.", "admin", "non-urgent"),
            ("Chest pain for an hour going into my left arm.", "physician", "urgent"),
            ("My 6-week-old has a fever of 101 and is not feeding.", "nurse", "urgent")]


@pytest.mark.parametrize("head, absent", [("personnel", "urgency"), ("urgency", "personnel")])
def test_triage_file_with_one_head_evaluates_that_head(tmp_path, head, absent):
    rows = [{"message": f"{text} (#{i})", head: {"personnel": p, "urgency": u}[head]}
            for i in range(5) for text, p, u in MESSAGES]
    f = tmp_path / "one_head.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")

    diag = check_task_file(f, TRIAGE, {"input": "message"})
    assert not diag.errors, diag.lines()
    assert any(f"no {absent} column: only {head} will be trained and evaluated" in line for line in diag.lines())
    assert all(absent not in r for r in diag.records)

    cfg = Config(seed=0, data=DataSettings(tasks={"triage": TaskData(train=f, map={"input": "message"})}))
    data = task_data(cfg, TRIAGE)
    assert data["info"]["split"]["stratified_by"] == ["personnel", "urgency"] and len(data["test"]) >= 4
    example = data["test"][0]
    assert TRIAGE.build_prompt(example).endswith(f"Answer in exactly one line:\n{head}: <one of "
                                                 f"{', '.join(TRIAGE.labels[head])}>")
    assert TRIAGE.reference(example) == f"{head}: {example[head]}"
    assert all(w.startswith(f"{head}: ") for w in TRIAGE.wrong_completions(example))

    # the reference is right; a wrong value of the present head is wrong; the absent head never counts
    scored = [TRIAGE.score(ex, TRIAGE.reference(ex)) for ex in data["test"]]
    assert all(r["correct"] and not r["parse_failed"] and r[f"gold_{absent}"] is None for r in scored)
    wrong = TRIAGE.score(example, TRIAGE.wrong_completions(example)[0])
    assert wrong["correct"] is False and wrong[f"correct_{absent}"] is None

    metrics = stage_metrics(TRIAGE, scored, n_resamples=50, seed=0)
    assert set(metrics) == {f"{head}_macro_f1", f"{head}_accuracy", "parse_failure_rate"}
    assert metrics[f"{head}_macro_f1"]["value"] == 1.0 and metrics[f"{head}_accuracy"]["n"] == len(scored)
    assert set(label_breakdown(TRIAGE, scored)["per_class"]) == {head}


def test_triage_file_with_neither_head_is_an_error(tmp_path):
    f = tmp_path / "none.csv"
    f.write_text("input,team\nrefill please,pharmacy\n", "utf-8")
    (line,) = check_task_file(f, TRIAGE).lines()
    assert line.startswith(f"error: {f}: missing column(s) personnel, urgency for task triage")


def test_two_head_triage_metrics_are_unchanged():
    rows = [TRIAGE.score({"input": t, "personnel": p, "urgency": u}, f"personnel: {p}\nurgency: {u}")
            for t, p, u in MESSAGES]
    metrics = stage_metrics(TRIAGE, rows, n_resamples=50, seed=0)
    assert {m.name for m in TRIAGE.metrics} <= set(metrics)
    assert TRIAGE.reference({"personnel": "nurse", "urgency": "urgent"}) == "personnel: nurse\nurgency: urgent"


# ------------------------------------------------------------------ the doctor on three broken files

def test_doctor_on_broken_csv():
    result = runner.invoke(app, ["data", "check", str(BROKEN / "sodium_labels.csv"), "--task", "numeric_classification"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    out = " ".join(result.output.split())
    assert "sodium_labels.csv, row 4: target 'low' is not one of the task's labels" in out
    assert "sodium_labels.csv, row 5: empty 'input'" in out
    assert "sodium_labels.csv, row 6: value 'one-thirty-nine' is not a number" in out


def test_doctor_on_broken_jsonl_names_every_bad_line():
    result = runner.invoke(app, ["data", "check", str(BROKEN / "portal_messages.jsonl"), "--task", "triage", "--json"])
    assert result.exit_code == 2
    errors = [e["message"] for e in json.loads(result.output)["errors"]]
    assert errors[0].startswith("line 2: not UTF-8 text") and errors[1].startswith("line 4: not valid JSON")


def test_doctor_on_broken_pairs(tiny_model):
    # the tiny test tokenizer and a 256-token limit stand in for the real model's 512 (docs show --model embedded)
    args = ["data", "check", str(BROKEN / "summary_pairs.jsonl"), "--task", "summarization", "--kind", "pairs"]
    result = runner.invoke(app, [*args, "--model", str(tiny_model), "--max-length", "256"])
    assert result.exit_code == 0, result.output  # warnings only
    out = " ".join(result.output.split())
    assert "row 1: 1 pair(s) have chosen == rejected" in out
    assert "row 2: 1 pair(s) differ only in whitespace" in out
    assert "rows 3, 4: 2 pair(s) become identical after truncation to max_length=256 tokens" in out
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 2
