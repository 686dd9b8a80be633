"""Clinical reasoning: a case vignette -> the single most likely diagnosis (open answer).

The prompt lists no options. Each diagnosis has a canonical name and accepted
synonyms/abbreviations ("MI", "heart attack", "STEMI" for myocardial infarction).
An answer is right when the first diagnosis term it names (longest match first,
searched among ALL known diagnoses) is the gold diagnosis; an answer that names
no known diagnosis is a parse failure.

The bundled vignettes (written by ``scripts/synthetic/clinical_reasoning.py``) never
contain the name or any synonym of any diagnosis, so the answer has to be reasoned
from the findings rather than copied.
"""

from __future__ import annotations

import re

from .common import Metric, Task, accuracy, find_label

SYSTEM_PROMPT = "You are an experienced physician. You read a case and give the single most likely diagnosis."


def build_prompt(example: dict) -> str:
    return (f"Case:\n{example['input']}\n\n"
            "What is the single most likely diagnosis? Answer with the diagnosis name only.")


def reference(example: dict) -> str:
    return example["target"]


# Every diagnosis the parser knows: canonical name first, then accepted synonyms and abbreviations.
DIAGNOSES = [
    ["myocardial infarction", "MI", "heart attack", "acute myocardial infarction", "acute MI", "STEMI", "NSTEMI",
     "acute coronary syndrome", "ACS"],
    ["pulmonary embolism", "PE", "pulmonary embolus", "pulmonary emboli", "pulmonary thromboembolism"],
    ["diabetic ketoacidosis", "DKA", "ketoacidosis"],
    ["pneumonia", "community-acquired pneumonia", "CAP", "lobar pneumonia", "bacterial pneumonia"],
    ["appendicitis", "acute appendicitis", "perforated appendicitis"],
    ["cholecystitis", "acute cholecystitis", "calculous cholecystitis"],
    ["pancreatitis", "acute pancreatitis", "gallstone pancreatitis", "alcoholic pancreatitis"],
    ["ischemic stroke", "stroke", "acute ischemic stroke", "ischaemic stroke", "CVA", "cerebrovascular accident",
     "cerebral infarction"],
    ["intracerebral hemorrhage", "ICH", "hemorrhagic stroke", "haemorrhagic stroke", "intracranial hemorrhage",
     "intraparenchymal hemorrhage", "cerebral hemorrhage", "intracerebral haemorrhage"],
    ["subarachnoid hemorrhage", "SAH", "subarachnoid haemorrhage", "aneurysmal subarachnoid hemorrhage",
     "ruptured aneurysm", "ruptured cerebral aneurysm"],
    ["meningitis", "bacterial meningitis", "meningococcal meningitis", "pneumococcal meningitis"],
    ["pyelonephritis", "acute pyelonephritis", "kidney infection", "upper urinary tract infection"],
    ["deep vein thrombosis", "DVT", "deep venous thrombosis", "venous thrombosis"],
    ["heart failure", "congestive heart failure", "CHF", "acute decompensated heart failure", "ADHF", "HFrEF",
     "systolic heart failure", "cardiac failure"],
    ["asthma exacerbation", "asthma attack", "acute asthma", "asthma", "status asthmaticus",
     "acute asthma exacerbation"],
    ["COPD exacerbation", "COPD", "acute exacerbation of COPD", "AECOPD", "exacerbation of COPD",
     "chronic obstructive pulmonary disease", "chronic obstructive pulmonary disease exacerbation"],
    ["pneumothorax", "spontaneous pneumothorax", "primary spontaneous pneumothorax", "tension pneumothorax",
     "collapsed lung"],
    ["aortic dissection", "thoracic aortic dissection", "dissecting aortic aneurysm", "type A aortic dissection",
     "type B aortic dissection"],
    ["atrial fibrillation", "AF", "afib", "a fib", "atrial fibrillation with rapid ventricular response"],
    ["hypothyroidism", "underactive thyroid", "Hashimoto thyroiditis", "Hashimoto's thyroiditis", "myxedema"],
    ["Graves disease", "Graves", "hyperthyroidism", "thyrotoxicosis", "overactive thyroid"],
    ["iron deficiency anemia", "IDA", "iron deficiency anaemia", "iron deficiency"],
    ["vitamin B12 deficiency", "B12 deficiency", "pernicious anemia", "pernicious anaemia", "cobalamin deficiency"],
    ["migraine", "migraine headache", "migraine with aura", "migraine without aura"],
    ["gout", "acute gout", "gouty arthritis", "gout flare", "podagra"],
    ["septic arthritis", "infectious arthritis", "bacterial arthritis", "pyogenic arthritis"],
    ["cellulitis", "erysipelas"],
    ["nephrolithiasis", "kidney stone", "kidney stones", "renal colic", "urolithiasis", "ureterolithiasis",
     "renal calculus", "ureteric stone", "ureteral stone"],
    ["small bowel obstruction", "SBO", "bowel obstruction", "intestinal obstruction",
     "adhesive small bowel obstruction"],
    ["diverticulitis", "acute diverticulitis", "sigmoid diverticulitis"],
    ["ectopic pregnancy", "tubal pregnancy", "ruptured ectopic pregnancy", "ectopic"],
    ["testicular torsion", "torsion", "torsion of the testis", "spermatic cord torsion"],
    ["celiac disease", "coeliac disease", "celiac", "celiac sprue", "gluten enteropathy",
     "gluten-sensitive enteropathy"],
    ["ulcerative colitis", "UC", "ulcerative proctitis"],
    ["Crohn disease", "Crohn's disease", "Crohns disease", "Crohn's", "Crohns", "regional enteritis"],
    ["Addison disease", "Addison's disease", "adrenal insufficiency", "primary adrenal insufficiency",
     "adrenal crisis", "Addisonian crisis"],
    ["Cushing syndrome", "Cushing's syndrome", "Cushing disease", "Cushing's disease", "Cushing", "hypercortisolism"],
    ["infectious mononucleosis", "mononucleosis", "mono", "infectious mono", "glandular fever", "EBV infection",
     "Epstein-Barr virus infection"],
    ["streptococcal pharyngitis", "strep throat", "strep pharyngitis", "group A strep pharyngitis",
     "streptococcal tonsillitis", "bacterial pharyngitis"],
    ["tuberculosis", "TB", "pulmonary tuberculosis", "pulmonary TB", "active tuberculosis"],
    ["giant cell arteritis", "temporal arteritis", "GCA", "cranial arteritis"],
    ["rheumatoid arthritis", "RA", "rheumatoid disease", "seropositive rheumatoid arthritis"],
    ["systemic lupus erythematosus", "SLE", "lupus", "systemic lupus"],
    ["Parkinson disease", "Parkinson's disease", "Parkinsons disease", "Parkinson's", "Parkinsons", "Parkinson",
     "parkinsonism"],
    ["myasthenia gravis", "myasthenia", "ocular myasthenia", "generalized myasthenia gravis"],
    ["Guillain-Barre syndrome", "Guillain Barre", "GBS",
     "acute inflammatory demyelinating polyneuropathy", "AIDP"],
    ["multiple sclerosis", "MS", "relapsing-remitting multiple sclerosis", "RRMS"],
    ["anaphylaxis", "anaphylactic shock", "anaphylactic reaction"],
    ["hypoglycemia", "hypoglycaemia", "low blood sugar", "insulin-induced hypoglycemia", "hypoglycemic episode"],
    ["preeclampsia", "pre-eclampsia", "severe preeclampsia", "preeclampsia with severe features"],
    ["acute angle-closure glaucoma", "angle-closure glaucoma", "acute glaucoma", "glaucoma", "acute angle closure"],
    ["herpes zoster", "shingles", "zoster"],
    ["peptic ulcer disease", "peptic ulcer", "PUD", "gastric ulcer", "duodenal ulcer", "stomach ulcer",
     "bleeding peptic ulcer"],
    ["gastroesophageal reflux disease", "GERD", "GORD", "acid reflux", "reflux disease", "reflux esophagitis",
     "gastro-oesophageal reflux disease"],
    ["carbon monoxide poisoning", "CO poisoning", "carbon monoxide toxicity"],
    ["Lyme disease", "Lyme", "early Lyme disease", "Lyme borreliosis", "borreliosis"],
    ["infective endocarditis", "endocarditis", "bacterial endocarditis", "infectious endocarditis"],
    ["pericarditis", "acute pericarditis", "viral pericarditis"],
    ["hyperosmolar hyperglycemic state", "HHS", "hyperosmolar hyperglycaemic state", "hyperglycemic hyperosmolar state",
     "hyperosmolar nonketotic state", "hyperosmolar nonketotic coma", "HONK", "hyperosmolar state"],
    ["alcohol withdrawal", "alcohol withdrawal syndrome", "delirium tremens", "DTs", "ethanol withdrawal"],
    ["benign paroxysmal positional vertigo", "BPPV", "benign positional vertigo", "positional vertigo"],
]

DIAGNOSIS_NAMES = [names[0] for names in DIAGNOSES]
SYNONYMS = {names[0]: names[1:] for names in DIAGNOSES}

# "The most likely diagnosis is X" / "Diagnosis: X": read what follows the cue first,
# so a differential listed before the committed answer does not win.
ANSWER_CUE = re.compile(r"(diagnosis|answer)\s*(is|would be|:)", re.IGNORECASE)


def parse_diagnosis(output: str) -> str | None:
    """The canonical name of the first known diagnosis the output names, or None."""
    cue = ANSWER_CUE.search(output)
    if cue:
        found = find_label(output[cue.end():], DIAGNOSIS_NAMES, SYNONYMS)
        if found:
            return found
    return find_label(output, DIAGNOSIS_NAMES, SYNONYMS)


def score(example: dict, output: str) -> dict:
    pred = parse_diagnosis(output)
    gold = example["target"]
    return {"gold": gold, "pred": pred, "correct": pred == gold, "parse_failed": pred is None}


def wrong_completions(example: dict) -> list[str]:
    return []  # open answers: pairs come from the model's own errors


TASK = Task(
    name="clinical_reasoning",
    description="case vignette -> most likely diagnosis (open answer, synonyms accepted)",
    system_prompt=SYSTEM_PROMPT,
    labels=None,
    metrics=[Metric("accuracy", accuracy, "mcnemar", item_key="correct")],
    primary_metrics=["accuracy"],
    max_new_tokens=16,
    build_prompt=build_prompt,
    reference=reference,
    score=score,
    wrong_completions=wrong_completions,
    class_field="target",  # a diagnosis out of DIAGNOSIS_NAMES
)
