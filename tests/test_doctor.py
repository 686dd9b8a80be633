"""The data doctor and the import of users' files: every message names the file and row."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.data.doctor import check_pairs_file, check_task_file
from medtune.data.importer import stratified_split, strata_key
from medtune.tasks import get_task

runner = CliRunner()
NUMERIC = get_task("numeric_classification")
TRIAGE = get_task("triage")


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_clean_csv_with_mapping_and_label_spelling(tmp_path):
    f = write(tmp_path / "labs.csv", 'note_text,label\n"Na 128 mmol/L, K 4.1",Hyponatremia\nNa 140,normal\nNa 151,HYPERNATREMIA\n')
    diag = check_task_file(f, NUMERIC, {"input": "note_text", "target": "label"})
    assert not diag.errors, diag.lines()
    assert [r["target"] for r in diag.records] == ["hyponatremia", "normal", "hypernatremia"]
    assert diag.records[0]["id"] == "labs-2"  # CSV line number; the header is line 1


@pytest.mark.parametrize("name, content, expected", [
    ("empty.csv", "", "empty"),
    ("header_only.csv", "input,target\n", "no data rows"),
    ("bad.jsonl", '{"input": "Na 130", "target": "hyponatremia"}\n{"input": "Na 131", "target": \n', "line 2: not valid JSON"),
    ("ragged.csv", "input,target\nNa 130,hyponatremia\nNa 140, mild,normal\n", "line 3: 3 fields but the header has 2"),
    ("missing.csv", "text,target\nNa 130,hyponatremia\n", "missing column(s) input"),
    ("label.csv", "input,target\nNa 130,hyponatremia\nNa 140,low\n", "row 3: target 'low' is not one of"),
    ("blank.jsonl", '{"input": "Na 130", "target": "hyponatremia"}\n{"input": " ", "target": "normal"}\n', "row 2: empty 'input'"),
    ("notes.txt", "hello", "unsupported file type"),
])
def test_errors_name_file_and_row(tmp_path, name, content, expected):
    diag = check_task_file(write(tmp_path / name, content), NUMERIC)
    assert diag.errors and diag.records == []
    assert any(expected in line for line in diag.lines()), diag.lines()
    assert all(str(tmp_path / name) in line for line in diag.lines())


def test_non_utf8_file_is_an_error_with_line(tmp_path):
    f = write(tmp_path / "latin.csv", "input,target\nNa 130 ¿,hyponatremia\n", encoding="latin-1")
    diag = check_task_file(f, NUMERIC)
    assert any("line 2: not UTF-8" in line for line in diag.lines()), diag.lines()


def test_warnings_duplicates_overlap_imbalance(tmp_path):
    rows = [{"input": f"Na {130 + i % 3}", "target": "hyponatremia"} for i in range(30)]
    rows.append({"input": "Na 130", "target": "normal"})  # a duplicate input with another label
    f = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    diag = check_task_file(f, NUMERIC, other=[{"input": "na 131"}], other_name="test.jsonl")
    text = "\n".join(diag.lines())
    assert not diag.errors
    assert "duplicated input" in text and "different labels" in text
    assert "also appear in test.jsonl" in text
    assert "no example of hypernatremia" in text and "rare label(s) normal (1/31)" in text


def test_triage_file_and_stratified_split(tmp_path):
    rows = [{"input": f"message {i}", "personnel": ["nurse", "admin"][i % 2], "urgency": "non urgent" if i % 3 else "Urgent"}
            for i in range(30)]
    f = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    diag = check_task_file(f, TRIAGE)
    assert not diag.errors, diag.lines()
    assert {r["urgency"] for r in diag.records} == {"urgent", "non-urgent"}
    train, test = stratified_split(diag.records, 0.2, 0, strata_key(TRIAGE))
    assert len(train) + len(test) == 30 and not {r["id"] for r in train} & {r["id"] for r in test}
    assert {r["personnel"] for r in test} == {"nurse", "admin"}
    assert stratified_split(diag.records, 0.2, 0, strata_key(TRIAGE)) == (train, test)  # seeded


def test_parquet_and_hf_folder(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_list([{"note": "Na 150", "label": "hypernatremia"}, {"note": "Na 120", "label": "hyponatremia"}])
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "hf"))
    for path in (tmp_path / "d.parquet", tmp_path / "hf"):
        diag = check_task_file(path, NUMERIC, {"input": "note", "target": "label"})
        assert not diag.errors and len(diag.records) == 2, diag.lines()


def test_pairs_checks_including_truncation_collapse(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    long_prompt = "chest pain " * 200
    pairs = [
        {"prompt": "Na 130?", "chosen": "hyponatremia", "rejected": "hyponatremia"},
        {"prompt": "Na 131?", "chosen": "hyponatremia", "rejected": "hyponatremia  "},
        {"prompt": long_prompt, "chosen": "nurse", "rejected": "admin"},
        {"prompt": "Na 150?", "chosen": "hypernatremia", "rejected": "normal"},
    ]
    f = write(tmp_path / "pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    diag = check_pairs_file(f, tokenizer=tok, max_length=64)
    text = "\n".join(diag.lines())
    assert not diag.errors
    assert "row 1: 1 pair(s) have chosen == rejected" in text
    assert "row 2: 1 pair(s) differ only in whitespace" in text
    assert "row 3: 1 pair(s) become identical after truncation" in text
    assert len(diag.records) == 4 and diag.records[0]["source"] == "human"


def test_mined_pairs_keep_the_example_they_came_from(tmp_path):
    # DPO holds out whole prompts, and its task check answers them, by example_id
    mined = {"id": "tc-1-model_error-0", "example_id": "tc-1", "prompt": "Note: ...", "chosen": "never smoker",
             "rejected": "former smoker", "source": "model_error"}
    human = {"prompt": "Na 150?", "chosen": "hypernatremia", "rejected": "normal"}
    diag = check_pairs_file(write(tmp_path / "pairs.jsonl", json.dumps(mined) + "\n" + json.dumps(human) + "\n"))
    assert not diag.errors
    assert diag.records[0]["example_id"] == "tc-1" and diag.records[0]["source"] == "model_error"
    assert "example_id" not in diag.records[1]


def test_openai_preference_format(tmp_path):
    row = {"input": {"messages": [{"role": "user", "content": "Summarise: ..."}]},
           "preferred_output": [{"role": "assistant", "content": "good"}],
           "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    diag = check_pairs_file(write(tmp_path / "oai.jsonl", json.dumps(row) + "\n"))
    assert not diag.errors
    assert diag.records[0] | {"id": None} == {"id": None, "prompt": "Summarise: ...", "chosen": "good",
                                              "rejected": "bad", "source": "human"}


def test_cli_check_exit_codes_and_json(tmp_path):
    bad = write(tmp_path / "bad.csv", "input,target\nNa 130,hyponatremia\nNa 140,low\n")
    result = runner.invoke(app, ["data", "check", str(bad), "--task", "numeric_classification"])
    assert result.exit_code == 2 and "row 3" in result.output and "Traceback" not in result.output
    good = write(tmp_path / "good.csv", "input,target\n" + "".join(f"Na {v},{'normal'}\n" for v in range(136, 140)))
    result = runner.invoke(app, ["data", "check", str(good), "--task", "numeric_classification", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == 4 and not report["errors"] and report["warnings"]  # only 'normal' present
    strict = runner.invoke(app, ["data", "check", str(good), "--task", "numeric_classification", "--strict"])
    assert strict.exit_code == 2


def test_cli_import_writes_split_and_nothing_on_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = "".join(f"Na {v},{'hyponatremia' if v < 135 else 'normal' if v <= 145 else 'hypernatremia'}\n"
                   for v in range(120, 160))
    f = write(tmp_path / "labs.csv", "note,label\n" + rows)
    result = runner.invoke(app, ["data", "import", str(f), "--task", "numeric_classification",
                                 "--map", "input=note", "--map", "target=label"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "data" / "numeric_classification"
    train = [json.loads(line) for line in (out / "train.jsonl").open()]
    test = [json.loads(line) for line in (out / "test.jsonl").open()]
    assert len(train) + len(test) == 40 and len(test) == 8
    assert json.loads((out / "import.json").read_text())["split"]["seed"] == 0
    bad = write(tmp_path / "bad.csv", "note,label\nNa 130,sky-high\n")
    result = runner.invoke(app, ["data", "import", str(bad), "--task", "numeric_classification",
                                 "--map", "input=note", "--map", "target=label", "--out", "other"])
    assert result.exit_code == 2 and "sky-high" in result.output
    assert not (tmp_path / "other").exists()
