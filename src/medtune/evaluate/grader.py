"""The built-in summary grader: a written rubric on the paper's 1-5 Likert scale, offline.

One interface, ``grade_summary(note, reference, facts, summary) -> dict``; the LLM judge
(``judge.py``) returns the same ``grade`` field. The rubric (``docs/grading.md``):

====  ====================================================================================
5     every key fact, nothing unsupported, concise
4     one key fact missing, or all facts but somewhat long; nothing unsupported
3     about half the key facts; or one unsupported/wrong detail; or much too long
2     only the diagnosis or a single fact; two or more unsupported details; a copy of the note
1     empty, chatter only, wrong diagnosis, no key fact
====  ====================================================================================

How each part is measured
-------------------------
* **Coverage**: the fraction of the example's key facts (each a list of accepted phrasings)
  with a phrasing present in the summary as whole words after normalisation.
* **Unsupported statements** (hallucinations), checked against the *source*: the note, the
  reference summary and the facts' phrasings (both are written from the note):

  - numbers (``2.5``, ``40``, the age in ``72-year-old``) that do not occur in the source;
  - clinical terms from a lexicon of common drugs, drug classes, diagnoses, procedures,
    settings and dispositions (``LEXICON``; a term is supported when any phrasing in its
    synonym group, or for a drug class any member drug, occurs in the source);
  - other drug-like words by their stems (``-olol``, ``-pril``, ``-xaban``, ``-mycin``, …);
  - the patient's sex, when the summary's (man/woman, he/she) contradicts the note's
    (``72M``, ``72 yo F``, male/female).

  What it cannot see: negations and wrong relations between true words ("apixaban stopped"
  when it was started, "metformin stopped" when glipizide was), paraphrases outside the
  facts' phrasings, and invented words that are not in the lexicon and not drug-like.
* **Length**: ``long`` above ``max(45, 2 x reference)`` words, ``very long`` above
  ``max(75, 3 x reference)``; a **copy** of the note is at least 60 words of which 80 % of
  the 4-word sequences appear verbatim in the note.

The grade
---------
``base = 1 + round(4 * coverage)``; then length (long: -1; very long: at most 3), then
unsupported statements (one: -1 and at most 3; two or more: -2 and at most 2), then a copy
of the note is at most 2; never below 1. An empty summary is 1.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

RUBRIC = """\
Grade a summary of a clinical note on a 1-5 scale.
Key facts: the diagnosis, the main treatment, the disposition, and (when the reference states them) the key
medication change and the follow-up. An unsupported statement is a drug, a dose or other number, a diagnosis
or procedure, a disposition, or a patient detail (age, sex) that the note does not state or contradicts.
A summary should be 1-2 sentences, at most about 45 words. Chatter adds length, not content.
5 = every key fact, nothing unsupported, concise.
4 = one key fact missing, or all facts but somewhat long (over ~45 words); nothing unsupported.
3 = about half the key facts; or otherwise good with one unsupported or wrong detail; or much too long.
2 = only the diagnosis or a single fact; or two or more unsupported/wrong details; or a near copy of the note.
1 = empty, chatter or refusal only, wrong diagnosis, or no key fact at all."""

SHORT_WORDS = 45  # the prompt asks for at most 45 words
VERY_LONG_WORDS = 75
COPY_MIN_WORDS = 60
COPY_OVERLAP = 0.8


def normalize(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse whitespace (as ``tasks.common.normalize``)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return " ".join(text.split())


@lru_cache(maxsize=None)
def phrase_pattern(phrase: str) -> re.Pattern | None:
    phrase = normalize(phrase)
    return re.compile(rf"(?<![a-z0-9]){re.escape(phrase)}(?:e?s)?(?![a-z0-9])") if phrase else None


def contains(normalized_text: str, phrase: str) -> bool:
    """``phrase`` occurs in an already normalised text as whole words, plural -s/-es allowed."""
    pattern = phrase_pattern(phrase)
    return pattern is not None and pattern.search(normalized_text) is not None


# ---------------------------------------------------------------- coverage

def fact_present(text: str, variants: list[str]) -> bool:
    padded = f" {normalize(text)} "
    return any(f" {normalize(v)} " in padded for v in variants if normalize(v))


def coverage(summary: str, facts: list[list[str]]) -> float:
    if not facts:
        return 0.0
    return sum(fact_present(summary, variants) for variants in facts) / len(facts)


# ---------------------------------------------------------------- the lexicon

# Synonym groups: a term found in the summary is supported when any phrasing of its group is in
# the source. Single drugs need no entry of their own beyond DRUGS (their group is themselves).
SYNONYMS: list[list[str]] = [
    # diagnoses
    ["atrial fibrillation", "afib", "af", "a fib", "rvr"], ["atrial flutter", "flutter"],
    ["heart failure", "chf", "hfref", "hfpef", "adhf", "cardiomyopathy"],
    ["myocardial infarction", "mi", "nstemi", "stemi", "heart attack", "acs", "acute coronary syndrome"],
    ["pulmonary embolism", "pe", "pulmonary emboli"], ["deep vein thrombosis", "dvt"],
    ["pneumonia", "cap", "hap"], ["copd", "aecopd", "emphysema"], ["asthma"],
    ["stroke", "cva", "ischemic stroke"], ["transient ischemic attack", "tia"],
    ["intracranial hemorrhage", "ich", "subarachnoid hemorrhage", "sah"],
    ["sepsis", "septic shock", "bacteremia"], ["urinary tract infection", "uti", "cystitis"],
    ["pyelonephritis", "kidney infection"], ["cellulitis"], ["abscess"], ["osteomyelitis"],
    ["diabetic ketoacidosis", "dka"], ["hyperosmolar", "hhs"], ["hypoglycemia", "low blood sugar"],
    ["hyponatremia", "low sodium"], ["hypernatremia"], ["hyperkalemia"], ["hypokalemia"],
    ["acute kidney injury", "aki", "renal failure"], ["chronic kidney disease", "ckd"],
    ["pancreatitis"], ["cholecystitis"], ["cholangitis"], ["appendicitis"], ["diverticulitis"],
    ["small bowel obstruction", "sbo", "bowel obstruction"], ["ileus"],
    ["gastrointestinal bleed", "gi bleed", "gib", "upper gi bleed", "lower gi bleed", "melena", "hematochezia"],
    ["bleeding", "bleed", "hemorrhage"], ["c difficile", "c diff", "cdiff", "cdi", "clostridioides difficile",
                                         "clostridium difficile"],
    ["colitis"], ["cirrhosis"], ["hepatic encephalopathy"], ["alcohol withdrawal", "etoh withdrawal", "withdrawal",
                                                             "delirium tremens", "dts"],
    ["seizure", "seizures", "status epilepticus"], ["syncope"], ["delirium"], ["dementia"],
    ["hypertension", "htn"], ["hypertensive emergency"], ["diabetes", "dm2", "dm1", "t2dm"],
    ["anemia"], ["thrombocytopenia"], ["potassium", "k", "kcl"], ["neutropenia"],
    ["cancer", "malignancy", "tumor", "metastatic"],
    ["fracture"], ["hip fracture"], ["fall"], ["overdose"], ["anaphylaxis"],
    ["covid", "covid 19", "sars cov 2"], ["influenza", "flu"], ["endocarditis"], ["meningitis"],
    ["pericarditis"], ["aortic stenosis"], ["aortic dissection"], ["shock"], ["respiratory failure"],
    ["ards"], ["pneumothorax"], ["pleural effusion"], ["hypothyroidism"], ["hyperthyroidism"],
    ["gout"], ["depression"], ["hypoxia", "hypoxemia"],
    # procedures and settings
    ["pci", "stent", "stenting", "drug eluting stent", "des", "angioplasty", "cardiac catheterization", "lhc",
     "cath"],
    ["cabg", "bypass"], ["thrombectomy", "endovascular therapy"], ["thrombolysis", "tpa", "alteplase",
                                                                    "tenecteplase"],
    ["intubation", "intubated", "mechanical ventilation", "ventilator"], ["bipap", "cpap", "niv"],
    ["dialysis", "hemodialysis"], ["transfusion", "transfused", "prbc", "prbcs"],
    ["cholecystectomy", "lap chole", "gallbladder removal"], ["appendectomy"], ["laparotomy", "ex lap"],
    ["adhesiolysis", "lysis of adhesions"], ["colectomy"], ["endoscopy", "egd"], ["colonoscopy"], ["ercp"],
    ["paracentesis"], ["thoracentesis"], ["lumbar puncture", "lp"], ["biopsy"], ["surgery", "surgical", "operative",
                                                                                  "operation"],
    ["icu", "intensive care", "micu", "ccu"], ["hypertonic saline", "3 saline"],
    ["sodium chloride tablets", "nacl tabs", "salt tabs", "salt tablets"],
    # dispositions
    ["skilled nursing facility", "snf", "nursing facility", "nursing home"],
    ["inpatient rehabilitation", "inpatient rehab", "acute rehab", "irf"], ["hospice"],
    ["home health", "home nursing", "visiting nurse", "vna"], ["long term acute care", "ltach"],
    ["against medical advice", "ama"],
    # vessels (a wrong vessel is a wrong detail)
    ["lad", "left anterior descending"], ["rca", "right coronary"], ["lcx", "circumflex"],
]

DRUGS = """
acetaminophen tylenol albuterol allopurinol alprazolam amiodarone amlodipine amoxicillin augmentin ampicillin
apixaban eliquis aspirin atenolol atorvastatin azithromycin budesonide bumetanide buprenorphine carvedilol
cefazolin cefepime ceftriaxone cephalexin keflex cetirizine ciprofloxacin cipro citalopram clindamycin
clonazepam clonidine clopidogrel plavix colchicine dabigatran dapagliflozin dexamethasone dextrose diazepam
digoxin diltiazem diphenhydramine docusate donepezil doxycycline duloxetine empagliflozin enalapril enoxaparin
lovenox entresto escitalopram esomeprazole famotidine fentanyl fidaxomicin fluconazole fluoxetine formoterol
furosemide lasix gabapentin glargine lantus glipizide glyburide haloperidol heparin hydralazine
hydrochlorothiazide hctz hydrocodone hydromorphone ibuprofen insulin ipratropium duonebs isosorbide ketorolac
labetalol lactulose lamotrigine levetiracetam levofloxacin levothyroxine lidocaine linezolid lisinopril
lispro lorazepam losartan magnesium meropenem metformin methadone methylprednisolone metoclopramide
metolazone metoprolol metronidazole midazolam mirtazapine montelukast morphine nafcillin naloxone naltrexone
acamprosate naproxen nitrofurantoin nitroglycerin norepinephrine olanzapine omeprazole ondansetron
oseltamivir oxycodone pantoprazole phenobarbital phenytoin piperacillin tazobactam zosyn
pravastatin prednisone prednisolone pregabalin propranolol quetiapine ramipril rifaximin risperidone
rivaroxaban xarelto rosuvastatin sacubitril valsartan senna sertraline simvastatin sitagliptin
spironolactone sucralfate sumatriptan tamsulosin thiamine ticagrelor brilinta tiotropium torsemide tramadol
trazodone vancomycin vanc venlafaxine verapamil warfarin coumadin zolpidem tolvaptan conivaptan octreotide
pantoprazole propofol prasugrel alteplase tenecteplase cangrelor eptifibatide bivalirudin argatroban
fondaparinux dofetilide sotalol flecainide propafenone dronedarone ivabradine ranolazine nifedipine
hydroxyzine melatonin latanoprost folate multivitamin semaglutide liraglutide dulaglutide exenatide
""".split()

# drug classes: supported when the class word or any member drug is in the source
CLASSES: dict[str, list[str]] = {
    "antibiotic": ["antibiotics", "amoxicillin", "augmentin", "ampicillin", "azithromycin", "cefazolin", "cefepime",
                   "ceftriaxone", "cephalexin", "ciprofloxacin", "clindamycin", "doxycycline", "fidaxomicin",
                   "levofloxacin", "linezolid", "meropenem", "metronidazole", "nafcillin", "nitrofurantoin",
                   "piperacillin", "vancomycin", "rifaximin", "antimicrobial"],
    "anticoagulant": ["anticoagulation", "anticoagulated", "blood thinner", "apixaban", "rivaroxaban", "dabigatran",
                      "warfarin", "heparin", "enoxaparin", "fondaparinux", "argatroban", "bivalirudin"],
    "antiplatelet": ["dual antiplatelet", "dapt", "aspirin", "clopidogrel", "ticagrelor", "prasugrel"],
    "steroid": ["steroids", "corticosteroid", "corticosteroids", "prednisone", "prednisolone",
                "methylprednisolone", "dexamethasone", "hydrocortisone", "budesonide"],
    "diuretic": ["diuretics", "diuresis", "diuresed", "furosemide", "bumetanide", "torsemide", "metolazone",
                 "hydrochlorothiazide", "spironolactone"],
    "opioid": ["opioids", "oxycodone", "hydrocodone", "hydromorphone", "morphine", "fentanyl", "tramadol",
               "methadone"],
    "benzodiazepine": ["benzodiazepines", "benzos", "lorazepam", "diazepam", "alprazolam", "clonazepam",
                       "midazolam", "chlordiazepoxide"],
    "beta blocker": ["metoprolol", "carvedilol", "atenolol", "propranolol", "labetalol", "sotalol"],
    "statin": ["atorvastatin", "rosuvastatin", "simvastatin", "pravastatin"],
    "antiviral": ["oseltamivir", "remdesivir", "acyclovir", "valacyclovir"],
    "vasopressor": ["pressors", "norepinephrine", "vasopressin", "phenylephrine", "epinephrine"],
}

# drug-like stems for words the lexicon does not know (at least 7 letters)
DRUG_STEM = re.compile(
    r"^[a-z]{3,}(?:olol|pril|sartan|dipine|statin|xaban|gatran|parin|floxacin|mycin|micin|cillin|cycline|"
    r"azole|azepam|azolam|barbital|profen|codone|morphone|triptan|setron|lukast|terol|sonide|"
    r"olone|asone|vaptan|gliflozin|gliptin|glutide|glitazone|prazole|tidine|semide|thiazide|penem|vir|mab|"
    r"tinib)$")
NOT_DRUGS = {"cholesterol"}  # ordinary words that look like drugs by their stem


def lexicon_groups() -> list[list[str]]:
    """Every synonym group the grader checks: SYNONYMS, each drug on its own, each class with its members."""
    groups = [list(g) for g in SYNONYMS]
    grouped = {normalize(t) for g in SYNONYMS for t in g}
    groups += [[d] for d in dict.fromkeys(DRUGS) if normalize(d) not in grouped]
    groups += [[cls, *members] for cls, members in CLASSES.items()]
    return groups


LEXICON = lexicon_groups()


# ---------------------------------------------------------------- unsupported statements

NUMBER = re.compile(r"\d+(?:\.\d+)?")
MALE_WORDS = {"man", "male", "gentleman", "he", "his", "him", "boy"}
FEMALE_WORDS = {"woman", "female", "lady", "she", "her", "hers", "girl"}


def numbers(text: str) -> set[str]:
    """Numbers in a text, normalised (``40.0`` -> ``40``); digits glued to letters count (``72M``, ``D50``)."""
    out = set()
    for m in NUMBER.findall(text.replace(",", "")):
        out.add(m.rstrip("0").rstrip(".") if "." in m else str(int(m)))
    return out


def sex_of_note(note: str) -> str | None:
    m = re.search(r"\b\d{1,3}\s?(?:yo|y/o|year[- ]old)?\s?([MF])\b", note)
    if m:
        return m.group(1)
    words = set(normalize(note).split())
    male, female = bool(words & {"male", "man", "gentleman"}), bool(words & {"female", "woman", "lady"})
    return "M" if male and not female else "F" if female and not male else None


def sex_of_summary(summary: str) -> str | None:
    for word in normalize(summary).split():  # the first gendered word decides
        if word in MALE_WORDS:
            return "M"
        if word in FEMALE_WORDS:
            return "F"
    return None


def unsupported_statements(summary: str, source: str, note: str) -> list[str]:
    """Numbers, lexicon terms, drug-like words and the patient's sex in ``summary`` that ``source`` lacks."""
    found: list[str] = []
    source_numbers = numbers(source)
    # in order of appearance; "2" is first found where "2018" is, and a set's order changes between runs
    for num in sorted(numbers(summary) - source_numbers, key=lambda n: (summary.find(n), n)):
        found.append(f"number {num}")
    norm_summary, norm_source = normalize(summary), normalize(source)
    reported: set[str] = set()  # a word is one statement even when it is in two groups (drug and class)
    for group in LEXICON:
        hits = [t for t in group if contains(norm_summary, t) and normalize(t) not in reported]
        if hits and not any(contains(norm_source, t) for t in group):
            reported.update(normalize(t) for t in hits)
            found.append(f"term {max(hits, key=len)}")
    lexicon_words = {w for g in LEXICON for t in g for w in normalize(t).split()}
    for word in dict.fromkeys(norm_summary.split()):
        if (len(word) >= 7 and word not in lexicon_words and word not in NOT_DRUGS and DRUG_STEM.match(word)
                and not contains(norm_source, word)):
            found.append(f"drug {word}")
    note_sex, summary_sex = sex_of_note(note), sex_of_summary(summary)
    if note_sex and summary_sex and note_sex != summary_sex:
        found.append(f"sex {'male' if summary_sex == 'M' else 'female'} (the note says "
                     f"{'male' if note_sex == 'M' else 'female'})")
    return found


# ---------------------------------------------------------------- length and copies

def ngrams(words: list[str], n: int = 4) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copied_fraction(summary: str, note: str) -> float:
    grams = ngrams(normalize(summary).split())
    return len(grams & ngrams(normalize(note).split())) / len(grams) if grams else 0.0


def length_class(words: int, reference_words: int) -> str:
    if words > max(VERY_LONG_WORDS, 3 * reference_words):
        return "very_long"
    if words > max(SHORT_WORDS, 2 * reference_words):
        return "long"
    return "ok"


# ---------------------------------------------------------------- the grade

def grade_summary(note: str, reference: str, facts: list[list[str]], summary: str) -> dict:
    """Grade one summary on the rubric; returns the grade and every part it was made from."""
    words = len(summary.split())
    if not summary.strip():
        return {"grade": 1, "coverage": 0.0, "facts_missing": [v[0] for v in facts if v], "unsupported": [],
                "words": 0, "length": "ok", "copy": False, "reasons": ["empty"]}
    cov = coverage(summary, facts)
    source = "\n".join([note, reference, *(" ; ".join(v) for v in facts)])
    unsupported = unsupported_statements(summary, source, note)
    length = length_class(words, len(reference.split()))
    copy = words >= COPY_MIN_WORDS and copied_fraction(summary, note) >= COPY_OVERLAP
    grade = 1 + round(4 * cov)
    reasons = [f"coverage {cov:.2f} -> {grade}"]
    if length == "long":
        grade -= 1
        reasons.append(f"long ({words} words): -1")
    elif length == "very_long":
        grade = min(grade, 3)
        reasons.append(f"very long ({words} words): at most 3")
    if len(unsupported) == 1:
        grade = min(grade - 1, 3)
        reasons.append("one unsupported statement: -1, at most 3")
    elif len(unsupported) >= 2:
        grade = min(grade - 2, 2)
        reasons.append(f"{len(unsupported)} unsupported statements: -2, at most 2")
    if copy:
        grade = min(grade, 2)
        reasons.append("a copy of the note: at most 2")
    return {"grade": max(1, grade), "coverage": cov,
            "facts_missing": [v[0] for v in facts if v and not fact_present(summary, v)],
            "unsupported": unsupported, "words": words, "length": length, "copy": copy, "reasons": reasons}


# ---------------------------------------------------------------- agreement with hand grades

DATA = Path(__file__).resolve().parents[1] / "data"
HAND_GRADED = DATA / "hand_graded" / "summaries.jsonl"
NOTES = DATA / "bundled" / "summarization" / "test.jsonl"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def check_hand_graded(path: Path = HAND_GRADED, notes: Path = NOTES) -> dict:
    """Grade the hand-graded summaries with the built-in grader and measure the agreement.

    Each row of ``path`` names a bundled test example (``example_id``) and carries a ``summary``
    and the ``hand_grade`` given by reading the note against the rubric. Returns the quadratic-
    weighted Cohen's kappa, the exact and within-one agreement, n, and every row's two grades.
    """
    from sklearn.metrics import cohen_kappa_score

    examples = {e["id"]: e for e in read_jsonl(notes)}
    rows = []
    for item in read_jsonl(path):
        ex = examples[item["example_id"]]
        graded = grade_summary(ex["input"], ex["target"], ex["facts"], item["summary"])
        rows.append({"id": item["id"], "kind": item.get("kind", ""), "hand": int(item["hand_grade"]),
                     "grader": graded["grade"], "coverage": graded["coverage"],
                     "unsupported": graded["unsupported"], "length": graded["length"], "copy": graded["copy"]})
    hand = [r["hand"] for r in rows]
    auto = [r["grader"] for r in rows]
    kappa = float(cohen_kappa_score(hand, auto, weights="quadratic", labels=[1, 2, 3, 4, 5]))
    return {"n": len(rows), "kappa_quadratic": kappa,
            "exact_agreement": sum(h == a for h, a in zip(hand, auto)) / len(rows),
            "within_one": sum(abs(h - a) <= 1 for h, a in zip(hand, auto)) / len(rows), "rows": rows}
