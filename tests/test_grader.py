"""The built-in summary grader: the rubric's parts, and its agreement with the hand-graded set."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medtune.cli import app
from medtune.evaluate.grader import HAND_GRADED, NOTES, check_hand_graded, grade_summary

NOTE = ("DISCHARGE SUMMARY\nPt: 84F | LOS 5 d\nAdmission dx: AFib with RVR\n"
        "Hospital course: Given IV diltiazem bolus then drip, HR improved to 80s. CHA2DS2-VASc 3.\n"
        "Home meds: atorvastatin 40 mg, omeprazole 20 mg\n"
        "Discharge meds: apixaban 5 mg BID (NEW)\nDisposition: Home with family\n"
        "Follow-up: Cardiology clinic in 2 weeks")
REFERENCE = ("84-year-old woman admitted with atrial fibrillation and treated with diltiazem; started apixaban. "
             "Discharged home, with cardiology follow-up.")
FACTS = [["atrial fibrillation", "afib", "af"], ["diltiazem", "rate control"], ["home", "discharged home"],
         ["apixaban", "eliquis"], ["cardiology", "cardiologist"]]


def graded(summary: str) -> dict:
    return grade_summary(NOTE, REFERENCE, FACTS, summary)


def test_reference_and_faithful_paraphrase_get_5():
    assert graded(REFERENCE)["grade"] == 5
    row = graded("84-year-old woman with AFib with RVR rate controlled on diltiazem, started apixaban 5 mg BID; "
                 "home with cardiology follow-up in 2 weeks.")
    assert row == {**row, "grade": 5, "coverage": 1.0, "unsupported": [], "length": "ok", "copy": False}


def test_missing_facts_lower_the_grade():
    one_missing = graded("84-year-old woman with atrial fibrillation on diltiazem and apixaban; discharged home.")
    assert one_missing["grade"] == 4 and one_missing["facts_missing"] == ["cardiology"]
    row = graded("84-year-old woman with atrial fibrillation.")
    assert row["grade"] == 2 and row["facts_missing"] == ["diltiazem", "home", "apixaban", "cardiology"]
    assert graded("")["grade"] == 1
    assert graded("Sure! Here is a short summary of the note. Let me know if you need anything else.")["grade"] == 1


def test_unsupported_drugs_numbers_and_sex_are_found():
    one = graded("84-year-old woman with AF on diltiazem, started apixaban 2.5 mg BID; home, cardiology follow-up.")
    assert one["unsupported"] == ["number 2.5"] and one["grade"] == 3
    two = graded("84-year-old woman with AF on diltiazem and metoprolol, started warfarin; home, cardiology follow-up.")
    assert two["unsupported"] == ["term metoprolol", "term warfarin"] and two["grade"] == 2
    man = graded("84-year-old man with AF on diltiazem, started apixaban; home with cardiology follow-up.")
    assert man["unsupported"] == ["sex male (the note says female)"] and man["grade"] == 3
    # a drug the lexicon does not know is caught by its stem; a drug class is supported by a member drug
    stem = graded("84-year-old woman with AF on diltiazem and bisoprolol; anticoagulated with apixaban; home, "
                  "cardiology follow-up.")
    assert stem["unsupported"] == ["drug bisoprolol"]


def test_unsupported_numbers_come_in_the_same_order_in_every_process():
    """Numbers found at the same place ("2" is first found inside "2018") were listed in a set's order, which Python's string
    hashing changes from one process to the next: the same summary got differently ordered predictions.jsonl."""
    import os
    import subprocess
    import sys

    code = ("from medtune.evaluate.grader import unsupported_statements as u; "
            "print(u('Seen in 2018, 25 days, 2 doses.', 'Seen once.', 'A 60 M.'))")
    outputs = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              capture_output=True, text=True, check=True).stdout.strip() for seed in range(6)}
    assert outputs == {"['number 2', 'number 2018', 'number 25']"}


def test_length_and_copies():
    long = graded(" ".join([REFERENCE] * 3))
    assert long["length"] == "long" and long["grade"] == 4
    rambling = graded(" ".join([REFERENCE] * 5))
    assert rambling["length"] == "very_long" and rambling["grade"] == 3
    real = json.loads(NOTES.read_text(encoding="utf-8").splitlines()[3])  # su-test-0004, a 150-word note
    copy = grade_summary(real["input"], real["target"], real["facts"], real["input"])
    assert copy["copy"] is True and copy["coverage"] == 1.0 and copy["grade"] == 2


def test_hand_graded_set_is_large_varied_and_well_formed():
    rows = [json.loads(line) for line in HAND_GRADED.read_text(encoding="utf-8").splitlines() if line.strip()]
    notes = {json.loads(line)["id"] for line in NOTES.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert len(rows) >= 30 and len({r["id"] for r in rows}) == len(rows)
    assert all(r["example_id"] in notes and r["hand_grade"] in (1, 2, 3, 4, 5) for r in rows)
    assert {r["hand_grade"] for r in rows} == {1, 2, 3, 4, 5}
    assert len({r["kind"] for r in rows}) >= 10


def test_builtin_grader_agrees_with_hand_grades():
    """Quadratic-weighted kappa >= 0.8: the bottom of Landis & Koch's 'almost perfect' band, above the
    0.6-0.8 that two clinicians grading summaries on a Likert scale usually reach with each other; a
    grader worse than a second human rater should not be the default. Measured: 0.94 (n=42)."""
    result = check_hand_graded()
    assert result["n"] >= 30
    assert result["kappa_quadratic"] >= 0.8, result["kappa_quadratic"]
    assert result["exact_agreement"] >= 0.7
    assert result["within_one"] >= 0.9


def test_cli_grader_check_prints_the_kappa():
    result = CliRunner().invoke(app, ["grader", "check", "--show"])
    assert result.exit_code == 0, result.output
    assert "quadratic-weighted kappa 0.9" in result.output and "42 summaries" in result.output
    missing = CliRunner().invoke(app, ["grader", "check", "--file", "nope.jsonl"])
    assert missing.exit_code == 2 and "no such hand-graded file" in missing.output
