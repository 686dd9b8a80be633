"""Synthetic clinical notes and reference summaries for summarization.

A case is drawn from a scenario (diagnosis, treatment, new medication, follow-up, disposition);
the note is a discharge summary or a progress note with section headers, abbreviations and
distractor lines (past history, home medications, incidental labs, consults); the reference
summary states the case's key facts, and ``facts`` lists the accepted phrasings of each.
``split="shifted"`` writes the same kind of case in other layouts (a letter to the GP, a bulleted
handoff, EHR section headers, a ward-round entry) with every key fact worded differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ID_PREFIX = "su"


@dataclass(frozen=True)
class Fact:
    summary: str  # how the reference summary states it
    variants: list[str]  # accepted phrasings (the grader's whole-word match)
    note: str = ""  # how the note states it (must contain one of the variants)


@dataclass(frozen=True)
class Scenario:
    diagnosis: Fact  # note field: a phrase naming the diagnosis in the note
    complaint: str
    presentations: list[str]
    treatments: list[Fact]  # note field: a hospital-course sentence
    medications: list[Fact]  # summary field is a whole clause ("started apixaban")
    followups: list[Fact]
    dispositions: list[str]  # keys of DISPOSITIONS
    course_extra: list[str]
    ages: tuple[int, int] = (35, 92)


DISPOSITIONS = {
    "home": Fact("home", ["home", "discharged home"], "Home with family"),
    "home health": Fact("home with home health", ["home health", "home nursing", "visiting nurse", "vna"],
                        "Home with home health services (RN visits, PT)"),
    "snf": Fact("to a skilled nursing facility", ["skilled nursing facility", "snf", "nursing facility", "nursing home"],
                "Skilled nursing facility (SNF) for short-term care"),
    "rehab": Fact("to inpatient rehabilitation", ["inpatient rehabilitation", "inpatient rehab", "rehabilitation",
                                                  "rehab", "acute rehab", "irf"],
                  "Acute inpatient rehabilitation facility (IRF)"),
}

# how a progress note's plan states each disposition
PLANNED = {"home": "home", "home with home health": "home with home health (RN/PT)",
           "to a skilled nursing facility": "to SNF", "to inpatient rehabilitation": "to acute inpatient rehab (IRF)"}

PCP = Fact("primary care follow-up", ["primary care", "pcp", "family doctor", "gp"], "PCP in 1 week")

SCENARIOS = [
    Scenario(Fact("atrial fibrillation with rapid ventricular response", ["atrial fibrillation", "afib", "af", "a fib"],
                  "AFib with RVR"),
             "palpitations", ["palpitations and lightheadedness x 6 h, HR 150s irregular on arrival",
                              "fatigue and fluttering in chest since the previous night; ECG AF with RVR at 146"],
             [Fact("diltiazem", ["diltiazem", "rate control"],
                   "Given IV diltiazem bolus then drip, HR improved to 80s; transitioned to PO diltiazem."),
              Fact("metoprolol", ["metoprolol", "beta blocker", "rate control"],
                   "Rate controlled with IV then PO metoprolol, HR 70-90s by HD2.")],
             [Fact("started apixaban", ["apixaban", "eliquis", "anticoagulation"], "apixaban 5 mg BID (NEW)")],
             [Fact("cardiology follow-up", ["cardiology", "cardiologist"], "Cardiology clinic in 2 weeks")],
             ["home", "home health"],
             ["TTE: EF 55%, mild LA enlargement.", "TSH normal.", "CHA2DS2-VASc 3."]),
    Scenario(Fact("community-acquired pneumonia", ["pneumonia", "cap"], "community-acquired pneumonia (RLL)"),
             "cough and fever", ["3 d of productive cough, fever to 39.4 and pleuritic R chest pain",
                                 "fever, chills and worsening dyspnea x 4 d; CXR with RLL consolidation"],
             [Fact("ceftriaxone and azithromycin", ["ceftriaxone", "azithromycin", "iv antibiotics", "antibiotics"],
                   "Treated with IV ceftriaxone + azithromycin; afebrile after 48 h, weaned from 2 L O2.")],
             [Fact("switched to oral amoxicillin-clavulanate", ["amoxicillin clavulanate", "amoxicillin", "augmentin"],
                   "amoxicillin-clavulanate 875 mg BID x 5 more days")],
             [PCP, Fact("repeat chest X-ray in 6 weeks", ["chest x ray", "cxr", "repeat imaging"], "Repeat CXR in 6 wks")],
             ["home", "snf"],
             ["Blood cx NGTD.", "Legionella/pneumococcal urine Ag negative.", "Procalcitonin 2.1."]),
    Scenario(Fact("acute decompensated heart failure", ["heart failure", "chf", "hfref", "adhf"], "acute on chronic HFrEF"),
             "dyspnea and leg swelling", ["worsening DOE, 3-pillow orthopnea and 5 kg weight gain over 2 wks",
                                          "PND and bilateral LE edema after dietary indiscretion"],
             [Fact("IV furosemide diuresis", ["furosemide", "diuresis", "lasix", "diuretic", "diuretics"],
                   "Diuresed with IV furosemide 40 mg BID, net -6 L, weight 92 -> 86 kg.")],
             [Fact("started sacubitril-valsartan", ["sacubitril valsartan", "sacubitril", "entresto"],
                   "sacubitril-valsartan 24/26 mg BID (NEW)"),
              Fact("started spironolactone", ["spironolactone", "aldactone"], "spironolactone 25 mg daily (NEW)")],
             [Fact("heart failure clinic follow-up", ["heart failure clinic", "hf clinic", "cardiology"],
                   "HF clinic in 7 days with BMP")],
             ["home", "home health", "snf"],
             ["Echo EF 25%.", "BNP 1,450 on admission.", "Daily weights taught."]),
    Scenario(Fact("COPD exacerbation", ["copd exacerbation", "copd", "aecopd"], "AECOPD"),
             "shortness of breath", ["increased dyspnea and purulent sputum x 3 d, SpO2 85% RA",
                                     "worsening wheeze and cough after URI; home O2 requirement up"],
             [Fact("nebulizers and prednisone", ["prednisone", "steroids", "corticosteroids", "nebulizers"],
                   "Treated with duonebs q4h and prednisone 40 mg daily; O2 weaned to baseline 2 L.")],
             [Fact("5-day doxycycline course", ["doxycycline"], "doxycycline 100 mg BID to complete 5 days"),
              Fact("prednisone taper to finish", ["prednisone"], "prednisone 40 mg daily x 2 more days")],
             [Fact("pulmonology follow-up", ["pulmonology", "pulmonary", "pulmonologist", "pulm"], "Pulm clinic in 3 weeks"), PCP],
             ["home", "home health"],
             ["ABG 7.34/56.", "CXR hyperinflated, no infiltrate.", "Smoking cessation counseling given."]),
    Scenario(Fact("diabetic ketoacidosis", ["diabetic ketoacidosis", "dka"], "DKA"),
             "vomiting and abdominal pain", ["2 d of polyuria, polydipsia, vomiting; glucose 540, AG 28, pH 7.10",
                                             "nausea, abd pain and Kussmaul breathing after missed insulin doses"],
             [Fact("an insulin infusion", ["insulin infusion", "insulin drip", "iv insulin", "insulin"],
                   "Managed in ICU with IV fluids and insulin infusion; AG closed at 18 h, bridged to SC insulin.")],
             [Fact("started basal-bolus insulin with glargine", ["glargine", "basal bolus", "lantus", "insulin"],
                   "insulin glargine 20 units qHS + lispro sliding scale")],
             [Fact("endocrinology follow-up", ["endocrinology", "endocrine", "endocrinologist"], "Endocrine clinic in 1 week")],
             ["home"],
             ["HbA1c 11.2%.", "Diabetes educator visit completed.", "K repleted x3."],
             ages=(18, 45)),
    Scenario(Fact("left lower leg cellulitis", ["cellulitis"], "LLE cellulitis"),
             "leg redness", ["3 d of spreading erythema, warmth and pain of L shin, T 38.4",
                             "painful swollen red L lower leg after a scrape while gardening"],
             [Fact("IV cefazolin", ["cefazolin", "iv antibiotics", "antibiotics"],
                   "Started IV cefazolin with marked improvement of erythema margins by 48 h.")],
             [Fact("oral cephalexin to finish", ["cephalexin", "keflex"], "cephalexin 500 mg QID x 5 days")],
             [PCP, Fact("wound clinic follow-up", ["wound clinic", "wound care"], "Wound clinic in 1 week")],
             ["home"],
             ["LE duplex negative for DVT.", "No abscess on US.", "Tinea pedis treated with topical terbinafine."]),
    Scenario(Fact("acute pyelonephritis", ["pyelonephritis", "kidney infection"], "acute pyelonephritis"),
             "flank pain and fever", ["R flank pain, dysuria and fever to 39.2 x 2 d",
                                      "fevers, rigors, vomiting and L CVA tenderness; UA with pyuria"],
             [Fact("IV ceftriaxone", ["ceftriaxone", "iv antibiotics", "antibiotics"],
                   "Treated with IV ceftriaxone; afebrile by HD2. Urine cx: pan-sensitive E. coli.")],
             [Fact("switched to oral ciprofloxacin", ["ciprofloxacin", "cipro"], "ciprofloxacin 500 mg BID x 7 days")],
             [PCP],
             ["home"],
             ["Renal US: no hydronephrosis.", "Blood cx negative.", "Cr 1.3 -> 0.9 with fluids."]),
    Scenario(Fact("NSTEMI", ["nstemi", "myocardial infarction", "mi", "heart attack"], "NSTEMI"),
             "chest pain", ["substernal chest pressure at rest x 2 h; troponin 2.4, ST depressions V4-V6",
                            "exertional chest tightness now occurring at rest; troponin peak 5.1"],
             [Fact("PCI with a drug-eluting stent", ["pci", "stent", "drug eluting stent", "des", "stenting"],
                   "LHC: 90% mid-LAD stenosis, s/p PCI with DES x1. No complications.")],
             [Fact("started ticagrelor with aspirin", ["ticagrelor", "brilinta", "dual antiplatelet", "dapt"],
                   "aspirin 81 mg daily, ticagrelor 90 mg BID (NEW), atorvastatin 80 mg (NEW)")],
             [Fact("cardiac rehabilitation referral", ["cardiac rehabilitation", "cardiac rehab"], "Cardiac rehab referral placed"),
              Fact("cardiology follow-up", ["cardiology", "cardiologist"], "Cardiology in 2 weeks")],
             ["home"],
             ["Echo EF 50%, anterior hypokinesis.", "LDL 162.", "R radial access site clean."]),
    Scenario(Fact("acute ischemic stroke", ["ischemic stroke", "stroke", "cva"], "acute L MCA ischemic stroke"),
             "right-sided weakness", ["sudden R arm/face weakness and aphasia, LKW 1 h before arrival, NIHSS 12",
                                      "woke with R hemiparesis and slurred speech; CTA with L M1 occlusion"],
             [Fact("thrombectomy", ["thrombectomy", "endovascular therapy"],
                   "Underwent mechanical thrombectomy of L M1 occlusion (TICI 2b); NIHSS improved to 4."),
              Fact("thrombolysis", ["thrombolysis", "tenecteplase", "alteplase", "tpa", "tnk"],
                   "Received IV tenecteplase within 90 min of arrival; NIHSS improved to 5.")],
             [Fact("started aspirin and clopidogrel", ["clopidogrel", "plavix", "dual antiplatelet", "dapt"],
                   "aspirin 81 mg + clopidogrel 75 mg daily x 21 d, then aspirin alone")],
             [Fact("neurology follow-up", ["neurology", "stroke clinic", "neurologist"], "Stroke clinic in 4 weeks")],
             ["rehab", "snf"],
             ["MRI: L frontal DWI lesion.", "Telemetry 72 h without AF.", "SLP: dysphagia diet advanced to regular."]),
    Scenario(Fact("upper GI bleed from a duodenal ulcer", ["gi bleed", "gastrointestinal bleed", "ugib", "duodenal ulcer",
                                                           "bleeding ulcer", "gastrointestinal bleeding"],
                  "UGIB from duodenal ulcer"),
             "black stools", ["melena x 2 d and lightheadedness, Hgb 6.8 (baseline 13)",
                              "coffee-ground emesis and near-syncope on daily naproxen"],
             [Fact("endoscopic clipping and transfusion", ["clipping", "clips", "egd", "endoscopy", "endoscopic"],
                   "Transfused 2 u PRBC. EGD: 1.5 cm duodenal bulb ulcer with visible vessel, treated with clips + epi.")],
             [Fact("pantoprazole twice daily with naproxen stopped", ["pantoprazole", "ppi", "protonix", "proton pump inhibitor"],
                   "pantoprazole 40 mg BID x 8 wks; STOP naproxen")],
             [Fact("gastroenterology follow-up", ["gastroenterology", "gi clinic", "repeat egd"], "GI clinic, repeat EGD in 8 wks")],
             ["home"],
             ["H. pylori biopsy pending.", "Hgb stable 9.1 x 24 h.", "Iron studies low, IV iron given."]),
    Scenario(Fact("gallstone pancreatitis", ["pancreatitis"], "gallstone pancreatitis"),
             "epigastric pain", ["severe epigastric pain radiating to back with vomiting; lipase 2,300",
                                 "epigastric pain after fatty meal; lipase 1,800, US with cholelithiasis"],
             [Fact("laparoscopic cholecystectomy", ["cholecystectomy", "lap chole", "gallbladder removal"],
                   "IV fluids and analgesia; pain resolved, tolerated diet; lap cholecystectomy HD3 without complication.")],
             [],
             [Fact("surgery clinic follow-up", ["surgery clinic", "general surgery", "gen surg", "surgical", "surgeon"],
                   "Gen surg clinic in 2 weeks")],
             ["home"],
             ["LFTs normalized.", "No necrosis on CT.", "TG normal."]),
    Scenario(Fact("right hip fracture", ["hip fracture", "femoral neck fracture", "hip fx"], "R femoral neck fracture"),
             "fall with hip pain", ["mechanical fall at home, unable to bear weight, R leg shortened and externally rotated",
                                    "tripped over rug; R hip pain; XR displaced femoral neck fx"],
             [Fact("hemiarthroplasty", ["hemiarthroplasty", "arthroplasty", "hip replacement"],
                   "Underwent R hip hemiarthroplasty on HD2; PT started POD1, WBAT.")],
             [Fact("enoxaparin for clot prevention", ["enoxaparin", "lovenox", "dvt prophylaxis"],
                   "enoxaparin 40 mg SC daily x 28 days")],
             [Fact("orthopedics follow-up", ["orthopedics", "orthopaedics", "ortho", "orthopedic"], "Ortho clinic in 2 wks")],
             ["snf", "rehab"],
             ["Post-op Hgb 9.4, no transfusion.", "Vit D 18, repleting.", "DEXA as outpatient."],
             ages=(65, 95)),
    Scenario(Fact("pulmonary embolism", ["pulmonary embolism", "pe", "pulmonary emboli"], "bilateral PE"),
             "shortness of breath", ["acute dyspnea and pleuritic CP 10 d after knee surgery; HR 112, SpO2 90%",
                                     "sudden SOB and syncope at home; CTPA with bilateral segmental PE"],
             [Fact("heparin infusion", ["heparin", "anticoagulation", "heparin drip"],
                   "Started heparin drip; RV normal on echo; weaned off O2 by HD3.")],
             [Fact("started apixaban", ["apixaban", "eliquis"], "apixaban 10 mg BID x 7 d then 5 mg BID"),
              Fact("started rivaroxaban", ["rivaroxaban", "xarelto"], "rivaroxaban 15 mg BID x 21 d then 20 mg daily")],
             [PCP, Fact("hematology follow-up", ["hematology", "hematologist", "heme"], "Heme clinic in 3 months")],
             ["home"],
             ["LE duplex: L popliteal DVT.", "Troponin neg.", "Plan 3 months of anticoagulation (provoked)."]),
    Scenario(Fact("acute appendicitis", ["appendicitis"], "acute appendicitis"),
             "RLQ pain", ["periumbilical pain migrating to RLQ x 18 h, anorexia, WBC 15.2",
                          "RLQ pain with rebound and fever 38.3; CT with dilated appendix 11 mm"],
             [Fact("laparoscopic appendectomy", ["appendectomy", "lap appy", "appendix removed"],
                   "Underwent uncomplicated laparoscopic appendectomy; tolerating regular diet POD1.")],
             [],
             [Fact("surgery clinic follow-up", ["surgery clinic", "general surgery", "surgical", "surgeon"],
                   "Surgery clinic in 2 weeks")],
             ["home"],
             ["Path: acute suppurative appendicitis.", "No drains.", "Ambulating independently."],
             ages=(18, 60)),
    Scenario(Fact("symptomatic hyponatremia", ["hyponatremia", "low sodium"], "hyponatremia (Na 119)"),
             "confusion", ["2 d of confusion and unsteady gait; Na 119 on HCTZ",
                           "nausea, headache and a fall; Na 121, serum osm 250"],
             [Fact("fluid restriction", ["fluid restriction", "free water restriction", "fluid restricted"],
                   "Managed with 1.2 L fluid restriction and cautious NaCl tabs; Na corrected to 131 without overcorrection.")],
             [Fact("hydrochlorothiazide stopped", ["hydrochlorothiazide", "hctz", "thiazide"],
                   "STOP hydrochlorothiazide; amlodipine 5 mg daily (NEW) for BP")],
             [Fact("repeat sodium check in 3 days", ["repeat sodium", "sodium check", "sodium recheck", "bmp", "repeat labs"],
                   "BMP (Na) in 3 days via PCP"), PCP],
             ["home", "home health"],
             ["Urine osm 420, urine Na 45.", "TSH and AM cortisol normal.", "Head CT negative."],
             ages=(60, 92)),
    Scenario(Fact("alcohol withdrawal", ["alcohol withdrawal", "etoh withdrawal", "withdrawal"], "EtOH withdrawal"),
             "tremor and anxiety", ["tremors, diaphoresis and visual hallucinations 36 h after last drink",
                                    "withdrawal seizure at home after stopping daily 1/5 vodka"],
             [Fact("symptom-triggered lorazepam", ["lorazepam", "benzodiazepines", "benzodiazepine", "ciwa"],
                   "CIWA-guided lorazepam, max CIWA 22, off benzos by HD4; thiamine/folate/MVI given."),
              Fact("phenobarbital", ["phenobarbital"], "Phenobarbital load with taper; no further seizures.")],
             [Fact("started naltrexone", ["naltrexone"], "naltrexone 50 mg daily (NEW)"),
              Fact("started acamprosate", ["acamprosate"], "acamprosate 666 mg TID (NEW)")],
             [Fact("outpatient addiction treatment", ["addiction", "substance use", "outpatient treatment", "aa"],
                   "Intake at outpatient addiction program Monday")],
             ["home"],
             ["AST/ALT 140/62.", "Mg repleted.", "SW met with pt and family."],
             ages=(30, 70)),
    Scenario(Fact("asthma exacerbation", ["asthma exacerbation", "asthma"], "acute asthma exacerbation"),
             "wheezing", ["2 d of wheeze and dyspnea after URI, PEF 45% predicted",
                          "nocturnal cough and chest tightness not relieved by albuterol"],
             [Fact("nebulized albuterol and prednisone", ["prednisone", "steroids", "corticosteroids", "albuterol"],
                   "Continuous albuterol then q4h nebs, IV Mg x1, prednisone 40 mg daily; PEF 80% at discharge.")],
             [Fact("started budesonide-formoterol", ["budesonide formoterol", "budesonide", "inhaled corticosteroid",
                                                     "symbicort", "ics"],
                   "budesonide-formoterol 160/4.5 2 puffs BID (NEW)")],
             [PCP, Fact("pulmonology follow-up", ["pulmonology", "pulmonary", "asthma clinic"], "Asthma clinic in 4 weeks")],
             ["home"],
             ["CXR clear.", "Eos 600.", "Inhaler technique reviewed."],
             ages=(18, 60)),
    Scenario(Fact("C. difficile colitis", ["c difficile", "c diff", "cdiff", "clostridioides difficile",
                                            "clostridium difficile", "cdi"], "C. diff colitis"),
             "diarrhea", ["8-10 watery stools/d after a course of clindamycin; WBC 18",
                          "profuse diarrhea and cramps 1 wk after antibiotics for sinusitis"],
             [Fact("oral vancomycin", ["vancomycin", "vanc"], "Stool PCR + for C. diff; started PO vancomycin 125 mg QID."),
              Fact("fidaxomicin", ["fidaxomicin", "dificid"], "Stool toxin +; started fidaxomicin 200 mg BID.")],
             [],
             [PCP],
             ["home", "snf"],
             ["CT: pancolitis without megacolon.", "Lactate normal.", "Contact precautions."]),
    Scenario(Fact("hypoglycemia", ["hypoglycemia", "low blood sugar"], "recurrent hypoglycemia"),
             "confusion", ["found confused by spouse, fingerstick 34, on glipizide with poor PO intake",
                           "sweating and slurred speech; glucose 41; recent CKD progression"],
             [Fact("IV dextrose", ["dextrose", "d50", "d10"], "Treated with D50 then D10 infusion x 24 h; glucose stable 110-180.")],
             [Fact("glipizide stopped", ["glipizide", "sulfonylurea"], "STOP glipizide; continue metformin 500 mg BID")],
             [PCP, Fact("endocrinology follow-up", ["endocrinology", "endocrine", "endocrinologist", "endo"], "Endo in 4 weeks")],
             ["home", "home health"],
             ["HbA1c 6.1%.", "eGFR 34.", "Head CT negative."]),
    Scenario(Fact("adhesive small bowel obstruction", ["small bowel obstruction", "sbo", "bowel obstruction"], "SBO"),
             "vomiting and distension", ["bilious emesis, obstipation and distension; prior laparotomy",
                                         "crampy abd pain and vomiting; CT with transition point in RLQ"],
             [Fact("nasogastric decompression without surgery", ["nasogastric", "ng tube", "ngt", "bowel rest",
                                                                "nonoperative", "conservative"],
                   "NG tube decompression and bowel rest; gastrografin challenge passed HD3; resolved without surgery.")],
             [],
             [Fact("surgery clinic follow-up", ["surgery clinic", "general surgery", "surgical", "surgeon"],
                   "Surgery clinic in 2-3 weeks"), PCP],
             ["home"],
             ["K 3.2 repleted.", "Lactate normal.", "Advanced to regular diet HD4."]),
]

PMH = ["HTN", "HLD", "DM2", "CKD 3a", "GERD", "hypothyroidism", "OA", "depression", "obesity", "OSA on CPAP",
       "gout", "anemia of chronic disease", "remote cholecystectomy", "migraine", "glaucoma"]
HOME_MEDS = ["lisinopril 20 mg daily", "atorvastatin 40 mg", "metformin 1 g BID", "levothyroxine 75 mcg",
             "omeprazole 20 mg", "sertraline 50 mg", "allopurinol 100 mg", "vitamin D3 2000 IU",
             "amlodipine 5 mg", "acetaminophen PRN", "latanoprost eye drops"]
YOUNG_PMH = ["migraine", "depression", "anxiety", "GERD", "obesity", "ADHD", "eczema", "asthma", "acne"]
YOUNG_MEDS = ["sertraline 50 mg", "cetirizine 10 mg", "ibuprofen PRN", "omeprazole 20 mg",
              "vitamin D3 2000 IU", "sumatriptan PRN"]
ALLERGIES = ["NKDA", "shellfish", "sulfa (hives)", "codeine (nausea)", "NKDA", "latex", "iodinated contrast (hives)"]
LIVING = ["Lives with spouse.", "Lives alone, independent ADLs.", "Lives with daughter.", "Uses cane at baseline."]
HABITS = ["Former smoker, quit 2009.", "Social EtOH.", "Never smoker.", "Retired teacher.", "Works as electrician."]
DISTRACTOR_LINES = [
    "Incidental 4 mm R renal cyst on imaging, no follow-up needed.", "Code status: Full code.",
    "Diet: cardiac/2 g Na.", "PT/OT: safe for discharge with rolling walker, 1 flight of stairs at home.",
    "Influenza vaccine given prior to discharge.", "Mild transaminitis on admission, resolved without intervention.",
    "Chronic low back pain stable on home regimen.", "Flu/COVID swab negative.",
    "Pressure injury risk low (Braden 19).", "Family updated at bedside and agree with plan.",
    "Constipation HD2, treated with senna and PEG.", "Insomnia overnight, melatonin PRN added.",
    "Hypokalemia (K 3.3) repleted orally.", "Brief episode of delirium overnight HD2, resolved with reorientation.",
    "Nutrition consulted: encourage protein supplements.", "Case management: no home needs identified beyond plan.",
    "Lines: PIV removed prior to discharge.", "Telemetry without arrhythmia.",
    "Thyroid nodule noted on prior imaging, outpatient US already scheduled by PCP.",
    "Glucose 140-210 on sliding scale; home regimen resumed.",
]
NAMES = ["Patel", "Nguyen", "Okafor", "Garcia", "Smith", "Kowalski", "Haddad", "Chen", "Johansson", "Mbeki"]
EXAMS = ["Gen: NAD, A&Ox3.", "CV: RRR, no m/r/g.", "Lungs: CTAB, no wheeze.", "Abd: soft, NT/ND, +BS.",
         "Ext: trace bilateral edema.", "Neuro: no focal deficits.", "Skin: warm, dry.", "Psych: calm, appropriate."]


def history(rng: random.Random, age: int) -> str:
    return ", ".join(rng.sample(YOUNG_PMH if age < 45 else PMH, rng.randint(2, 4)))


def home_meds(rng: random.Random, age: int, k: int) -> list[str]:
    return rng.sample(YOUNG_MEDS if age < 45 else HOME_MEDS, k)


def admission_labs(rng: random.Random) -> str:
    return (f"K {rng.uniform(3.3, 5.1):.1f}, Cr {rng.uniform(0.6, 1.8):.1f}, "
            f"WBC {rng.uniform(4.5, 17):.1f}, Hgb {rng.uniform(8.5, 15):.1f}, Plt {rng.randint(140, 420)}")


def exam_line(rng: random.Random) -> str:
    return " ".join(rng.sample(EXAMS, rng.randint(2, 3)))


def capitalized(text: str) -> str:
    return text[0].upper() + text[1:]


@dataclass
class Case:
    scenario: Scenario
    age: int
    sex: str
    stay: int
    treatment: Fact
    medication: Fact | None  # stated in the note whenever the scenario has one
    followup: Fact  # always stated in the note
    disposition: Fact
    medication_in_summary: bool
    followup_in_summary: bool
    progress_note: bool


def draw_case(rng: random.Random, scenario: Scenario) -> Case:
    medication = rng.choice(scenario.medications) if scenario.medications else None
    return Case(scenario=scenario, age=rng.randint(*scenario.ages), sex=rng.choice("MF"), stay=rng.randint(2, 9),
                treatment=rng.choice(scenario.treatments), medication=medication,
                followup=rng.choice(scenario.followups),
                disposition=DISPOSITIONS[rng.choice(scenario.dispositions)],
                medication_in_summary=medication is not None and rng.random() < 0.6,
                followup_in_summary=rng.random() < 0.6, progress_note=rng.random() < 0.35)


def facts_of(case: Case) -> list[list[str]]:
    """3-5 facts: diagnosis, treatment, disposition, and sometimes medication and follow-up."""
    facts = [case.scenario.diagnosis.variants, case.treatment.variants, case.disposition.variants]
    if case.medication_in_summary:
        facts.append(case.medication.variants)
    if case.followup_in_summary:
        facts.append(case.followup.variants)
    return facts


def write_summary(case: Case) -> str:
    person = f"{case.age}-year-old {'man' if case.sex == 'M' else 'woman'}"
    dx, tx, dispo = case.scenario.diagnosis.summary, case.treatment.summary, case.disposition.summary
    fu = f", with {case.followup.summary}" if case.followup_in_summary else ""
    med = f"; {case.medication.summary}" if case.medication_in_summary else ""
    if case.progress_note:
        return f"{capitalized(person)} admitted with {dx}, improving on {tx}{med}. Plan discharge {dispo}{fu}."
    return f"{capitalized(person)} admitted with {dx} and treated with {tx}{med}. Discharged {dispo}{fu}."


def discharge_meds(rng: random.Random, case: Case) -> list[str]:
    meds = home_meds(rng, case.age, rng.randint(2, 4))
    if case.medication:
        meds.insert(rng.randint(0, len(meds)), case.medication.note)
    return meds


def discharge_summary(rng: random.Random, case: Case) -> tuple[list[str], list[str], list[str]]:
    """(lines before, optional lines, lines after); optional and distractor lines go in the middle."""
    s = case.scenario
    head = [
        "DISCHARGE SUMMARY",
        f"Pt: {case.age}{case.sex} | LOS {case.stay} d | Attending: Dr. {rng.choice(NAMES)}",
        f"Admission dx: {s.diagnosis.note}",
        f"CC: {s.complaint}",
        f"HPI: {case.age} yo {case.sex} w/ PMH {history(rng, case.age)} who presented with "
        f"{rng.choice(s.presentations)}.",
        f"Home meds: {', '.join(home_meds(rng, case.age, rng.randint(2, 4)))}",
        "Hospital course: " + " ".join([case.treatment.note, *rng.sample(s.course_extra, rng.randint(1, 2))]),
    ]
    optional = [
        f"Labs on admission: {admission_labs(rng)}",
        f"Discharge exam: T {rng.uniform(36.4, 37.4):.1f}, HR {rng.randint(60, 96)}, BP {rng.randint(104, 146)}/"
        f"{rng.randint(58, 88)}. {exam_line(rng)}",
    ]
    tail = [
        "Discharge meds: " + "; ".join(discharge_meds(rng, case)),
        f"Allergies: {rng.choice(ALLERGIES)}",
        f"Disposition: {case.disposition.note}",
        f"Follow-up: {case.followup.note}; "
        + rng.choice(["labs per PCP", "return precautions reviewed", "call with questions"]),
    ]
    return head, optional, tail


def progress_note(rng: random.Random, case: Case) -> tuple[list[str], list[str], list[str]]:
    s = case.scenario
    plan = [f"anticipate discharge {PLANNED[case.disposition.summary]} in 1-2 days"]
    if case.medication:
        plan.append(f"meds at d/c: {case.medication.note}")
    plan.append(f"f/u: {case.followup.note}")
    head = [
        f"PROGRESS NOTE - HD#{case.stay}",
        f"{case.age}{case.sex} w/ {history(rng, case.age)} admitted for {s.diagnosis.note} "
        f"after {rng.choice(s.presentations)}.",
        f"S: {rng.choice(['Feels better', 'Slept well, mild fatigue', 'No new complaints', 'Ambulating in hall'])}. "
        f"{rng.choice(['Tolerating diet.', 'Appetite improving.', 'Denies CP/SOB.'])}",
        f"O: T {rng.uniform(36.4, 37.6):.1f}, HR {rng.randint(62, 98)}, "
        f"BP {rng.randint(104, 148)}/{rng.randint(58, 88)}, "
        f"SpO2 {rng.randint(92, 99)}% RA. Labs: WBC {rng.uniform(5, 12):.1f}, Hgb {rng.uniform(9, 14):.1f}, "
        f"Cr {rng.uniform(0.6, 1.6):.1f}.",
        f"Exam: {exam_line(rng)}",
        f"Meds: {', '.join(home_meds(rng, case.age, rng.randint(2, 4)))}",
        "A/P:",
        f"# {s.diagnosis.note}: " + " ".join([case.treatment.note, *rng.sample(s.course_extra, rng.randint(1, 2))]),
        rng.choice(["# Chronic conditions: stable, continue home regimen.", "# Home medications: resumed.",
                    "# Pain: acetaminophen scheduled, minimal opioid use."]),
    ]
    return head, [], ["Dispo: " + "; ".join(plan) + "."]


# Prompt + summary must fit in 512 tokens of a Llama-like tokenizer, so SFT/DPO at the default
# max_length never truncate the summary away; clinical shorthand costs ~0.38 tokens a character.
MAX_NOTE_CHARS = 930


def write_note(rng: random.Random, case: Case) -> str:
    """The note, padded with optional sections, then distractor lines, up to 120-160 words
    (and at most MAX_NOTE_CHARS)."""
    head, optional, tail = (progress_note if case.progress_note else discharge_summary)(rng, case)
    head.insert(rng.randint(len(head) - 2, len(head)), f"Social: {rng.choice(LIVING)} {rng.choice(HABITS)}")
    target_words = rng.randint(120, 160)
    extra: list[str] = []
    for line in optional + rng.sample(DISTRACTOR_LINES, len(DISTRACTOR_LINES)):
        if len(" ".join(head + extra + tail).split()) >= target_words:
            break
        if len("\n".join(head + extra + [line] + tail)) <= MAX_NOTE_CHARS:
            extra.append(line)
    return "\n".join(head + extra + tail)




# ---------------------------------------------------------------- shifted split
# Pools that only split="shifted" draws from: other note layouts (a letter to the GP, a bulleted
# handoff, EHR section headers, a ward-round entry), other wording of every key fact (each still
# holds one of the fact's accepted phrasings, so the grader finds it), spelled-out histories,
# medicines and distractors. The cases, reference summaries and key facts are drawn as for train.

# The note wording of each fact, by its train wording (Fact.note).
SHIFTED_WORDING = {
    # diagnoses
    "AFib with RVR": "new-onset atrial fibrillation with a fast ventricular rate",
    "community-acquired pneumonia (RLL)": "right lower lobe pneumonia, community acquired",
    "acute on chronic HFrEF": "decompensated systolic heart failure (EF 25%)",
    "AECOPD": "infective exacerbation of COPD",
    "DKA": "diabetic ketoacidosis, moderate severity",
    "LLE cellulitis": "cellulitis of the left shin",
    "acute pyelonephritis": "right-sided pyelonephritis",
    "NSTEMI": "type 1 myocardial infarction without ST elevation",
    "acute L MCA ischemic stroke": "left middle cerebral artery territory stroke",
    "UGIB from duodenal ulcer": "bleeding duodenal ulcer",
    "gallstone pancreatitis": "acute biliary pancreatitis",
    "R femoral neck fracture": "displaced right femoral neck fracture",
    "bilateral PE": "bilateral segmental pulmonary emboli",
    "acute appendicitis": "uncomplicated appendicitis",
    "hyponatremia (Na 119)": "thiazide-associated hyponatremia (lowest sodium 119)",
    "EtOH withdrawal": "alcohol withdrawal with tremor and hallucinations",
    "acute asthma exacerbation": "severe asthma exacerbation",
    "C. diff colitis": "Clostridioides difficile infection",
    "recurrent hypoglycemia": "sulfonylurea-related hypoglycemia",
    "SBO": "adhesional small bowel obstruction",
    # treatments
    "Given IV diltiazem bolus then drip, HR improved to 80s; transitioned to PO diltiazem.":
        "Rate control with a diltiazem infusion, then oral diltiazem; heart rate settled in the 80s.",
    "Rate controlled with IV then PO metoprolol, HR 70-90s by HD2.":
        "Heart rate brought down with metoprolol, intravenous at first and then by mouth.",
    "Treated with IV ceftriaxone + azithromycin; afebrile after 48 h, weaned from 2 L O2.":
        "Received ceftriaxone and azithromycin into the vein; fever settled within two days and oxygen was stopped.",
    "Diuresed with IV furosemide 40 mg BID, net -6 L, weight 92 -> 86 kg.":
        "Intravenous furosemide twice a day with good diuresis: 6 litres negative and 6 kg lighter.",
    "Treated with duonebs q4h and prednisone 40 mg daily; O2 weaned to baseline 2 L.":
        "Regular nebulised bronchodilators and oral prednisone; back to the usual 2 litres of oxygen.",
    "Managed in ICU with IV fluids and insulin infusion; AG closed at 18 h, bridged to SC insulin.":
        "Fluids and fixed-rate IV insulin on intensive care; ketones cleared in 18 hours, then back on injections.",
    "Started IV cefazolin with marked improvement of erythema margins by 48 h.":
        "Intravenous cefazolin; the redness drew back from the marked borders within two days.",
    "Treated with IV ceftriaxone; afebrile by HD2. Urine cx: pan-sensitive E. coli.":
        "Ceftriaxone into the vein, fever gone by day 2; urine grew an E. coli sensitive to everything tested.",
    "LHC: 90% mid-LAD stenosis, s/p PCI with DES x1. No complications.":
        "Angiogram found a tight mid-LAD narrowing, treated by PCI with one drug-eluting stent.",
    "Underwent mechanical thrombectomy of L M1 occlusion (TICI 2b); NIHSS improved to 4.":
        "Clot retrieved from the left M1 segment by mechanical thrombectomy; deficits improved (NIHSS 4).",
    "Received IV tenecteplase within 90 min of arrival; NIHSS improved to 5.":
        "Given tenecteplase within 90 minutes of arrival; NIHSS down to 5.",
    "Transfused 2 u PRBC. EGD: 1.5 cm duodenal bulb ulcer with visible vessel, treated with clips + epi.":
        "Two units of red cells; endoscopy found a 1.5 cm ulcer with a visible vessel, which was clipped and injected.",
    "IV fluids and analgesia; pain resolved, tolerated diet; lap cholecystectomy HD3 without complication.":
        "Settled with fluids and pain relief, then a laparoscopic cholecystectomy on day 3 without problems.",
    "Underwent R hip hemiarthroplasty on HD2; PT started POD1, WBAT.":
        "Right hip hemiarthroplasty on day 2; physiotherapy from the first day after surgery, full weight bearing.",
    "Started heparin drip; RV normal on echo; weaned off O2 by HD3.":
        "Unfractionated heparin infusion; right ventricle normal on echo; off oxygen by day 3.",
    "Underwent uncomplicated laparoscopic appendectomy; tolerating regular diet POD1.":
        "Laparoscopic appendectomy without complication; eating normally the next day.",
    "Managed with 1.2 L fluid restriction and cautious NaCl tabs; Na corrected to 131 without overcorrection.":
        "Fluid restriction to 1.2 litres a day with salt tablets; sodium rose slowly to 131.",
    "CIWA-guided lorazepam, max CIWA 22, off benzos by HD4; thiamine/folate/MVI given.":
        "Lorazepam given by withdrawal score (peak 22), stopped by day 4; thiamine, folate and a multivitamin.",
    "Phenobarbital load with taper; no further seizures.": "Loaded with phenobarbital and tapered; no further fits.",
    "Continuous albuterol then q4h nebs, IV Mg x1, prednisone 40 mg daily; PEF 80% at discharge.":
        "Back-to-back albuterol nebulisers, one dose of IV magnesium and prednisone 40 mg; peak flow 80% on leaving.",
    "Stool PCR + for C. diff; started PO vancomycin 125 mg QID.":
        "Stool PCR positive; oral vancomycin 125 mg four times a day.",
    "Stool toxin +; started fidaxomicin 200 mg BID.": "Toxin-positive stool; fidaxomicin 200 mg twice a day.",
    "Treated with D50 then D10 infusion x 24 h; glucose stable 110-180.":
        "D50 bolus then a 24-hour D10 infusion; glucose held between 110 and 180.",
    "NG tube decompression and bowel rest; gastrografin challenge passed HD3; resolved without surgery.":
        "Nasogastric tube on free drainage, nil by mouth; contrast reached the colon on day 3; settled without an operation.",
    # medications
    "apixaban 5 mg BID (NEW)": "NEW: apixaban 5 mg twice a day",
    "amoxicillin-clavulanate 875 mg BID x 5 more days": "Augmentin 875 mg twice a day for another 5 days",
    "sacubitril-valsartan 24/26 mg BID (NEW)": "NEW: sacubitril/valsartan 24/26 mg twice a day",
    "spironolactone 25 mg daily (NEW)": "NEW: spironolactone 25 mg once a day",
    "doxycycline 100 mg BID to complete 5 days": "doxycycline 100 mg twice a day, 5-day course",
    "prednisone 40 mg daily x 2 more days": "prednisone 40 mg once a day for 2 further days",
    "insulin glargine 20 units qHS + lispro sliding scale": "NEW: insulin glargine 20 units at bedtime, lispro with meals",
    "cephalexin 500 mg QID x 5 days": "cephalexin 500 mg four times a day for 5 days",
    "ciprofloxacin 500 mg BID x 7 days": "ciprofloxacin 500 mg twice a day to complete 7 days",
    "aspirin 81 mg daily, ticagrelor 90 mg BID (NEW), atorvastatin 80 mg (NEW)":
        "NEW: ticagrelor 90 mg twice a day with aspirin 81 mg; NEW: atorvastatin 80 mg",
    "aspirin 81 mg + clopidogrel 75 mg daily x 21 d, then aspirin alone":
        "clopidogrel 75 mg and aspirin 81 mg once a day for 21 days, then aspirin only",
    "pantoprazole 40 mg BID x 8 wks; STOP naproxen": "pantoprazole 40 mg twice a day for 8 weeks; naproxen discontinued",
    "enoxaparin 40 mg SC daily x 28 days": "enoxaparin 40 mg under the skin once a day for 28 days",
    "apixaban 10 mg BID x 7 d then 5 mg BID": "apixaban 10 mg twice a day for a week, then 5 mg twice a day",
    "rivaroxaban 15 mg BID x 21 d then 20 mg daily": "rivaroxaban 15 mg twice a day for 3 weeks, then 20 mg once a day",
    "STOP hydrochlorothiazide; amlodipine 5 mg daily (NEW) for BP":
        "hydrochlorothiazide discontinued; NEW: amlodipine 5 mg for blood pressure",
    "naltrexone 50 mg daily (NEW)": "NEW: naltrexone 50 mg once a day",
    "acamprosate 666 mg TID (NEW)": "NEW: acamprosate 666 mg three times a day",
    "budesonide-formoterol 160/4.5 2 puffs BID (NEW)": "NEW: Symbicort 160/4.5, two inhalations twice a day",
    "STOP glipizide; continue metformin 500 mg BID": "glipizide discontinued; metformin 500 mg twice a day continues",
    # follow-ups
    "Cardiology clinic in 2 weeks": "cardiology outpatient review in a fortnight",
    "PCP in 1 week": "see the family doctor within 7 days",
    "Repeat CXR in 6 wks": "chest X-ray to be repeated at 6 weeks",
    "HF clinic in 7 days with BMP": "heart failure clinic next week, with kidney function and potassium",
    "Pulm clinic in 3 weeks": "pulmonology review in 3 weeks",
    "Endocrine clinic in 1 week": "endocrinology appointment next week",
    "Wound clinic in 1 week": "wound care nurse review in 1 week",
    "Cardiac rehab referral placed": "referred to cardiac rehabilitation",
    "Cardiology in 2 weeks": "cardiology review at 2 weeks",
    "Stroke clinic in 4 weeks": "neurology outpatient appointment in 4 weeks",
    "GI clinic, repeat EGD in 8 wks": "gastroenterology to repeat the endoscopy at 8 weeks",
    "Gen surg clinic in 2 weeks": "general surgery outpatient review at 2 weeks",
    "Ortho clinic in 2 wks": "orthopaedics wound check and review at 2 weeks",
    "Heme clinic in 3 months": "hematology review at 3 months to decide on duration",
    "Surgery clinic in 2 weeks": "surgical outpatient review in 2 weeks",
    "BMP (Na) in 3 days via PCP": "repeat sodium check by the GP in 3 days",
    "Intake at outpatient addiction program Monday": "addiction service assessment booked for Monday",
    "Asthma clinic in 4 weeks": "asthma clinic review in a month",
    "Endo in 4 weeks": "endocrinology review in 4 weeks",
    "Surgery clinic in 2-3 weeks": "general surgery review in 2-3 weeks",
}
# the note wording of each disposition (by its summary), in a discharge note and in a ward-round plan
SHIFTED_DISPOSITIONS = {"home": "home with family", "home with home health":
                        "home, with a visiting nurse twice a week and home physio",
                        "to a skilled nursing facility": "to a nursing facility for a short stay",
                        "to inpatient rehabilitation": "to the inpatient rehab unit"}
SHIFTED_PLANNED = {"home": "home", "home with home health": "home with visiting nurse support",
                   "to a skilled nursing facility": "to a nursing facility", "to inpatient rehabilitation":
                   "to the inpatient rehab unit"}
# how the patient presented, by the diagnosis' summary (spelled out, where train uses shorthand)
SHIFTED_PRESENTATIONS = {
    "atrial fibrillation with rapid ventricular response":
        "six hours of a racing, irregular heartbeat and light-headedness, heart rate around 150",
    "community-acquired pneumonia": "three days of cough with rusty sputum, fevers to 39.4 and pain on breathing in",
    "acute decompensated heart failure": "two weeks of breathlessness on exertion, three pillows at night and 5 kg weight gain",
    "COPD exacerbation": "three days of more breathlessness and green sputum, saturations 85% on air",
    "diabetic ketoacidosis": "two days of thirst, passing a lot of urine and vomiting; glucose 540, pH 7.10",
    "left lower leg cellulitis": "three days of a spreading hot, red, painful left shin after a garden scratch",
    "acute pyelonephritis": "two days of right loin pain, burning on passing urine and fever to 39.2",
    "NSTEMI": "two hours of central chest pressure at rest with a raised troponin",
    "acute ischemic stroke": "sudden right arm and face weakness with word-finding difficulty, well an hour before",
    "upper GI bleed from a duodenal ulcer": "two days of black tarry stools and dizziness, hemoglobin 6.8 from 13",
    "gallstone pancreatitis": "severe upper abdominal pain going through to the back, with vomiting; lipase 2,300",
    "right hip fracture": "a fall at home, unable to stand, with the right leg shortened and turned outwards",
    "pulmonary embolism": "sudden breathlessness and pain on breathing 10 days after knee surgery, pulse 112",
    "acute appendicitis": "18 hours of pain moving from the navel to the right lower abdomen and no appetite",
    "symptomatic hyponatremia": "two days of confusion and unsteadiness while taking a water tablet",
    "alcohol withdrawal": "shaking, sweating and seeing things 36 hours after the last drink",
    "asthma exacerbation": "two days of wheeze and breathlessness after a cold, peak flow 45% of predicted",
    "C. difficile colitis": "eight to ten watery stools a day after a course of clindamycin",
    "hypoglycemia": "found confused by the spouse with a fingerstick glucose of 34, on glipizide",
    "adhesive small bowel obstruction": "green vomiting, no stool or wind and a swollen abdomen after a past laparotomy",
}
SHIFTED_PMH = ["high blood pressure", "high cholesterol", "type 2 diabetes", "chronic kidney disease stage 3",
               "underactive thyroid", "osteoarthritis", "low mood", "sleep apnoea on CPAP", "gout", "glaucoma"]
SHIFTED_YOUNG_PMH = ["migraine", "anxiety", "eczema", "hay fever", "irritable bowel", "low mood"]
SHIFTED_HOME_MEDS = ["ramipril 5 mg", "simvastatin 20 mg", "levothyroxine 100 mcg", "lansoprazole 30 mg",
                     "citalopram 20 mg", "allopurinol 300 mg", "colecalciferol", "paracetamol as needed",
                     "timolol eye drops"]
SHIFTED_YOUNG_MEDS = ["fluoxetine 20 mg", "loratadine 10 mg", "rizatriptan as needed", "colecalciferol",
                      "propranolol 10 mg as needed"]
SHIFTED_ALLERGIES = ["no known allergies", "penicillin (rash)", "peanuts", "morphine (itching)", "sticking plaster"]
SHIFTED_SOCIAL = ["Lives with partner, independent.", "Lives alone in a flat, manages own care.",
                  "Lives with son and his family.", "Walks with a frame indoors."]
SHIFTED_HABITS = ["Ex-smoker.", "Never smoked.", "Retired bus driver.", "Works in IT.", "Keen gardener."]
SHIFTED_DISTRACTORS = [
    "Resuscitation status: for full escalation.", "Diet on leaving: low salt.",
    "Physiotherapy: managing stairs with a stick.", "Flu vaccine given before leaving.",
    "Incidental small liver cyst on imaging, no action needed.", "Long-standing knee pain unchanged.",
    "Respiratory viral swabs negative.", "Pressure areas intact throughout.",
    "Relatives updated by phone and happy with the plan.", "Mild constipation on day 2, settled with laxatives.",
    "Poor sleep on the ward, melatonin tried.", "Potassium 3.3, replaced by mouth.",
    "Dietitian advised protein drinks.", "Cannula removed before leaving.",
    "Old thyroid nodule already under review by the GP.", "Occupational therapy: kitchen assessment passed.",
]
SHIFTED_NAMES = ["Abara", "Lindqvist", "Ferreira", "O'Neill", "Takahashi", "Novak", "Quispe", "Wright"]


def article(age: int) -> str:
    return "an" if str(age).startswith("8") or age in (11, 18) else "a"


def shifted(fact: Fact) -> str:
    return SHIFTED_WORDING[fact.note]


def shifted_history(rng: random.Random, age: int) -> str:
    return ", ".join(rng.sample(SHIFTED_YOUNG_PMH if age < 45 else SHIFTED_PMH, rng.randint(2, 3)))


def shifted_meds(rng: random.Random, case: Case) -> str:
    meds = rng.sample(SHIFTED_YOUNG_MEDS if case.age < 45 else SHIFTED_HOME_MEDS, rng.randint(2, 3))
    if case.medication:
        meds.insert(rng.randint(0, len(meds)), shifted(case.medication))
    return "; ".join(meds)


def course(rng: random.Random, case: Case) -> str:
    return " ".join([shifted(case.treatment), *rng.sample(case.scenario.course_extra, 1)])


def gp_letter(rng: random.Random, case: Case) -> tuple[list[str], list[str]]:
    """(lines before, lines after) of a letter to the patient's GP; distractors go in between."""
    s, pronoun = case.scenario, "He" if case.sex == "M" else "She"
    head = [
        f"Dear Dr {rng.choice(SHIFTED_NAMES)},",
        f"Your patient, {article(case.age)} {case.age}-year-old {'man' if case.sex == 'M' else 'woman'}, was with us for "
        f"{case.stay} days with {shifted(s.diagnosis)}. {pronoun} came in with "
        f"{SHIFTED_PRESENTATIONS[s.diagnosis.summary]}. Background: {shifted_history(rng, case.age)}.",
        course(rng, case),
    ]
    tail = [
        f"Medicines on leaving: {shifted_meds(rng, case)}. Allergies: {rng.choice(SHIFTED_ALLERGIES)}.",
        f"{pronoun} went {SHIFTED_DISPOSITIONS[case.disposition.summary]}; {shifted(case.followup)}.",
        f"Yours sincerely, Dr {rng.choice(SHIFTED_NAMES)}",
    ]
    return head, tail


def handoff(rng: random.Random, case: Case) -> tuple[list[str], list[str]]:
    s = case.scenario
    head = [
        "Hospital discharge - handoff to community team",
        f"- Patient: {case.age}, {'male' if case.sex == 'M' else 'female'}; {case.stay} nights in hospital",
        f"- Main problem: {shifted(s.diagnosis)}",
        f"- Came in with: {SHIFTED_PRESENTATIONS[s.diagnosis.summary]}",
        f"- Other conditions: {shifted_history(rng, case.age)}",
        f"- What we did: {course(rng, case)}",
    ]
    tail = [
        f"- Medicines now: {shifted_meds(rng, case)}",
        f"- Going: {SHIFTED_DISPOSITIONS[case.disposition.summary]}",
        f"- Appointments: {shifted(case.followup)}",
    ]
    return head, tail


def ehr_sections(rng: random.Random, case: Case) -> tuple[list[str], list[str]]:
    s = case.scenario
    head = [
        f"Principal problem: {shifted(s.diagnosis)}",
        f"Patient: {case.age} y {case.sex}; length of stay {case.stay} days",
        f"Reason for admission: {SHIFTED_PRESENTATIONS[s.diagnosis.summary]}",
        f"Medical history: {shifted_history(rng, case.age)}",
        f"Brief hospital course: {course(rng, case)}",
    ]
    tail = [
        f"Discharge medication list: {shifted_meds(rng, case)}",
        f"Allergies: {rng.choice(SHIFTED_ALLERGIES)}",
        f"Discharge destination: {SHIFTED_DISPOSITIONS[case.disposition.summary]}",
        f"Follow-up appointments: {shifted(case.followup)}",
    ]
    return head, tail


def ward_round(rng: random.Random, case: Case) -> tuple[list[str], list[str]]:
    s = case.scenario
    head = [
        f"WARD ROUND - day {case.stay} of admission",
        f"{case.age} y {case.sex}, in with {shifted(s.diagnosis)} after {SHIFTED_PRESENTATIONS[s.diagnosis.summary]}. "
        f"Background: {shifted_history(rng, case.age)}.",
        f"Overnight: {rng.choice(['comfortable', 'slept well', 'up walking to the toilet', 'no concerns from nursing staff'])}.",
        f"Observations: temperature {rng.uniform(36.4, 37.5):.1f}, pulse {rng.randint(62, 96)}, "
        f"BP {rng.randint(104, 146)}/{rng.randint(58, 88)}, saturations {rng.randint(93, 99)}% on air.",
        "Impression and plan:",
        f"- {shifted(s.diagnosis)}: {course(rng, case)}",
    ]
    tail = []
    if case.medication:
        tail.append(f"- Medicines for discharge: {shifted(case.medication)}")
    tail += [f"- Follow-up: {shifted(case.followup)}",
             f"- Expected discharge {SHIFTED_PLANNED[case.disposition.summary]} in the next day or two."]
    return head, tail


def write_shifted_note(rng: random.Random, case: Case) -> str:
    """A note in a shifted layout, padded with distractor lines up to 120-160 words (at most MAX_NOTE_CHARS)."""
    layout = ward_round if case.progress_note else rng.choice([gp_letter, handoff, ehr_sections])
    head, tail = layout(rng, case)
    habits = [h for h in SHIFTED_HABITS if case.age >= 60 or not h.startswith("Retired")]
    social = f"Social: {rng.choice(SHIFTED_SOCIAL)} {rng.choice(habits)}"
    # in the handoff's list it is a bullet; in a ward round it stays above the plan
    head.insert(rng.randint(2, 3 if layout is ward_round else len(head)),
                f"- {social}" if layout is handoff else social)
    target_words = rng.randint(120, 160)
    extra: list[str] = []

    def lines(extra: list[str]) -> list[str]:  # a letter gathers them into one paragraph, lists bullet them
        if layout is gp_letter:
            return ["Other points: " + " ".join(extra)] if extra else []
        return [f"- {line}" if layout in (handoff, ward_round) else line for line in extra]

    for line in rng.sample(SHIFTED_DISTRACTORS, len(SHIFTED_DISTRACTORS)):
        if len(" ".join(head + lines(extra) + tail).split()) >= target_words:
            break
        if len("\n".join(head + lines(extra + [line]) + tail)) <= MAX_NOTE_CHARS:
            extra.append(line)
    return "\n".join(head + lines(extra) + tail)


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n notes, scenarios in turn. Test notes differ from training ones by the draw; ``split="shifted"``
    writes them in the shifted layouts and wording instead (same cases, summaries and key facts)."""
    write = write_shifted_note if split == "shifted" else write_note
    examples = []
    for i in range(n):
        case = draw_case(rng, SCENARIOS[i % len(SCENARIOS)])
        examples.append({"input": write(rng, case), "target": write_summary(case), "facts": facts_of(case)})
    rng.shuffle(examples)
    return examples
