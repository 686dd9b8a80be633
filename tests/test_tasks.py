"""The five tasks: answer parsers, metrics, generators and the bundled datasets."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from medtune.errors import MedtuneError
from medtune.evaluate.grader import fact_present
from medtune.tasks import TASK_NAMES, TASKS, get_task

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "medtune" / "data" / "bundled"
sys.path.insert(0, str(ROOT / "scripts"))  # the bundled data's generators live in scripts/synthetic/
from synthetic import GENERATORS  # noqa: E402
from synthetic.numeric_classification import label_for  # noqa: E402

triage, clinical_reasoning, summarization = TASKS["triage"], TASKS["clinical_reasoning"], TASKS["summarization"]
DIAGNOSES = clinical_reasoning.source.vocabulary
DIAGNOSIS_NAMES = [names[0] for names in DIAGNOSES]


def parse_diagnosis(output: str) -> str | None:
    return clinical_reasoning.score({"target": "myocardial infarction"}, output)["pred"]
CHATTER = "I'm sorry, I can't help with that. Is there anything else I can do for you today?"

# one hand-written example per task, and a wrong answer for it
EXAMPLES = {
    "text_classification": {"id": "t1", "input": "Note date: 2025-03-01\n54M. SH: quit 3 yrs ago.",
                            "target": "former smoker"},
    "numeric_classification": {"id": "t2", "input": "BMP: Na 131 mmol/L, K 4.1", "target": "hyponatremia",
                               "value": 131.0},
    "clinical_reasoning": {"id": "t3", "input": "Crushing chest pain, ST elevation in II, III, aVF.",
                           "target": "myocardial infarction"},
    "summarization": {"id": "t4", "input": "DISCHARGE SUMMARY ...",
                      "target": "70-year-old man admitted with atrial fibrillation and treated with diltiazem; "
                                "started apixaban. Discharged home.",
                      "facts": [["atrial fibrillation", "afib", "af"], ["diltiazem", "rate control"], ["home"],
                                ["apixaban", "eliquis"]]},
    "triage": {"id": "t5", "input": "Can I get a refill of my lisinopril?", "personnel": "pharmacist",
               "urgency": "non-urgent"},
}
WRONG = {
    "text_classification": "never smoker",
    "numeric_classification": "hypernatremia",
    "clinical_reasoning": "pulmonary embolism",
    "summarization": "70-year-old man admitted with pneumonia and treated with ceftriaxone.",
    "triage": "personnel: admin\nurgency: urgent",
}


def read_split(name: str, split: str) -> list[dict]:
    path = BUNDLED / name / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- registry

def test_registry_order_and_lookup():
    assert TASK_NAMES == ["text_classification", "numeric_classification", "clinical_reasoning",
                          "summarization", "triage"]
    assert get_task("triage") is TASKS["triage"]
    with pytest.raises(MedtuneError, match="unknown task 'nope'; bundled tasks: text_classification"):
        get_task("nope")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_declares_consistent_metrics(name):
    task = get_task(name)
    names = [m.name for m in task.metrics]
    assert set(task.primary_metrics) <= set(names)
    for metric in task.metrics:
        assert metric.paired_test in ("mcnemar", "wilcoxon", "bootstrap")
        if metric.paired_test in ("mcnemar", "wilcoxon"):
            assert metric.item_key


# ---------------------------------------------------------------- parsers, every task

@pytest.mark.parametrize("name", TASK_NAMES)
def test_reference_is_correct(name):
    task, example = get_task(name), EXAMPLES[name]
    row = task.score(example, task.reference(example))
    assert row["correct"] is True and row["parse_failed"] is False


@pytest.mark.parametrize("name", TASK_NAMES)
def test_chatter_around_the_right_answer_is_correct(name):
    task, example = get_task(name), EXAMPLES[name]
    output = f"Sure! Based on the note, the answer is **{task.reference(example)}**. Let me know if you need more."
    row = task.score(example, output)
    assert row["correct"] is True and row["parse_failed"] is False


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("output", ["", "   \n ", CHATTER])
def test_empty_or_pure_chatter_is_wrong(name, output):
    task = get_task(name)
    row = task.score(EXAMPLES[name], output)
    assert row["correct"] is False
    # summarization has no answer to parse: only an empty output is a parse failure
    assert row["parse_failed"] is (name != "summarization" or not output.strip())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_wrong_answer_is_wrong_but_parsed(name):
    row = get_task(name).score(EXAMPLES[name], WRONG[name])
    assert row["correct"] is False and row["parse_failed"] is False


@pytest.mark.parametrize("name", TASK_NAMES)
@pytest.mark.parametrize("output", ["\x00", "🙂" * 50, "personnel:", "urgency", "**", "diagnosis is", "a" * 5000,
                                    "Diagnosis:\n\n", "label: ???"])
def test_score_never_raises_and_has_required_keys(name, output):
    row = get_task(name).score(EXAMPLES[name], output)
    assert isinstance(row["correct"], bool) and isinstance(row["parse_failed"], bool)


@pytest.mark.parametrize("name", ["text_classification", "numeric_classification", "triage"])
def test_wrong_completions_are_all_wrong_and_distinct(name):
    task, example = get_task(name), EXAMPLES[name]
    wrong = task.wrong_completions(example)
    assert len(wrong) == len(set(wrong)) == (7 if name == "triage" else 2)
    assert task.reference(example) not in wrong
    for output in wrong:
        row = task.score(example, output)
        assert row["correct"] is False and row["parse_failed"] is False


@pytest.mark.parametrize("name", ["clinical_reasoning", "summarization"])
def test_open_tasks_have_no_wrong_completions(name):
    assert get_task(name).wrong_completions(EXAMPLES[name]) == []


# ---------------------------------------------------------------- label tasks

def test_text_classification_bare_and_alias_answers():
    task, ex = get_task("text_classification"), EXAMPLES["text_classification"]
    assert task.score(ex, "Former")["correct"] is True
    assert task.score(ex, "ex-smoker")["correct"] is True
    never = {**ex, "target": "never smoker"}
    assert task.score(never, "Non-smoker.")["correct"] is True
    # a bare word inside chatter is no answer: "current" here is not the label
    row = task.score(ex, "Based on the current note, the patient is a former smoker.")
    assert row["pred"] == "former smoker"


@pytest.mark.parametrize("value,label", [(134.9, "hyponatremia"), (135, "normal"), (145, "normal"),
                                         (145.1, "hypernatremia"), (120, "hyponatremia"), (160, "hypernatremia")])
def test_sodium_thresholds(value, label):
    assert label_for(value) == label


def test_numeric_classification_aliases():
    task, ex = get_task("numeric_classification"), EXAMPLES["numeric_classification"]
    assert task.score(ex, "Hyponatraemia (Na 131).")["correct"] is True
    assert task.score(ex, "low sodium")["pred"] == "hyponatremia"


# ---------------------------------------------------------------- triage

def triage_example(personnel: str, urgency: str) -> dict:
    return {"id": "x", "input": "...", "personnel": personnel, "urgency": urgency}


@pytest.mark.parametrize("output,urgency", [
    ("personnel: nurse\nurgency: non-urgent", "non-urgent"),
    ("personnel: nurse\nurgency: urgent", "urgent"),
    ("Personnel: Nurse\nUrgency: Non-Urgent", "non-urgent"),
    ("urgency: URGENT\npersonnel: nurse", "urgent"),
    ("personnel: nurse, urgency: not urgent", "non-urgent"),
    ("personnel: nurse\nurgency: nonurgent", "non-urgent"),
])
def test_triage_urgent_versus_non_urgent(output, urgency):
    row = triage.score(triage_example("nurse", urgency), output)
    assert row["pred_urgency"] == urgency and row["pred_personnel"] == "nurse"
    assert row["correct"] is True


def test_triage_heads_are_scored_separately():
    row = triage.score(triage_example("physician", "urgent"), "personnel: physician\nurgency: non-urgent")
    assert row["correct_personnel"] is True and row["correct_urgency"] is False
    assert row["correct"] is False and row["parse_failed"] is False


def test_triage_value_after_the_head_wins_over_chatter():
    # "nurse" is mentioned first, but the committed answer follows "personnel:"
    output = "A nurse could look at this, but personnel: pharmacist\nurgency: non-urgent"
    assert triage.score(triage_example("pharmacist", "non-urgent"), output)["correct"] is True


def test_triage_falls_back_to_labels_anywhere():
    row = triage.score(triage_example("pharmacist", "urgent"), "This should go to the pharmacist and it is urgent.")
    assert row["pred_personnel"] == "pharmacist" and row["pred_urgency"] == "urgent"
    one_head = triage.score(triage_example("pharmacist", "urgent"), "urgency: urgent")
    assert one_head["pred_personnel"] is None and one_head["parse_failed"] is False


def test_triage_chatter_words_are_not_answers():
    row = triage.score(triage_example("physician", "urgent"), "I'm not a doctor. Please ask your pharmacy.")
    assert row["pred_personnel"] is None and row["parse_failed"] is True


# ---------------------------------------------------------------- clinical reasoning

MI = {"id": "x", "input": "...", "target": "myocardial infarction"}


@pytest.mark.parametrize("output", ["MI", "heart attack", "STEMI", "Diagnosis: acute myocardial infarction",
                                    "The most likely diagnosis is an NSTEMI.", "**Myocardial Infarction**",
                                    "Given the ST changes, pulmonary embolism is less likely; the most likely "
                                    "diagnosis is myocardial infarction."])
def test_reasoning_accepts_synonyms(output):
    row = clinical_reasoning.score(MI, output)
    assert row["correct"] is True, row


@pytest.mark.parametrize("output,pred", [("pulmonary embolism", "pulmonary embolism"), ("PE", "pulmonary embolism"),
                                         ("Aortic dissection.", "aortic dissection"),
                                         ("pericarditis", "pericarditis")])
def test_reasoning_rejects_other_diagnoses(output, pred):
    row = clinical_reasoning.score(MI, output)
    assert row["pred"] == pred and row["correct"] is False and row["parse_failed"] is False


def test_reasoning_longest_match_and_spelling_variants():
    parse = parse_diagnosis
    assert parse("hemorrhagic stroke") == "intracerebral hemorrhage"
    assert parse("stroke") == "ischemic stroke"
    assert parse("Crohn's disease") == "Crohn disease"
    assert parse("Guillain-Barré syndrome") == "Guillain-Barre syndrome"
    assert parse("DKA") == "diabetic ketoacidosis"
    assert parse("The patient should take 500 mg and rest.") is None


def test_reasoning_diagnosis_list_is_large_and_unambiguous():
    from medtune.tasks.common import normalize
    assert len(DIAGNOSES) >= 60
    forms = [normalize(f) for names in DIAGNOSES for f in names]
    assert len(forms) == len(set(forms)), "a name or synonym belongs to two diagnoses"
    for names in DIAGNOSES:  # every synonym parses back to its own diagnosis
        for form in names:
            assert parse_diagnosis(form) == names[0], form


# ---------------------------------------------------------------- summarization grader

SUMMARY = EXAMPLES["summarization"]


def test_summary_grade_prefers_the_reference():
    ref = summarization.score(SUMMARY, SUMMARY["target"])
    missing = summarization.score(SUMMARY, "70-year-old man admitted with atrial fibrillation. Discharged home.")
    empty = summarization.score(SUMMARY, "")
    assert ref["grade"] == 5 and ref["coverage"] == 1.0
    assert missing["coverage"] == 0.5 and missing["grade"] == 3 and missing["correct"] is False
    assert empty["grade"] == 1 and empty["parse_failed"] is True
    assert ref["grade"] > missing["grade"] > empty["grade"]


def test_summary_facts_match_whole_words_only():
    # "af" must not match inside "after"; "home" must not match inside "homeless"
    row = summarization.score(SUMMARY, "Seen after a fall, homeless, treated with diltiazem.")
    assert row["coverage"] == 0.25


def test_summary_too_long_loses_a_point():
    # the rubric's "long" is over max(45 words, 2x the reference): 4 copies of a 14-word reference
    long_output = " ".join([SUMMARY["target"]] * 4)
    row = summarization.score(SUMMARY, long_output)
    assert row["grade"] == 4 and row["length"] == "long"


# ---------------------------------------------------------------- metrics on hand-made rows

def test_label_metrics_by_hand():
    task = get_task("numeric_classification")
    rows = [{"gold": "hyponatremia", "pred": "hyponatremia", "correct": True},
            {"gold": "hyponatremia", "pred": "normal", "correct": False},
            {"gold": "normal", "pred": "normal", "correct": True},
            {"gold": "hypernatremia", "pred": None, "correct": False}]
    # per class F1: hypo P=1 R=1/2 -> 2/3; normal P=1/2 R=1 -> 2/3; hyper 0 (unparsed counts as wrong)
    assert task.metric("macro_f1").compute(rows) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert task.metric("accuracy").compute(rows) == pytest.approx(0.5)


def test_triage_metrics_by_hand():
    rows = [triage.score(triage_example(p, u), out) for p, u, out in [
        ("nurse", "urgent", "personnel: nurse\nurgency: urgent"),
        ("nurse", "non-urgent", "personnel: admin\nurgency: non-urgent"),
        ("admin", "non-urgent", "personnel: admin\nurgency: urgent"),
        ("physician", "urgent", ""),
    ]]
    task = get_task("triage")
    # personnel: nurse P=1 R=1/2 -> 2/3; admin P=1/2 R=1 -> 2/3; physician 0; pharmacist 0 -> 1/3
    assert task.metric("personnel_macro_f1").compute(rows) == pytest.approx((2 / 3 + 2 / 3) / 4)
    # urgency: urgent P=1/2 R=1/2 -> 1/2; non-urgent P=1 R=1/2 -> 2/3
    assert task.metric("urgency_macro_f1").compute(rows) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert task.metric("personnel_accuracy").compute(rows) == pytest.approx(0.5)
    assert task.metric("urgency_accuracy").compute(rows) == pytest.approx(0.5)


def test_summary_metrics_by_hand():
    rows = [{"grade": 5, "coverage": 1.0}, {"grade": 3, "coverage": 0.5}, {"grade": 1, "coverage": 0.0}]
    task = get_task("summarization")
    assert task.metric("likert").compute(rows) == pytest.approx(3.0)
    assert task.metric("fact_coverage").compute(rows) == pytest.approx(0.5)


def test_reasoning_accuracy_by_hand():
    rows = [clinical_reasoning.score(MI, out) for out in ["MI", "PE", "", "heart attack"]]
    assert get_task("clinical_reasoning").metric("accuracy").compute(rows) == pytest.approx(0.5)


# ---------------------------------------------------------------- generators (scripts/synthetic/)

def test_every_task_has_a_generator():
    assert list(GENERATORS) == TASK_NAMES


@pytest.mark.parametrize("split", ["train", "test", "shifted"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_generator_is_deterministic(name, split):
    generate = GENERATORS[name].generate_examples
    first = generate(random.Random("x"), 30, split=split)
    assert first == generate(random.Random("x"), 30, split=split)
    assert len(first) == 30
    assert first != generate(random.Random("y"), 30, split=split)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_generated_examples_fit_their_task(name):
    task = get_task(name)
    for example in GENERATORS[name].generate_examples(random.Random("x"), 30):
        assert all(example.get(field) not in (None, "", []) for field in task.required_fields), example
        assert task.score(example, task.reference(example))["correct"] is True, example


def test_vignette_pools_follow_the_diagnosis_list():
    pools = GENERATORS["clinical_reasoning"].VIGNETTE_POOLS
    assert [p.name for p in pools] == DIAGNOSIS_NAMES


# ---------------------------------------------------------------- bundled datasets

@pytest.mark.parametrize("name", TASK_NAMES)
def test_bundled_files_are_complete_and_disjoint(name):
    task = get_task(name)
    train, test = read_split(name, "train"), read_split(name, "test")
    assert len(train) >= 1000 and len(test) >= 200
    for row in train + test:
        for field in ("id", *task.required_fields):
            assert row.get(field) not in (None, "", []), (row.get("id"), field)
        if task.labels:
            for head, labels in task.labels.items():
                assert row["target" if head == "label" else head] in labels
    ids = [r["id"] for r in train + test]
    assert len(ids) == len(set(ids))

    from medtune.tasks.common import normalize

    def key(row):  # the input text itself, case, punctuation and spacing ignored (not the id)
        return normalize(row["input"])
    train_inputs, test_inputs = {key(r) for r in train}, {key(r) for r in test}
    assert len(train_inputs) == len(train) and len(test_inputs) == len(test)
    assert not train_inputs & test_inputs


@pytest.mark.parametrize("name", TASK_NAMES)
def test_bundled_shifted_split_is_complete_disjoint_and_clean(name):
    """test_shifted.jsonl (other wording than train, scripts/make_datasets.py): 200 rows, no input shared
    with train or test, the test split's labels, and no error or warning from the data doctor."""
    from medtune.data.doctor import check_task_file
    from medtune.tasks.common import normalize

    task = get_task(name)
    train, test, shifted = (read_split(name, split) for split in ("train", "test", "test_shifted"))
    assert len(shifted) == 200
    assert all(row["id"].startswith(f"{GENERATORS[name].ID_PREFIX}-shifted-") for row in shifted)
    inputs = {normalize(row["input"]) for row in shifted}
    assert len(inputs) == 200
    assert not inputs & {normalize(row["input"]) for row in train + test}
    for head in task.labels or {}:
        field = "target" if head == "label" else head
        assert {row[field] for row in shifted} == {row[field] for row in test}, head
    diagnosis = check_task_file(BUNDLED / name / "test_shifted.jsonl", task, other=train, other_name="train")
    assert not diagnosis.errors and not diagnosis.warnings, diagnosis.lines()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_bundled_reference_scores_correct(name):
    task = get_task(name)
    for row in read_split(name, "test") + read_split(name, "train"):
        scored = task.score(row, task.reference(row))
        assert scored["correct"] is True and scored["parse_failed"] is False, row["id"]


def test_bundled_numeric_values_match_targets():
    for row in read_split("numeric_classification", "test"):
        assert label_for(row["value"]) == row["target"]


@pytest.mark.parametrize("splits", [("train", "test"), ("test_shifted",)])
def test_bundled_vignettes_never_name_a_diagnosis(splits):
    rows = [row for split in splits for row in read_split("clinical_reasoning", split)]
    assert {r["target"] for r in rows} == set(DIAGNOSIS_NAMES)
    for row in rows:
        assert parse_diagnosis(row["input"]) is None, row["id"]


def test_bundled_summaries_are_short_and_grounded():
    for row in read_split("summarization", "test") + read_split("summarization", "test_shifted"):
        assert 120 <= len(row["input"].split()) <= 300, row["id"]
        assert len(row["input"]) <= GENERATORS["summarization"].MAX_NOTE_CHARS, row["id"]  # fits 512 tokens
        assert len(row["target"].split()) <= 45, row["id"]
        assert 3 <= len(row["facts"]) <= 5
        for variants in row["facts"]:  # every fact can be found in the note it summarises
            assert fact_present(row["input"], variants), (row["id"], variants)


def test_bundled_class_balance():
    tc = read_split("text_classification", "train")
    assert min(sum(r["target"] == label for r in tc) for label in get_task("text_classification").labels["label"]) > 250
    tr = read_split("triage", "train")
    urgent = sum(r["urgency"] == "urgent" for r in tr) / len(tr)
    assert 0.2 < urgent < 0.4
