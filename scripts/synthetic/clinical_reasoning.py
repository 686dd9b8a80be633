"""Synthetic case vignettes for clinical_reasoning.

Vignettes are built from per-diagnosis pools of presenting complaints, history,
examination findings and one key test, plus unrelated background and findings
as distractors, in several sentence templates. Half the vignettes also quote
another disease's key result from a resolved episode years ago (a distractor
a clinician discounts); some use shorthand (SOB, HTN, c/o, PMH). Test vignettes
use phrasings held out of training (``split_pools``). No pool names a diagnosis
or any of its synonyms (tests/test_tasks.py checks the bundled vignettes). ``split="shifted"``
writes vignettes from separate pools: the complaint in the patient's own words, other clinical
synonyms, and other case styles (ED triage note, referral letter, retold account, SBAR handover).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

ID_PREFIX = "cr"


@dataclass(frozen=True)
class Pools:
    name: str  # the diagnosis, as the task's DIAGNOSIS_NAMES spells it
    ages: tuple[int, int]
    sexes: str  # "M", "F" or "MF"
    complaints: list[str]
    history: list[str]
    exam: list[str]
    tests: list[str]


P = Pools
# one entry per diagnosis, in the task's order (the generator deals them out in turn)
VIGNETTE_POOLS = [
    P("myocardial infarction", (45, 85), "MF",
      ["crushing substernal chest pressure radiating to the left arm for the past hour",
       "chest heaviness with nausea and sweating that began at rest 2 hours ago",
       "pressure-like chest pain spreading to the jaw that has not eased for 45 minutes"],
      ["hypertension, hyperlipidemia and a 30 pack-year smoking history",
       "type 2 diabetes and a father with coronary disease at 50",
       "a coronary stent placed 6 years ago and poorly controlled cholesterol"],
      ["diaphoresis and pallor", "BP 150/92 and HR 104", "an S4 gallop",
       "clear lungs and no reproducible chest wall tenderness"],
      ["ECG shows 3 mm ST elevation in leads II, III and aVF.",
       "Troponin I is 4.8 ng/mL (normal < 0.04) and ECG shows ST depression in V4-V6.",
       "ECG shows ST elevation in V1-V4 with reciprocal inferior ST depression."]),
    P("pulmonary embolism", (25, 80), "MF",
      ["sudden shortness of breath and sharp pleuritic chest pain",
       "abrupt breathlessness and a brief fainting episode",
       "pleuritic chest pain and coughing up a small amount of blood"],
      ["a 14-hour flight 4 days ago", "knee replacement surgery 10 days ago with limited mobility since",
       "active pancreatic cancer on chemotherapy"],
      ["HR 118, RR 26 and SpO2 89% on room air", "a swollen, tender right calf",
       "clear lung fields despite low oxygen saturation"],
      ["CT pulmonary angiography shows a filling defect in the right main pulmonary artery.",
       "D-dimer is markedly elevated and ECG shows sinus tachycardia with an S1Q3T3 pattern.",
       "Bedside echo shows a dilated right ventricle; chest X-ray is clear."]),
    P("diabetic ketoacidosis", (12, 40), "MF",
      ["vomiting, abdominal pain and increasing thirst over 2 days",
       "confusion, passing large volumes of urine and rapid deep breathing",
       "nausea, weight loss and frequent urination for a week"],
      ["type 1 diabetes with missed insulin doses during a recent flu",
       "no prior medical history but a 5 kg weight loss over a month",
       "an insulin pump that was found disconnected yesterday"],
      ["Kussmaul respirations and a fruity odor on the breath", "dry mucous membranes and HR 124",
       "diffuse abdominal tenderness without guarding"],
      ["Glucose 512 mg/dL, bicarbonate 9 mmol/L, anion gap 26 and a high serum beta-hydroxybutyrate.",
       "Arterial pH is 7.12 with glucose 430 mg/dL and large urine ketones."]),
    P("pneumonia", (20, 90), "MF",
      ["fever, productive cough with rust-colored sputum and one-sided pleuritic pain for 3 days",
       "cough, chills and breathlessness worsening over 4 days",
       "high fever and cough with green sputum"],
      ["no hospital stays in the past year", "hypertension treated with amlodipine",
       "a recent viral illness in the household"],
      ["T 39.2 C, RR 24 and SpO2 92%", "bronchial breath sounds and dullness to percussion at one lung base",
       "focal crackles and egophony over a lower zone"],
      ["Chest X-ray shows consolidation of the right lower lobe with air bronchograms.",
       "WBC is 17,000/uL with neutrophilia and chest X-ray shows a left lower lobe opacity."]),
    P("appendicitis", (8, 45), "MF",
      ["abdominal pain that began around the umbilicus and moved to the right lower quadrant over 12 hours",
       "loss of appetite, nausea and right lower abdominal pain since yesterday",
       "worsening right-sided lower abdominal pain made worse by walking and coughing"],
      ["no prior abdominal surgery", "no recent travel or sick contacts"],
      ["tenderness at McBurney's point with rebound", "a positive Rovsing sign and a temperature of 38.1 C",
       "pain on passive extension of the right hip"],
      ["WBC 14,500/uL with a left shift and a normal urinalysis.",
       "Ultrasound shows a non-compressible 9 mm blind-ending tubular structure in the right lower quadrant."]),
    P("cholecystitis", (30, 75), "MF",
      ["constant right upper quadrant pain for 8 hours after a fatty meal, with vomiting",
       "right upper abdominal pain radiating to the right shoulder blade, with fever"],
      ["several shorter episodes of upper abdominal pain after meals", "obesity and rapid weight loss on a strict diet"],
      ["inspiratory arrest on palpation of the right upper quadrant", "T 38.4 C and right upper quadrant guarding",
       "no jaundice"],
      ["Ultrasound shows gallstones, a thickened gallbladder wall and pericholecystic fluid.",
       "WBC 15,200/uL with normal bilirubin and lipase; ultrasound shows gallstones and focal tenderness over the gallbladder."]),
    P("pancreatitis", (25, 75), "MF",
      ["severe epigastric pain radiating straight through to the back, with repeated vomiting",
       "constant boring upper abdominal pain eased by leaning forward"],
      ["heavy alcohol use, about 10 drinks a day", "known gallstones, awaiting elective surgery"],
      ["epigastric tenderness with guarding", "HR 112 and T 37.9 C", "bruising around the umbilicus"],
      ["Serum lipase is 1,850 U/L (more than 3 times the upper limit of normal).",
       "Lipase is markedly elevated and CT shows peripancreatic fat stranding."]),
    P("ischemic stroke", (50, 90), "MF",
      ["sudden weakness of the right arm and face with slurred speech that started 90 minutes ago",
       "inability to speak and right-sided weakness noticed on waking",
       "sudden right-sided weakness and difficulty finding words"],
      ["an irregularly irregular pulse noted at previous visits and no anticoagulant",
       "hypertension and a carotid bruit on a prior exam", "type 2 diabetes and current smoking"],
      ["a right facial droop sparing the forehead and right arm drift", "expressive aphasia and right hemiparesis",
       "a right homonymous hemianopia and right arm weakness"],
      ["Non-contrast CT head shows no bleeding; CT angiography shows an occluded left middle cerebral artery.",
       "Glucose is 112 mg/dL; diffusion-weighted MRI shows restricted diffusion in the left MCA territory."]),
    P("intracerebral hemorrhage", (50, 90), "MF",
      ["a sudden severe headache, vomiting and left-sided weakness while lifting a heavy box",
       "abrupt left-sided weakness and headache followed by increasing drowsiness"],
      ["long-standing poorly controlled hypertension, off medication for a year",
       "warfarin therapy for a mechanical heart valve"],
      ["BP 220/120 and a falling level of consciousness", "left hemiparesis and gaze deviation to the right"],
      ["Non-contrast CT head shows a hyperdense lesion in the right basal ganglia.",
       "INR is 4.2 and CT head shows a 3 cm hyperdense collection in the right thalamus."]),
    P("subarachnoid hemorrhage", (30, 70), "MF",
      ["a sudden 'worst headache of my life' that peaked within seconds during exercise",
       "a thunderclap headache followed by vomiting and a brief loss of consciousness"],
      ["polycystic kidney disease", "smoking and uncontrolled hypertension",
       "a sister who died suddenly at 45 of a bleed in the brain"],
      ["neck stiffness and photophobia without fever", "no focal weakness but marked neck stiffness"],
      ["CT head shows blood in the basal cisterns.",
       "CT head is normal at 14 hours but lumbar puncture shows xanthochromia."]),
    P("meningitis", (16, 70), "MF",
      ["fever, severe headache and neck stiffness for 1 day", "fever, vomiting, confusion and a spreading rash"],
      ["lives in a university dormitory", "a recent middle ear infection"],
      ["T 39.6 C with positive Kernig and Brudzinski signs", "a non-blanching petechial rash on the legs",
       "photophobia and neck rigidity"],
      ["CSF shows WBC 2,400/uL (90% neutrophils), glucose 20 mg/dL and protein 210 mg/dL.",
       "CSF Gram stain shows gram-negative diplococci."]),
    P("pyelonephritis", (18, 70), "F",
      ["fever, chills and right flank pain with burning urination for 2 days",
       "left flank pain, vomiting and urinary frequency"],
      ["several bladder infections in the past year", "type 2 diabetes"],
      ["T 39.1 C and costovertebral angle tenderness on the painful side", "HR 108 and marked costovertebral angle tenderness"],
      ["Urinalysis shows pyuria, nitrites and white cell casts.",
       "Urine culture grows more than 100,000 CFU/mL of E. coli; WBC 16,000/uL."]),
    P("deep vein thrombosis", (25, 85), "MF",
      ["a painful swollen calf for 3 days", "leg swelling and aching after a long car journey"],
      ["hip replacement 2 weeks ago", "active colon cancer on chemotherapy", "a recent ankle cast for 6 weeks"],
      ["a calf circumference 4 cm greater than the other side, with pitting edema",
       "warmth and tenderness along the deep veins of the thigh"],
      ["Compression ultrasound shows a non-compressible popliteal vein on the swollen side.",
       "D-dimer is elevated and Doppler ultrasound shows a clot in the femoral vein of the swollen leg."]),
    P("heart failure", (55, 90), "MF",
      ["increasing breathlessness, needing three pillows to sleep, and ankle swelling",
       "waking at night gasping for air and a 4 kg weight gain over 2 weeks"],
      ["coronary stents after a large anterior coronary event", "long-standing hypertension and recent salty meals",
       "alcohol use disorder"],
      ["raised jugular venous pressure and bibasal crackles", "an S3 gallop and pitting edema to the knees"],
      ["BNP is 1,450 pg/mL and chest X-ray shows cardiomegaly with bilateral pleural effusions.",
       "Echo shows a dilated left ventricle with an ejection fraction of 25%."]),
    P("asthma exacerbation", (8, 40), "MF",
      ["wheezing and breathlessness after a cold, not relieved by the albuterol inhaler",
       "chest tightness and night-time cough worsening over 3 days after visiting a friend with cats"],
      ["eczema and hay fever since childhood; uses an albuterol inhaler several times a week",
       "two ED visits last year for wheeze treated with nebulizers"],
      ["diffuse expiratory wheeze and use of accessory muscles", "RR 28, speaking in short phrases and SpO2 93%"],
      ["Peak expiratory flow is 45% of personal best.",
       "Chest X-ray shows hyperinflation only; blood eosinophils are raised."]),
    P("COPD exacerbation", (55, 85), "MF",
      ["increased breathlessness and more purulent sputum over 3 days", "worsening cough and wheeze after a cold"],
      ["a 50 pack-year smoking history and a daily tiotropium inhaler",
       "a morning cough with sputum for many years and an FEV1/FVC ratio of 0.55 last year"],
      ["pursed-lip breathing, prolonged expiration and scattered wheeze", "a barrel chest and SpO2 86% on room air"],
      ["Arterial blood gas shows pH 7.32 and PaCO2 58 mmHg; chest X-ray shows hyperinflation without consolidation."]),
    P("pneumothorax", (16, 40), "MF",
      ["sudden sharp right-sided chest pain and breathlessness while at rest",
       "abrupt pleuritic left chest pain after a coughing fit"],
      ["a tall, thin build and daily smoking", "no prior lung disease"],
      ["reduced breath sounds and hyperresonance on the painful side",
       "absent breath sounds on the affected side with a midline trachea"],
      ["Chest X-ray shows a visible visceral pleural line with no lung markings beyond it."]),
    P("aortic dissection", (45, 80), "MF",
      ["sudden tearing chest pain radiating to the back between the shoulder blades",
       "abrupt severe ripping pain in the upper back"],
      ["long-standing poorly controlled hypertension", "tall stature, long fingers and a past lens dislocation"],
      ["BP 185/100 in the right arm and 145/80 in the left arm", "a new early diastolic murmur"],
      ["Chest X-ray shows a widened mediastinum; troponin is normal.",
       "CT angiography shows an intimal flap in the ascending aorta."]),
    P("atrial fibrillation", (55, 90), "MF",
      ["palpitations and lightheadedness for 6 hours", "a fluttering feeling in the chest and fatigue since last night"],
      ["hypertension and heavy drinking at a wedding this weekend", "obstructive sleep apnea and hypertension"],
      ["an irregularly irregular pulse of 132/min", "a first heart sound of varying intensity and no murmurs"],
      ["ECG shows an irregularly irregular narrow-complex rhythm with no discernible P waves."]),
    P("hypothyroidism", (30, 75), "F",
      ["fatigue, weight gain, cold intolerance and constipation over 6 months", "hair thinning, dry skin and slowed thinking"],
      ["radioactive iodine treatment 5 years ago", "a mother with thyroid disease"],
      ["HR 52, dry coarse skin and delayed relaxation of the ankle reflexes",
       "a firm, non-tender enlarged thyroid and a puffy face"],
      ["TSH is 28 mIU/L with a low free T4.", "TSH 19 mIU/L, low free T4 and positive anti-TPO antibodies."]),
    P("Graves disease", (20, 50), "F",
      ["weight loss despite increased appetite, palpitations and heat intolerance",
       "anxiety, tremor and frequent loose stools for 2 months"],
      ["a sister with vitiligo", "no regular medications"],
      ["bulging eyes with lid retraction and a diffuse non-tender goiter with a bruit",
       "a fine tremor, warm moist skin and HR 112"],
      ["TSH is undetectable, free T4 is high and TSH receptor antibodies are positive.",
       "A radioiodine uptake scan shows diffusely increased uptake."]),
    P("iron deficiency anemia", (20, 80), "MF",
      ["fatigue and breathlessness on stairs for 3 months", "tiredness, brittle nails and a craving to chew ice"],
      ["long-term daily ibuprofen for back pain", "a vegan diet and frequent blood donation"],
      ["conjunctival pallor and spoon-shaped nails", "pallor and a resting HR of 98"],
      ["Hemoglobin 8.9 g/dL, MCV 68 fL and ferritin 5 ng/mL.",
       "Blood film shows microcytic hypochromic red cells; ferritin is low and total iron-binding capacity is high."]),
    P("vitamin B12 deficiency", (40, 85), "MF",
      ["tingling in both feet, unsteadiness in the dark and fatigue", "a sore red tongue, tiredness and numb hands"],
      ["long-term metformin use", "a strict vegan diet for 15 years", "a partial gastrectomy years ago"],
      ["loss of vibration sense and proprioception in the feet with a positive Romberg sign",
       "pallor and a smooth beefy-red tongue"],
      ["Hemoglobin 9.8 g/dL with MCV 112 fL and hypersegmented neutrophils.",
       "Methylmalonic acid is elevated and anti-intrinsic factor antibodies are positive."]),
    P("migraine", (16, 45), "F",
      ["a throbbing one-sided headache with nausea and light sensitivity, preceded by zigzag lines in the vision",
       "recurrent pulsating headaches lasting a day, worse with activity and with vomiting"],
      ["similar episodes since her teens, often around her periods", "a mother with similar headaches"],
      ["a normal neurological examination", "normal fundi and no neck stiffness"],
      ["MRI brain is normal; a headache diary shows 3 similar attacks a month."]),
    P("gout", (40, 80), "M",
      ["sudden severe pain and swelling of the big toe overnight", "an exquisitely painful, red, swollen knee that woke him"],
      ["hypertension treated with hydrochlorothiazide and heavy beer intake",
       "chronic kidney disease and a diet rich in red meat"],
      ["a hot, red, swollen first metatarsophalangeal joint too tender to touch",
       "a warm knee effusion and a firm chalky nodule on the ear"],
      ["Joint aspirate shows needle-shaped, negatively birefringent crystals; Gram stain is negative."]),
    P("septic arthritis", (20, 80), "MF",
      ["a hot, swollen, painful knee and fever for 2 days", "inability to bear weight on a swollen right knee, with chills"],
      ["a steroid injection into the knee 10 days ago", "injection drug use"],
      ["T 39.0 C, a knee effusion and severe pain on any passive movement"],
      ["Synovial fluid WBC is 85,000/uL with 95% neutrophils, no crystals and Gram-positive cocci in clusters."]),
    P("cellulitis", (20, 85), "MF",
      ["a spreading red, warm, painful area on the lower leg for 2 days", "redness and swelling of the shin with fever"],
      ["a cracked heel and athlete's foot", "obesity and chronic leg swelling"],
      ["tender, warm, poorly demarcated redness of the left shin with no fluctuance", "T 38.3 C and ascending red streaks"],
      ["Ultrasound shows subcutaneous edema without a fluid collection; the calf veins compress normally."]),
    P("nephrolithiasis", (25, 65), "MF",
      ["sudden severe colicky left flank pain radiating to the groin, unable to lie still",
       "waves of left flank pain with nausea and pink urine"],
      ["a similar episode 3 years ago", "low fluid intake while working outdoors in summer"],
      ["no fever, writhing in pain, with mild left costovertebral angle tenderness", "a soft abdomen without peritonism"],
      ["Urinalysis shows blood without white cells; non-contrast CT shows a 5 mm calcification in the left ureter."]),
    P("small bowel obstruction", (35, 85), "MF",
      ["colicky abdominal pain, bilious vomiting and no passage of stool or gas for 2 days",
       "abdominal distension and vomiting since yesterday"],
      ["open abdominal surgery 5 years ago", "a prior appendectomy and partial colectomy"],
      ["a distended, tympanic abdomen with high-pitched tinkling bowel sounds",
       "a distended abdomen and a healed midline laparotomy scar"],
      ["Abdominal X-ray shows dilated small bowel loops with multiple air-fluid levels and no gas in the colon."]),
    P("diverticulitis", (50, 85), "MF",
      ["left lower quadrant pain and fever for 3 days", "constant left lower abdominal pain with a change in bowel habit"],
      ["a low-fiber diet and chronic constipation", "a colonoscopy 2 years ago showing outpouchings in the sigmoid colon"],
      ["left lower quadrant tenderness with localized guarding and T 38.2 C"],
      ["CT shows sigmoid wall thickening with pericolic fat stranding.", "WBC 14,000/uL and CRP 120 mg/L."]),
    P("ectopic pregnancy", (18, 42), "F",
      ["lower abdominal pain and light vaginal bleeding 7 weeks after her last menstrual period",
       "sudden one-sided pelvic pain, shoulder tip pain and dizziness; her period is 3 weeks late"],
      ["a prior chlamydia infection", "an intrauterine device in place", "previous tubal surgery"],
      ["adnexal tenderness and cervical motion tenderness", "BP 92/58 and HR 118"],
      ["Serum beta-hCG is 2,400 mIU/mL and transvaginal ultrasound shows an empty uterus with free pelvic fluid."]),
    P("testicular torsion", (12, 25), "M",
      ["sudden severe left testicular pain and vomiting that woke him from sleep", "acute scrotal pain while playing football"],
      ["a similar brief episode last month that resolved on its own", "no urinary symptoms or sexual contacts"],
      ["a high-riding, horizontally lying testis and an absent cremasteric reflex",
       "a swollen tender testis with pain not relieved by elevation"],
      ["Doppler ultrasound shows absent blood flow to the affected testis."]),
    P("celiac disease", (18, 50), "MF",
      ["chronic diarrhea, bloating and weight loss", "fatigue, bloating and an itchy blistering rash on the elbows"],
      ["type 1 diabetes", "a sister with autoimmune thyroid disease"],
      ["pallor and mild abdominal distension", "grouped vesicles on the extensor surfaces"],
      ["Tissue transglutaminase IgA is strongly positive.", "Duodenal biopsy shows villous atrophy and crypt hyperplasia."]),
    P("ulcerative colitis", (18, 45), "MF",
      ["bloody diarrhea with mucus, urgency and cramping for 6 weeks", "8 bloody stools a day and tenesmus"],
      ["stopped smoking 6 months ago", "no recent antibiotics or travel"],
      ["mild lower abdominal tenderness and pallor", "T 37.8 C and HR 100"],
      ["Colonoscopy shows continuous mucosal inflammation from the rectum extending proximally, with no skip lesions.",
       "Stool cultures are negative; biopsies show crypt abscesses limited to the mucosa, continuous from the rectum."]),
    P("Crohn disease", (16, 40), "MF",
      ["right lower quadrant pain, non-bloody diarrhea and weight loss for 4 months",
       "crampy abdominal pain, mouth ulcers and a painful lump near the anus"],
      ["smokes 15 cigarettes a day", "a cousin with inflammatory bowel disease"],
      ["a tender right lower quadrant mass and a perianal fistula", "aphthous mouth ulcers and a perianal skin tag"],
      ["Colonoscopy shows skip lesions with cobblestoning in the terminal ileum; biopsy shows non-caseating granulomas."]),
    P("Addison disease", (20, 60), "MF",
      ["fatigue, weight loss, salt craving and dizziness on standing",
       "vomiting, abdominal pain and collapse after months of tiredness"],
      ["vitiligo", "a sister with type 1 diabetes"],
      ["darkened skin creases and patches of pigment inside the cheeks", "BP 86/54 lying, falling further on standing"],
      ["Sodium 128 mmol/L, potassium 5.9 mmol/L; morning cortisol is low and ACTH is high.",
       "Cortisol fails to rise after ACTH stimulation."]),
    P("Cushing syndrome", (25, 60), "MF",
      ["weight gain around the trunk, easy bruising and muscle weakness",
       "a rounded face, new purple stretch marks and difficulty climbing stairs"],
      ["new-onset hypertension and type 2 diabetes", "low mood and poor sleep"],
      ["a moon face, dorsocervical fat pad and wide purple striae", "thin skin, proximal muscle weakness and BP 162/98"],
      ["24-hour urinary free cortisol is high and cortisol is not suppressed by 1 mg overnight dexamethasone."]),
    P("infectious mononucleosis", (15, 25), "MF",
      ["sore throat, fever and profound tiredness for 10 days", "fever, sore throat and swollen neck glands"],
      ["a new rash after being given amoxicillin for the sore throat", "a partner with similar symptoms"],
      ["tonsillar exudate, posterior cervical lymphadenopathy and a palpable spleen",
       "palatal petechiae and tender posterior neck nodes"],
      ["Heterophile antibody test is positive and the blood film shows atypical lymphocytes."]),
    P("streptococcal pharyngitis", (5, 30), "MF",
      ["sudden sore throat, fever and painful swallowing without cough", "fever, sore throat and headache for 2 days"],
      ["a classmate with a similar illness", "no cough or runny nose"],
      ["T 38.9 C, tonsillar exudates and tender anterior cervical nodes", "swollen tonsils with exudate"],
      ["Rapid antigen detection test for group A streptococcus is positive."]),
    P("tuberculosis", (20, 70), "MF",
      ["a cough for 2 months with night sweats, weight loss and blood-streaked sputum",
       "low-grade evening fevers and a chronic cough"],
      ["recent immigration from a high-prevalence country", "HIV infection with a low CD4 count",
       "work in a homeless shelter"],
      ["cachexia and crackles at the right apex"],
      ["Chest X-ray shows a right upper lobe cavity; sputum is positive for acid-fast bacilli.",
       "Interferon-gamma release assay is positive and sputum PCR detects Mycobacterium."]),
    P("giant cell arteritis", (60, 85), "MF",
      ["a new headache over the temples, jaw pain when chewing and blurred vision in one eye",
       "scalp tenderness when brushing the hair and aching shoulders"],
      ["morning stiffness of the shoulders and hips for months", "fatigue and weight loss"],
      ["a thickened, tender, pulseless temporal artery", "scalp tenderness and reduced visual acuity in the left eye"],
      ["ESR is 98 mm/h and CRP is 85 mg/L.",
       "Temporal artery biopsy shows granulomatous inflammation with multinucleated giant cells."]),
    P("rheumatoid arthritis", (30, 65), "F",
      ["painful swollen small joints of both hands with morning stiffness lasting 2 hours",
       "symmetric wrist and knuckle pain and fatigue for 4 months"],
      ["a smoker", "a mother with thyroid disease"],
      ["symmetric swelling of the MCP and PIP joints, sparing the DIP joints", "boggy swelling of both wrists and ulnar deviation"],
      ["Anti-CCP antibodies and rheumatoid factor are positive; X-ray shows periarticular erosions."]),
    P("systemic lupus erythematosus", (18, 45), "F",
      ["joint pains, a rash on the cheeks after sun exposure and mouth ulcers",
       "fatigue, joint aches and chest pain worse on breathing in"],
      ["two miscarriages", "hair loss over the past few months"],
      ["a malar rash sparing the nasolabial folds", "painless oral ulcers and non-erosive arthritis of the hands"],
      ["ANA is positive at 1:1280 and anti-dsDNA antibodies are high with low complement.",
       "Urine shows protein and red cell casts; anti-Smith antibodies are positive."]),
    P("Parkinson disease", (55, 85), "MF",
      ["a resting tremor of the right hand, slowness and small handwriting",
       "a shuffling gait, stiffness and trouble getting out of chairs"],
      ["loss of the sense of smell for years and acting out dreams", "constipation and a soft voice noted by family"],
      ["a pill-rolling rest tremor, cogwheel rigidity and bradykinesia",
       "reduced arm swing, a masked face and a festinating gait"],
      ["Symptoms improve markedly with a trial of levodopa; MRI brain is unremarkable."]),
    P("myasthenia gravis", (20, 75), "MF",
      ["drooping eyelids and double vision that worsen towards evening",
       "difficulty chewing and swallowing at the end of meals and arms that tire with use"],
      ["no recent infection", "an anterior mediastinal mass seen on an old chest X-ray"],
      ["fatigable ptosis that improves with an ice pack", "normal reflexes and sensation with fatigable proximal weakness"],
      ["Acetylcholine receptor antibodies are positive; repetitive nerve stimulation shows a decremental response."]),
    P("Guillain-Barre syndrome", (20, 70), "MF",
      ["tingling in the feet followed by weakness climbing up both legs over 5 days",
       "progressive leg weakness and difficulty walking"],
      ["a diarrheal illness 3 weeks ago", "a flu-like illness 2 weeks ago"],
      ["symmetric flaccid weakness of the legs with absent reflexes", "absent reflexes, mild sensory loss and reduced vital capacity"],
      ["CSF shows protein 180 mg/dL with a normal white cell count.",
       "Nerve conduction studies show slowed conduction and conduction block."]),
    P("multiple sclerosis", (20, 45), "F",
      ["painful blurred vision in the right eye over 3 days",
       "numbness of both legs and an electric shock feeling down the spine when bending the neck"],
      ["an episode of leg numbness 2 years ago that resolved in weeks", "double vision last year that cleared on its own"],
      ["a relative afferent pupillary defect", "internuclear ophthalmoplegia and brisk reflexes"],
      ["MRI shows multiple periventricular white matter lesions; CSF has oligoclonal bands."]),
    P("anaphylaxis", (8, 70), "MF",
      ["lip and tongue swelling, hives and difficulty breathing within minutes of eating a peanut snack",
       "generalized itching, wheeze and faintness 10 minutes after an IV antibiotic"],
      ["a known allergy to tree nuts", "a previous hive reaction to penicillin"],
      ["BP 78/40, widespread urticaria and stridor", "facial swelling, wheeze and HR 130"],
      ["Serum tryptase drawn at 1 hour is elevated."]),
    P("hypoglycemia", (30, 85), "MF",
      ["sweating, shakiness and confusion in the late morning after skipping breakfast",
       "being found drowsy and slurring words by family"],
      ["type 2 diabetes treated with glipizide and a recent poor appetite",
       "insulin-treated diabetes and a new exercise program"],
      ["diaphoresis, tremor and HR 110", "GCS 13 without focal deficits"],
      ["Fingerstick glucose is 38 mg/dL; symptoms resolve within minutes of IV dextrose."]),
    P("preeclampsia", (18, 42), "F",
      ["headache and blurred vision at 34 weeks of pregnancy",
       "swelling of the face and hands and right upper abdominal pain at 36 weeks' gestation"],
      ["a first pregnancy", "a twin pregnancy", "chronic kidney disease"],
      ["BP 168/112 on two readings 4 hours apart and brisk reflexes", "BP 158/104 and marked edema"],
      ["Urine protein/creatinine ratio is 0.8; platelets 95,000/uL; AST mildly raised."]),
    P("acute angle-closure glaucoma", (50, 85), "MF",
      ["sudden severe pain in one eye, blurred vision with halos around lights, headache and vomiting after a film in a dark cinema",
       "a red painful eye and rainbow-colored halos around lights"],
      ["long-sightedness", "a recently started anticholinergic for bladder symptoms"],
      ["a fixed mid-dilated pupil, a hazy cornea and a rock-hard eye on palpation", "conjunctival injection with a cloudy cornea"],
      ["Intraocular pressure is 58 mmHg; gonioscopy shows a closed angle."]),
    P("herpes zoster", (50, 85), "MF",
      ["burning pain on one side of the chest for 3 days, followed by a rash in a band",
       "tingling and pain over the left forehead followed by blisters"],
      ["chickenpox as a child", "long-term prednisone"],
      ["grouped vesicles on a red base in a dermatomal distribution that does not cross the midline"],
      ["PCR of vesicle fluid detects VZV DNA."]),
    P("peptic ulcer disease", (30, 80), "MF",
      ["burning upper abdominal pain that improves with eating and returns 2-3 hours after meals",
       "black tarry stools and epigastric pain for a week"],
      ["daily naproxen for knee pain", "smoking and heavy alcohol use"],
      ["epigastric tenderness and pallor"],
      ["Urea breath test for H. pylori is positive.", "Endoscopy shows a 1 cm clean-based crater in the duodenal bulb."]),
    P("gastroesophageal reflux disease", (25, 70), "MF",
      ["burning retrosternal discomfort after large meals and when lying flat", "a sour taste in the mouth at night and a chronic cough"],
      ["obesity and late-night meals", "coffee and alcohol most evenings"],
      ["no abnormal findings apart from a BMI of 34"],
      ["ECG and troponin are normal; symptoms resolve after 4 weeks of a proton-pump inhibitor.",
       "24-hour pH monitoring shows pathological acid exposure of the esophagus."]),
    P("carbon monoxide poisoning", (20, 80), "MF",
      ["headache, dizziness and nausea, with several family members affected on a winter morning",
       "headaches and confusion that improve when away from home"],
      ["an old gas heater recently turned on", "a family dog that also seems lethargic"],
      ["SpO2 99% on pulse oximetry despite confusion", "cherry-red lips and no focal neurological signs"],
      ["Carboxyhemoglobin on co-oximetry is 24%."]),
    P("Lyme disease", (10, 70), "MF",
      ["an expanding red ring-shaped rash on the thigh with fatigue and aches 10 days after a camping trip",
       "drooping of one side of the face and joint aches weeks after hiking"],
      ["a tick found on the leg after hiking in the northeastern US", "living near woodland in Connecticut"],
      ["a 12 cm red patch with central clearing", "one-sided facial weakness involving the forehead"],
      ["Two-tier serology for Borrelia burgdorferi is positive."]),
    P("infective endocarditis", (20, 80), "MF",
      ["fever, night sweats and fatigue for 3 weeks", "fever and a new heart murmur found by the family doctor"],
      ["injection drug use", "a prosthetic aortic valve and recent dental work"],
      ["a new holosystolic murmur at the left lower sternal border and splinter hemorrhages",
       "T 38.8 C, a new regurgitant murmur and tender nodules on the finger pads"],
      ["Three sets of blood cultures grow Staphylococcus aureus; echo shows a vegetation on the tricuspid valve."]),
    P("pericarditis", (18, 60), "MF",
      ["sharp chest pain that is worse lying down and better sitting forward, starting after a cold",
       "pleuritic central chest pain for 2 days"],
      ["a viral illness a week ago", "no cardiac risk factors"],
      ["a scratchy three-component friction rub at the left sternal border"],
      ["ECG shows diffuse concave ST elevation with PR depression; troponin is normal."]),
    P("hyperosmolar hyperglycemic state", (55, 90), "MF",
      ["increasing confusion, thirst and frequent urination over a week", "being found drowsy and dehydrated at home"],
      ["type 2 diabetes and a recent bladder infection", "a nursing home stay with poor oral intake"],
      ["very dry mucous membranes, BP 94/60 and no deep sighing respirations"],
      ["Glucose 1,040 mg/dL, serum osmolality 360 mOsm/kg, pH 7.37 and only trace ketones."]),
    P("alcohol withdrawal", (30, 70), "MF",
      ["tremor, sweating, anxiety and seeing insects on the walls 2 days after admission for a fracture",
       "shakiness, agitation and a seizure on the second day without a drink"],
      ["a bottle of vodka a day", "prior episodes of confusion after running out of alcohol"],
      ["tremor, HR 122, T 38.0 C and disorientation", "diaphoresis and agitation with BP 170/100"],
      ["Blood alcohol level is zero and CIWA score is 28; glucose and head CT are normal."]),
    P("benign paroxysmal positional vertigo", (40, 80), "MF",
      ["brief spinning episodes lasting under a minute when turning over in bed",
       "room-spinning dizziness when looking up to a high shelf"],
      ["a minor head bump a month ago", "no hearing loss or tinnitus"],
      ["a Dix-Hallpike maneuver that provokes torsional upbeating nystagmus after a short latency",
       "a normal neurological exam and normal hearing"],
      ["Symptoms resolve after an Epley maneuver."]),
]


BACKGROUND = [
    "seasonal allergic rhinitis", "osteoarthritis of both knees", "hyperlipidemia on atorvastatin",
    "a penicillin allergy (rash)", "2 cups of coffee a day", "work as an accountant", "lives alone with a dog",
    "a benign skin lesion removed last year", "mild myopia", "vaccinations up to date", "a daily multivitamin",
    "a wrist fracture 5 years ago", "carpal tunnel release on the right", "a gardening hobby",
    "long working hours after a recent promotion", "low vitamin D treated with supplements",
    "a tonsillectomy in childhood", "occasional constipation", "a cataract operation on the left eye",
]
INCIDENTAL_FINDINGS = [
    "a small seborrheic keratosis on the back", "mild crepitus in both knees", "a healed scar on the left forearm",
    "a benign-appearing mole on the shoulder", "mild gum recession", "dry skin on the shins",
    "a well-healed old laparoscopy port scar",
]


def person(rng: random.Random, dx: Pools) -> tuple[int, str]:
    return rng.randint(*dx.ages), rng.choice(dx.sexes)


def write_vignette(rng: random.Random, dx: Pools) -> str:
    age, sex = person(rng, dx)
    noun = ("boy" if sex == "M" else "girl") if age < 18 else ("man" if sex == "M" else "woman")
    complaint = rng.choice(dx.complaints)
    history = rng.choice(dx.history)
    background = "; ".join(rng.sample(BACKGROUND, rng.randint(1, 2)))
    exam = rng.sample(dx.exam, rng.randint(1, min(2, len(dx.exam))))
    if rng.random() < 0.4:
        exam.insert(rng.randint(0, len(exam)), rng.choice(INCIDENTAL_FINDINGS))
    exam_text = "; ".join(exam)
    test = rng.choice(dx.tests)
    template = rng.randrange(4)
    if template == 0:
        return (f"A {age}-year-old {noun} presents with {complaint}. Past history includes {history}; "
                f"also {background}. On examination: {exam_text}. {test}")
    if template == 1:
        return (f"{age}-year-old {noun} seen because of {complaint}. History: {history}. Other: {background}. "
                f"Exam shows {exam_text}. {test}")
    if template == 2:
        return f"{age}{sex}, c/o {complaint}. PMH: {history}; {background}. O/E: {exam_text}. Investigations: {test}"
    return (f"A {noun} aged {age} reports {complaint}. Background: {background}. Relevant history: {history}. "
            f"Findings: {exam_text}. {test}")


def split_pools(dx: Pools, split: str) -> Pools:
    """The first phrasing of each finding pool (with 2+ phrasings) is written only into the test
    split, the others only into train: test cases describe the disease in words training never used."""
    def part(pool: list[str]) -> list[str]:
        if len(pool) < 2:
            return pool
        return pool[:1] if split == "test" else pool[1:]
    return Pools(dx.name, dx.ages, dx.sexes, part(dx.complaints), part(dx.history), part(dx.exam), part(dx.tests))


PRIOR_EPISODE = [
    "Old records from an admission {n} years ago, since fully recovered: {test}",
    "Prior episode ({n} yrs ago, resolved): {test}",
    "A discharge letter from {n} years ago mentions: {test}",
]
ABBREVIATIONS = [("shortness of breath", "SOB"), ("hypertension", "HTN"), ("type 2 diabetes", "DM2"),
                 ("blood pressure", "BP")]


def add_prior_episode(rng: random.Random, text: str, dx: Pools) -> str:
    """A distractor: another disease's key result from years ago, which the current case must not be read as."""
    other = rng.choice([d for d in VIGNETTE_POOLS if d is not dx])
    line = rng.choice(PRIOR_EPISODE).format(n=rng.randint(2, 15), test=rng.choice(other.tests)).rstrip(".")
    parts = text.split(". ")
    parts.insert(rng.randint(1, max(1, len(parts) - 1)), line)
    return ". ".join(parts)


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n vignettes, diagnoses in turn, written from the ``split``'s share of the phrasings
    (``split="shifted"``: from the shifted pools and case styles)."""
    examples = []
    for i in range(n):
        if split == "shifted":  # its own pools and styles, and no rng draw of the path below
            examples.append(shifted_example(rng, SHIFTED_POOLS[i % len(SHIFTED_POOLS)]))
            continue
        dx = VIGNETTE_POOLS[i % len(VIGNETTE_POOLS)]
        text = write_vignette(rng, split_pools(dx, split))
        if rng.random() < 0.5:
            text = add_prior_episode(rng, text, dx)
        if rng.random() < 0.3:  # clinicians' shorthand
            for long, short in ABBREVIATIONS:
                text = text.replace(long, short)
        examples.append({"input": text, "target": dx.name})
    rng.shuffle(examples)
    return examples


# ---------------------------------------------------------------- shifted split
# Pools that only split="shifted" draws from: the complaint in the patient's own words (quoted, first
# person, lay vocabulary), other clinical synonyms for history, findings and results (e.g. "JVP raised
# to the earlobe", "needle-shaped negatively birefringent crystals", "COHb 28%"), other case styles
# (ED triage note, referral letter, the patient's account retold, SBAR handover), other background,
# incidental findings and shorthand. Same diagnoses; no text names a diagnosis or synonym (tested).
# name -> (complaints, history, exam, tests)
SHIFTED_FINDINGS = {
    "myocardial infarction": (
        ["it feels like an elephant is sitting on my chest and the ache goes down my left arm",
         "I've got a tight band round my chest, I'm drenched in sweat and I feel sick"],
        ["high blood pressure, raised lipids and 30 years of cigarettes",
         "diabetes on injections and a brother who needed bypass surgery at 52"],
        ["clammy and grey, pulse 108, BP 146/90", "a fourth heart sound with a non-tender chest wall"],
        ["High-sensitivity troponin rises from 60 to 2,300 ng/L over 3 hours; the 12-lead tracing shows an injury "
         "current with new Q waves in II, III and aVF.",
         "12-lead tracing: hyperacute T waves and an anterior injury current across V2-V5; the urgent angiogram shows "
         "an occluded proximal LAD."]),
    "pulmonary embolism": (
        ["I suddenly couldn't get my breath and it hurts on the right when I breathe in",
         "I nearly passed out on the stairs, now I'm really breathless and I coughed up blood-streaked phlegm"],
        ["a combined contraceptive pill started 2 months ago and a 12-hour coach trip last week",
         "a below-knee plaster cast for a broken ankle for the past 3 weeks"],
        ["respiratory rate 28, pulse 122, sats 88% breathing air", "a raised JVP, a loud P2 and normal-sounding lungs"],
        ["CT angiogram of the chest: saddle thrombus at the pulmonary artery bifurcation extending into both lower "
         "lobe arteries.",
         "V/Q scan shows multiple mismatched perfusion defects; the plain film is unremarkable."]),
    "diabetic ketoacidosis": (
        ["I can't stop drinking water, I keep being sick and my stomach hurts",
         "I feel really drowsy, my breathing is fast and deep and I've lost loads of weight"],
        ["type 1 diabetic since age 9 who ran out of pens 3 days ago",
         "a stomach bug this week, stopped injecting because of not eating"],
        ["deep sighing respirations with a pear-drop smell on the breath",
         "pulse 130, sunken eyes and delayed capillary refill"],
        ["Venous blood gas: pH 7.05, bicarbonate 6 mmol/L; blood beta-hydroxybutyrate 6.8 mmol/L; glucose 29 mmol/L.",
         "Glucose 610 mg/dL, anion gap 30 and plasma beta-hydroxybutyrate 7.2 mmol/L; potassium 5.9."]),
    "pneumonia": (
        ["I've been shivering with a high temperature, coughing up rusty brown phlegm, and my side hurts when "
         "I breathe",
         "I've got a bad chesty cough with thick yellow phlegm and I'm short of breath"],
        ["lives independently with no hospital admissions this year",
         "a grandchild at home with a chest infection last week"],
        ["temp 39.4, respiratory rate 26, coarse rales and tubular breath sounds low on the right posteriorly",
         "dullness and whispered pectoriloquy low on the right"],
        ["Chest film: dense right-sided airspace opacity with air bronchograms; CRP 240.",
         "Sputum grows Streptococcus pneumoniae and the radiograph shows right basal consolidation."]),
    "appendicitis": (
        ["the pain started around my belly button and moved down to the bottom right, and I don't want to eat",
         "it hurts low on my right side when I walk or when the car goes over bumps"],
        ["no previous abdominal operations", "no urinary symptoms and no diarrhoea"],
        ["guarding and rebound in the right iliac fossa, temp 38.0",
         "right iliac fossa pain on pressing the left side and on flexing the right hip against resistance"],
        ["Leucocytes 15.8 with neutrophilia, CRP 85; urine dipstick clear.",
         "CT abdomen: a dilated 11 mm appendix with surrounding fat stranding and an appendicolith."]),
    "cholecystitis": (
        ["a constant pain under my right ribs since last night's takeaway, and I've been sick",
         "the pain under my ribs goes round to my back and I feel feverish"],
        ["several bouts of similar but shorter pain after fatty food", "obesity and a recent crash diet"],
        ["Murphy's sign positive, temp 38.3", "a tender RUQ with guarding; sclerae not yellow"],
        ["Ultrasound: stones in the GB, GB wall 6 mm with fluid around it and a positive sonographic Murphy sign.",
         "HIDA scan: GB not seen at 4 hours; LFTs and pancreatic enzymes normal."]),
    "pancreatitis": (
        ["a terrible pain at the top of my stomach that goes straight through to my back, and I can't stop vomiting",
         "the pain bores into my back and it only eases a bit if I hunch over"],
        ["drinks a litre of spirits most days", "calculi in the GB seen last year, on a waiting list for an operation"],
        ["a tender epigastrium with guarding, pulse 116, temp 37.9",
         "flank discolouration (Grey Turner sign) and a tender, distended epigastrium"],
        ["Amylase 2,100 U/L and lipase 12 times the upper limit of normal.",
         "CT: a swollen, oedematous gland with fluid in the lesser sac."]),
    "ischemic stroke": (
        ["my right hand went useless and my words came out jumbled about an hour ago",
         "my wife says my face dropped and I couldn't get my words out when I woke up"],
        ["an irregular heartbeat found last year, never started on a blood thinner",
         "hypertension, raised lipids and a narrowed carotid on a previous scan"],
        ["right lower facial droop sparing the forehead, right pronator drift and receptive dysphasia",
         "power 2/5 in the right arm and leg and a right homonymous field cut"],
        ["CT head: no blood, loss of grey-white differentiation in the left insula; CT angiogram: left M1 cut-off.",
         "MRI: DWI-bright, ADC-dark lesion in the left MCA distribution; sugar normal."]),
    "intracerebral hemorrhage": (
        ["I got a sudden bad headache, then my left arm and leg went weak, and I've been sick",
         "I was straining on the toilet when my head exploded with pain and my left side went weak"],
        ["high blood pressure, stopped all tablets a year ago",
         "a vitamin K antagonist for a mechanical mitral prosthesis, anticoagulation clinic readings often too high"],
        ["BP 230/125, GCS falling from 14 to 10 and a dense weakness of the left arm and leg",
         "eyes deviated to the right with a flaccid left side"],
        ["Non-contrast CT head: a 40 mL area of acute blood in the right putamen with surrounding oedema.",
         "Clotting ratio 4.5; CT shows acute blood in the right thalamus extending into the ventricles."]),
    "subarachnoid hemorrhage": (
        ["it was like being hit on the back of the head with a bat, the worst pain I've ever had, it came on "
         "in a second",
         "a sudden explosive pain in my head during sex, then I was sick and blacked out briefly"],
        ["adult polycystic kidneys", "a mother who had a brain aneurysm clipped"],
        ["meningism without fever, GCS 15, no focal deficit", "a stiff neck and a left third nerve palsy"],
        ["CT head: acute blood filling the basal cisterns and Sylvian fissures.",
         "CT at 16 hours is normal; the spinal fluid supernatant is yellow-tinged with a bilirubin peak on "
         "spectrophotometry."]),
    "meningitis": (
        ["my head is splitting, I can't bend my neck, the light hurts my eyes and I'm burning up",
         "I feel terrible with a fever and there are purple spots on my shins that don't fade under a glass"],
        ["a first-year student in university halls", "otitis media last week and a cochlear implant"],
        ["temp 39.8, nuchal rigidity and pain on straightening the knee with the hip flexed",
         "purpura over the shins, BP 88/50 and confusion"],
        ["Lumbar puncture: turbid fluid, white cells 3,100/uL mostly neutrophils, glucose 1.1 mmol/L (blood 6.0), "
         "protein 2.4 g/L.",
         "Spinal fluid PCR detects pneumococcal DNA; blood cultures grow Streptococcus pneumoniae."]),
    "pyelonephritis": (
        ["I've got shivers, a fever and a bad pain in my left side under the ribs, and it burns when I pee",
         "a pain in my right loin, I keep being sick and I'm weeing all the time"],
        ["recurrent cystitis over the past year", "diabetes on metformin and a recent urinary catheter"],
        ["temp 39.3 with a punch-tender loin on the painful side",
         "pulse 112 and exquisite loin tenderness on the painful side"],
        ["Urine dipstick: leucocytes 3+, nitrites positive; microscopy shows white cell casts.",
         "Midstream urine: Klebsiella, more than 10^5 organisms per mL; CRP 190."]),
    "deep vein thrombosis": (
        ["my left calf has been swollen, hot and aching for 3 days",
         "my whole left leg swelled up after the long drive back from holiday"],
        ["knee arthroscopy 10 days ago", "metastatic breast cancer on treatment"],
        ["a left calf 3.5 cm larger than the right with pitting oedema and tenderness over the popliteal fossa",
         "prominent superficial collaterals and a warm, swollen left leg"],
        ["Venous duplex: the left femoral and popliteal vessels do not compress and contain echogenic clot.",
         "Wells score 3; D-dimer raised; ultrasound shows clot in the calf and popliteal vessels."]),
    "heart failure": (
        ["I can't lie flat, I sleep propped up in a chair and my ankles are like balloons",
         "I wake up fighting for breath and my trousers don't fit round my tummy any more"],
        ["a large heart muscle injury 3 years ago treated with stents",
         "long-standing high blood pressure and a recent salty diet"],
        ["JVP to the earlobe, fine crackles to the mid-zones and oedema to the thighs",
         "a third heart sound, a displaced apex beat and sacral oedema"],
        ["NT-proBNP 9,800 pg/mL; chest film: cardiomegaly, upper lobe diversion and Kerley B lines.",
         "Echocardiogram: a dilated, globally hypokinetic LV with an EF of 20%."]),
    "asthma exacerbation": (
        ["my chest is tight and whistly and my blue inhaler isn't touching it",
         "I can only say a few words before I need a breath, it started after a cold"],
        ["hay fever and eczema, with a brown preventer inhaler taken only now and then",
         "a previous intensive care admission for breathing trouble"],
        ["diffuse polyphonic rhonchi, respiratory rate 30, pulse 120",
         "managing single words, using neck muscles to breathe, sats 92%"],
        ["Peak flow 180 L/min, 40% of personal best; chest film unremarkable.",
         "Peak flow 50% of predicted, improving to 80% after back-to-back salbutamol."]),
    "COPD exacerbation": (
        ["I'm more breathless than usual and my phlegm has turned green",
         "my chest has been much worse since I caught a chill, coughing and whistling"],
        ["a 60 pack-year smoker on home oxygen at 2 L",
         "spirometry 2 years ago with fixed airflow limitation (post-bronchodilator ratio 0.5), on two inhalers"],
        ["pursed-lip breathing, a hyperexpanded chest and quiet breath sounds with scattered rhonchi",
         "central cyanosis, sats 85% on air and use of accessory muscles"],
        ["Arterial gas: pH 7.30, PaCO2 8.2 kPa, bicarbonate 33; chest film shows flattened diaphragms without new "
         "shadowing.",
         "Sputum grows Haemophilus influenzae; the radiograph shows overinflated lungs and nothing new."]),
    "pneumothorax": (
        ["I got a sudden sharp pain on the right side of my chest and I'm a bit short of breath",
         "a stabbing pain under my left shoulder after a coughing fit and I can't take a deep breath"],
        ["tall and slim, smokes cannabis", "no chest problems before"],
        ["a hyperresonant note and no air entry on the same half of the chest",
         "reduced expansion and diminished air entry on the same half of the chest; windpipe central"],
        ["Erect chest film: a visible pleural edge 3 cm from the chest wall at the hilum with no markings beyond it.",
         "Bedside ultrasound: absent pleural sliding and a barcode sign on that half of the chest."]),
    "aortic dissection": (
        ["a pain like being sliced went right through my chest to my back between my shoulders",
         "it feels like I'm being torn apart inside and the pain is moving down my back"],
        ["poorly controlled hypertension", "a Marfan habitus with arachnodactyly and a family history of sudden death"],
        ["BP 190/105 in the right arm and 140/80 in the left, with a weak left radial pulse",
         "a soft decrescendo murmur at the left sternal edge in diastole"],
        ["CT aortogram: true and false lumens separated by an intimal membrane from the aortic root to the arch.",
         "Transoesophageal echo: an undulating intimal membrane in the ascending aorta with aortic regurgitation."]),
    "atrial fibrillation": (
        ["my heart's been jumping about like a bag of frogs overnight and I feel washed out",
         "my heart is galloping all over the place and I feel dizzy"],
        ["hypertension and a weekend of heavy drinking", "sleep apnoea and hypertension"],
        ["a pulse chaotic in rhythm and volume at 140 with a pulse deficit", "an S1 varying in loudness, no murmur"],
        ["12-lead tracing: a chaotic narrow-complex tachycardia at 140 with a fibrillatory baseline and no P waves.",
         "Holter: a totally disorganised rhythm throughout with no P waves."]),
    "hypothyroidism": (
        ["I feel cold all the time, I'm putting on weight and I'm so constipated",
         "my hair is coming out, my skin is dry and my brain feels foggy"],
        ["a total thyroidectomy 10 years ago and stopped taking her tablets", "type 1 diabetes and vitiligo"],
        ["pulse 50, dry coarse skin and slow-relaxing ankle jerks", "periorbital swelling, a hoarse voice and a firm goitre"],
        ["Thyrotropin 42 mU/L and free T4 5 pmol/L; antimicrosomal antibodies strongly positive.",
         "Thyrotropin raised at 31 with a low free thyroxine; cholesterol also raised."]),
    "Graves disease": (
        ["I'm losing weight though I eat everything, my heart pounds and I can't stand the heat",
         "I'm jittery, anxious and my bowels are opening four times a day"],
        ["a mother with type 1 diabetes", "a smoker taking nothing else"],
        ["proptosis with lid lag and a smooth diffuse goitre with a bruit",
         "shaky outstretched hands, hot sweaty palms and pulse 118"],
        ["Thyrotropin suppressed below 0.01, free T4 48 pmol/L and thyrotropin receptor antibodies (TRAb) present.",
         "Technetium scan: the whole gland avid and homogeneous."]),
    "iron deficiency anemia": (
        ["I'm exhausted, I get puffed out on the stairs and I can't stop chewing frozen peas",
         "I look pale, my fingernails have gone spoon-shaped and I'm always tired"],
        ["very heavy periods for years", "ibuprofen every day for arthritis"],
        ["pale conjunctivae and koilonychia", "angular cheilitis, pallor and a pulse of 100 at rest"],
        ["Hb 84 g/L, MCV 66 fL, serum iron 3 umol/L and transferrin saturation 5%.",
         "Small, pale red cells with pencil forms on the film; TIBC high and transferrin saturation low."]),
    "vitamin B12 deficiency": (
        ["pins and needles in both feet and I'm wobbly in the dark",
         "my mouth is sore, everything tastes odd, and I'm tired and forgetful"],
        ["metformin for 12 years", "vegan for over a decade"],
        ["absent ankle jerks, extensor plantars and loss of joint position sense in the toes",
         "pale, lemon-tinged skin and glossitis"],
        ["Hb 92 g/L, MCV 118 fL, serum cobalamin 90 ng/L; the film shows hypersegmented neutrophils.",
         "Raised MMA and homocysteine; anti-IF antibodies positive."]),
    "migraine": (
        ["I see flashing zigzags for 20 minutes, then a pounding pain on one side of my head and I'm sick",
         "a throbbing pain on one side of my head that lasts all day and I have to lie in a dark, quiet room"],
        ["the same kind of head pain since her teens, often around her period",
         "a mother and sister who get the same one-sided head pains"],
        ["cranial nerves, limbs and optic discs all unremarkable", "no meningism, no papilloedema and a normal BP"],
        ["Symptom diary: 3 episodes a month, each 12-48 hours, well in between; MRI unremarkable.",
         "Episodes abort with a triptan; neuroimaging unremarkable."]),
    "gout": (
        ["my big toe started throbbing at 3 am, it's scarlet and even the sheet touching it is agony",
         "my ankle blew up overnight, it's hot and I can't walk on it"],
        ["a water tablet for blood pressure and a lot of beer", "chronic renal impairment and lots of offal and shellfish"],
        ["a swollen, shiny, purplish joint too tender to touch", "a hot, swollen joint and tophi on the helix"],
        ["Joint aspirate: needle-shaped, strongly negatively birefringent crystals under polarised light; Gram stain "
         "negative.",
         "Serum urate 0.58 mmol/L; dual-energy CT shows urate deposits in the painful joint."]),
    "septic arthritis": (
        ["my knee is hot and swollen, I can't move it at all and I've got a fever",
         "I can't stand on my left ankle and I've had the shivers"],
        ["injects heroin", "diabetes and a recent boil on the thigh"],
        ["temp 39.2, a tense effusion and the joint held rigid, any attempt to move it agony"],
        ["Aspirate: turbid fluid, 110,000 white cells/uL, crystal-free, Gram-positive cocci in clusters.",
         "Synovial fluid grows Staphylococcus aureus; blood cultures also positive; polarised microscopy negative."]),
    "cellulitis": (
        ["my calf and ankle have gone angry red, hot and sore and it's creeping upwards",
         "my ankle is puffy and scarlet and I feel shivery"],
        ["cracked skin between the toes from athlete's foot", "lymphoedema after a groin operation"],
        ["a hot, tender, poorly demarcated patch of erythema on the right lower limb without fluctuance",
         "temp 38.1 with lymphangitic tracking up the thigh and tender groin nodes"],
        ["Ultrasound: cobblestoned soft-tissue oedema without a drainable pocket; calf duplex normal.",
         "CRP 120, leucocytes 14; duplex normal."]),
    "nephrolithiasis": (
        ["a pain in my left side that comes in waves down into my groin, I can't keep still",
         "the worst pain of my life in my right side going down to my groin, and my urine looks like rose wine"],
        ["a previous episode that passed on its own", "calcium supplements and drinks barely a litre a day"],
        ["restless and pacing, mild renal angle tenderness on the painful side, afebrile",
         "belly soft and non-tender, apyrexial"],
        ["Urine dipstick: blood 3+, no leucocytes; CT KUB: a 4 mm calculus at the vesicoureteric junction on the "
         "painful side with mild hydronephrosis.",
         "Non-contrast CT shows a 6 mm calcific density in the proximal ureter on the painful side."]),
    "small bowel obstruction": (
        ["I've been vomiting green stuff, my stomach is swollen and I haven't passed wind for 2 days",
         "crampy waves of belly pain and I keep being sick"],
        ["open abdominal surgery after a car crash years ago", "a right hemicolectomy 3 years ago"],
        ["a swollen, drum-like belly with tinkling bowel sounds",
         "an old vertical surgical scar, a bloated belly and an empty rectum"],
        ["Supine abdominal film: dilated central bowel with valvulae conniventes and no gas in the large bowel.",
         "CT: dilated small intestine with a transition point in the right iliac fossa and collapsed bowel beyond."]),
    "diverticulitis": (
        ["I've had pain low down on the left of my tummy and a fever for 3 days",
         "constant pain in my lower left belly and my bowels have gone irregular"],
        ["a low-fibre diet and long-standing constipation", "a barium enema years ago with many pouches in the left colon"],
        ["localised peritonism in the left iliac fossa, temp 38.3"],
        ["CT: an inflamed left-sided colon with pericolic fat stranding and a small bubble of extraluminal gas, no "
         "abscess.",
         "Leucocytes 15, CRP 150; CT shows a thickened left colonic wall beside multiple outpouchings."]),
    "ectopic pregnancy": (
        ["I've missed a period, there's a pain low on the left and some spotting",
         "a sudden sharp pain low down on one side, pain at the top of my shoulder and I feel faint"],
        ["salpingitis in her twenties", "treated for chlamydia 2 years ago"],
        ["adnexal tenderness on the painful side and cervical excitation", "pulse 120, BP 90/60 and a rigid lower belly"],
        ["Urine pregnancy test positive; transvaginal scan: no intrauterine sac and free fluid in the pouch of Douglas.",
         "Serum hCG rose only 20% in 48 hours and ultrasound shows an empty uterus with an adnexal mass."]),
    "testicular torsion": (
        ["I woke up with a terrible pain in my left testicle and I've been sick",
         "my testicle suddenly started hurting badly during rugby"],
        ["a brief similar pain last month that went away on its own", "not sexually active, no dysuria"],
        ["a high-riding, horizontally lying testicle with an absent cremasteric reflex",
         "a swollen, exquisitely tender testicle whose pain does not ease when it is lifted"],
        ["Colour Doppler: no intratesticular perfusion on the affected side.",
         "Ultrasound of the scrotum shows a whirlpool sign of the spermatic cord and no perfusion."]),
    "celiac disease": (
        ["I've had loose, pale, smelly stools and bloating for months and I'm losing weight",
         "I'm tired all the time, my tummy swells up, and I've got intensely prickly blisters on my forearms and knees"],
        ["thyroxine replacement and recurrent mouth sores", "type 1 diabetes since childhood"],
        ["thin and pale with mild abdominal distension", "grouped excoriated vesicles over the knees and buttocks"],
        ["Anti-endomysial antibodies positive; tTG-IgA 10 times the upper limit.",
         "Duodenal biopsies: subtotal villous atrophy, crypt hyperplasia and intraepithelial lymphocytosis."]),
    "ulcerative colitis": (
        ["I've been going 8 times a day with blood and mucus and I'm always rushing to the loo",
         "diarrhoea with fresh blood and cramps for 6 weeks, and I feel I need to go even when I'm empty"],
        ["quit cigarettes this spring", "no sick contacts and no travel abroad"],
        ["pale, pulse 104, a mildly tender left colon", "temp 37.9 with tenderness in the left lower belly"],
        ["Flexible sigmoidoscopy: diffusely granular, friable lining from the anal verge upwards with no normal "
         "patches.",
         "Calprotectin 1,200; biopsies show crypt abscesses and distorted crypts without granulomas, uniform from the "
         "anal verge."]),
    "Crohn disease": (
        ["pain in the lower right of my belly, diarrhoea without blood and I've lost a stone",
         "crampy tummy pain, sores in my mouth and a painful swelling next to my back passage"],
        ["smokes 20 a day", "growth failure as a teenager"],
        ["a tender mass in the right iliac fossa and a fistula opening beside the anus", "aphthae and anal skin tags"],
        ["MR enterography: a long thickened segment of terminal ileum with a stricture and skip areas.",
         "Ileocolonoscopy: cobblestone ileal lining with deep linear fissures and normal areas between; granulomas on "
         "histology."]),
    "Addison disease": (
        ["I'm exhausted, I've lost weight, I crave salty crisps and I go dizzy when I stand",
         "I've been vomiting with tummy pain and I collapsed after a long spell of feeling drained"],
        ["autoimmune thyroid disease", "a father with insulin-dependent diabetes"],
        ["pigmented palmar creases and buccal mucosa", "a postural drop from 90/55 to 70/40"],
        ["Na 126, K 6.1; 9 am cortisol 60 nmol/L with a high ACTH.",
         "Short Synacthen test: cortisol 110 nmol/L at 30 minutes; adrenal antibodies positive."]),
    "Cushing syndrome": (
        ["I've put weight on round my middle and face, I bruise easily and I struggle out of a chair",
         "wide violet lines have appeared on my tummy and my face has gone round"],
        ["recent-onset diabetes and a fragility fracture of the spine", "insomnia and irritability"],
        ["central obesity, a buffalo hump and broad violaceous striae",
         "fragile, easily bruised skin, proximal myopathy and BP 165/100"],
        ["Late-night salivary cortisol raised twice; 24-hour urinary free cortisol three times normal.",
         "Cortisol 420 nmol/L after the overnight 1 mg dexamethasone test, with a suppressed ACTH and a 3 cm adrenal "
         "adenoma on CT."]),
    "infectious mononucleosis": (
        ["swallowing is agony, I've got a fever and I've been wiped out for over a week",
         "swollen glands in my neck, a fever, and I can't stay awake"],
        ["a partner who had the same illness last month", "a widespread rash after a course of amoxicillin"],
        ["enlarged tonsils with grey membranes, tender nodes behind the sternomastoid and splenomegaly",
         "pinpoint haemorrhages on the soft palate and a palpable spleen tip"],
        ["Monospot positive; atypical mononuclear (Downey) cells on the film; ALT 140.",
         "VCA IgM positive with reactive T cells on the film."]),
    "streptococcal pharyngitis": (
        ["my throat suddenly got really sore, it hurts to swallow and I'm hot but I'm not coughing at all",
         "it hurts to swallow, I've been feverish with a headache for 2 days and my neck glands hurt"],
        ["a brother off school with the same", "no runny nose"],
        ["temp 38.8, enlarged tonsils coated with pus and tender anterior neck nodes",
         "a beefy red pharynx with pus on the tonsils and no coryza"],
        ["Pharyngeal swab grows beta-haemolytic Streptococcus pyogenes.",
         "Rapid antigen test for Streptococcus pyogenes positive."]),
    "tuberculosis": (
        ["I've been coughing for 2 months, sometimes with blood, I sweat at night and my clothes are loose",
         "I get hot and shivery every night and the cough won't go away"],
        ["moved from a high-incidence country last year", "HIV with a CD4 count of 150", "works in a prison"],
        ["wasted and febrile with coarse rales in the left upper zone"],
        ["Chest film: right upper lobe cavitation; smear positive for acid-fast bacilli.",
         "Culture grows acid-fast bacilli on Lowenstein-Jensen medium; Quantiferon positive."]),
    "giant cell arteritis": (
        ["a new headache over my temples, my jaw aches when I chew and the vision in one eye went dim",
         "it hurts to comb my hair and my upper arms are stiff"],
        ["polymyalgic girdle stiffness every morning for months", "weight loss and low-grade fevers"],
        ["a thickened, beaded, tender vessel over the temple with reduced pulsation",
         "a tender head to touch and a pale, swollen right optic disc"],
        ["ESR 105 mm/h, CRP 90; ultrasound of the superficial temporal vessels shows a halo sign.",
         "Biopsy of the temple vessel: granulomatous inflammation with giant cells and a disrupted internal elastic "
         "lamina."]),
    "rheumatoid arthritis": (
        ["my knuckles and the bases of my fingers are swollen and stiff for hours every morning",
         "both my hands hurt and I'm exhausted, it's been four months"],
        ["a smoker of 20 years", "a mother with the same joint problems"],
        ["symmetrical synovitis of the MCP and PIP joints with the DIP joints spared",
         "spongy swelling of both wrist joints, fingers drifting sideways and firm nodules at the elbows"],
        ["Anti-citrullinated peptide antibodies strongly positive, IgM RF positive; hand films show marginal erosions."]),
    "systemic lupus erythematosus": (
        ["my joints ache, I get a red rash over my cheeks in the sun and I have sores in my mouth",
         "I'm tired, my joints hurt and my chest hurts when I breathe in"],
        ["recurrent pregnancy loss and a clot in the leg last year", "patchy alopecia and cold, white fingers in winter"],
        ["a butterfly-shaped facial rash sparing the nasolabial folds", "non-tender palatal erosions and a pericardial rub"],
        ["ANA 1:1280 homogeneous, anti-dsDNA raised, C3 and C4 low.",
         "Urine: protein 2+ with dysmorphic red cells; anti-Sm positive; lymphopenia."]),
    "Parkinson disease": (
        ["my right hand shakes when it's resting and my writing has got tiny",
         "my steps have got small and quick and it takes me ages to rise from a chair"],
        ["acts out dreams at night and lost the sense of smell years ago",
         "no antipsychotic or anti-sickness medicines"],
        ["a 4-6 Hz pill-rolling rest tremor, cogwheel rigidity and slowed finger taps",
         "little arm movement when walking, hypomimia and stooped, festinant steps"],
        ["DaTscan shows reduced putaminal uptake; good response to a levodopa trial."]),
    "myasthenia gravis": (
        ["my eyelids droop and I see double by the evening",
         "chewing gets hard halfway through dinner and my arms give out when I brush my hair"],
        ["a front-of-chest mass on an old CT", "no recent infections"],
        ["ptosis worsening on sustained upgaze and improving after an ice pack",
         "shoulder abduction weakening with repetition; jerks and feeling intact"],
        ["Anti-acetylcholine receptor antibodies positive; single-fibre EMG shows increased jitter.",
         "Repetitive nerve stimulation: a 20% decrement; CT chest shows a thymoma."]),
    "Guillain-Barre syndrome": (
        ["tingling in my feet, and now my legs are getting weaker every day, climbing up",
         "I can't climb the stairs, my legs have gone weak over 5 days"],
        ["food poisoning from undercooked chicken last month", "a chest cold a fortnight before"],
        ["symmetrical flaccid weakness of the legs with areflexia",
         "areflexia throughout, mild glove-and-stocking numbness and FVC 1.8 L"],
        ["Lumbar puncture: protein 2.1 g/L with 2 white cells (albuminocytological dissociation).",
         "Electrophysiology: prolonged distal latencies, slowed velocities and temporal dispersion."]),
    "multiple sclerosis": (
        ["my right eye has gone blurry over 3 days and it hurts to move it",
         "my legs feel like cotton wool and a buzzing runs down my back when I bend my head"],
        ["a spell of a numb face 18 months ago that settled within weeks", "bladder urgency over the past year"],
        ["a right relative afferent pupillary defect with red desaturation",
         "an adduction lag on lateral gaze, brisk jerks and an upgoing plantar"],
        ["MRI brain and cord: multiple ovoid lesions abutting the ventricles and juxtacortical, some enhancing; "
         "oligoclonal bands in CSF only.",
         "Visual evoked potentials delayed on the right; MRI shows Dawson's fingers."]),
    "anaphylaxis": (
        ["my lips and tongue swelled up, I came out in hives and I couldn't breathe within minutes of a satay",
         "I went itchy all over, wheezy and faint just after the IV co-amoxiclav went up"],
        ["a known tree-nut allergy, carries an adrenaline pen", "hives once after a wasp sting"],
        ["BP 75/40, widespread urticaria, stridor and bronchospasm", "swollen lips and tongue, pulse 135 and sats 89%"],
        ["Mast-cell tryptase 45 ug/L sixty minutes after onset, back to baseline the next day.",
         "Improvement within minutes of IM adrenaline; serum tryptase elevated."]),
    "hypoglycemia": (
        ["I came over all shaky, sweaty and muddled before lunch", "my wife found me drowsy and talking nonsense"],
        ["on gliclazide, eating poorly after a stomach bug", "on a basal-bolus regimen and training for a half marathon"],
        ["sweaty and tremulous, pulse 112, slightly confused", "muddled but moving all four limbs"],
        ["Capillary glucose 2.0 mmol/L; the confusion clears within minutes of glucose gel.",
         "Laboratory glucose 35 mg/dL; full recovery after IV 10% glucose."]),
    "preeclampsia": (
        ["I'm 35 weeks pregnant and I've got a bad headache and flashing lights",
         "my rings don't fit and my eyes are puffy, with pain under my right ribs, at 37 weeks"],
        ["a first pregnancy at 41", "a BMI of 38 and a first pregnancy"],
        ["BP 170/115 on repeated readings with clonus", "BP 160/108, generalised oedema and brisk jerks"],
        ["Spot proteinuria 95 mg/mmol creatinine; thrombocytes 88 x10^9/L; ALT 120.",
         "Dipstick 3+ proteinuria; sFlt-1/PlGF very high; thrombocytopenia developing."]),
    "acute angle-closure glaucoma": (
        ["my left eye is agony and red, street lamps have coloured haloes and I've been sick",
         "the eye pain came on in the dark cinema with a headache and blurred vision"],
        ["long-sighted with thick glasses", "a new over-the-counter sleeping tablet (diphenhydramine)"],
        ["a fixed mid-dilated pupil, a steamy cornea and a stony-hard eye", "ciliary flush and a shallow anterior chamber"],
        ["Intraocular pressure 62 mmHg in the left eye; gonioscopy shows no visible angle structures."]),
    "herpes zoster": (
        ["a burning pain round one side of my chest for 3 days and now a rash there",
         "prickling over my left forehead, then little water bubbles came up"],
        ["chickenpox at school and now on methotrexate", "long-term steroids for arthritis"],
        ["clustered fluid-filled papules on an erythematous background in a band, stopping at the midline",
         "crops of clear fluid-filled spots confined to one dermatome where the pain was"],
        ["Viral swab from a lesion positive for varicella virus DNA.",
         "Tzanck smear of a lesion shows multinucleated cells; direct immunofluorescence positive for varicella."]),
    "peptic ulcer disease": (
        ["a gnawing burning in the pit of my stomach that eases when I eat and comes back a few hours later",
         "my poo looks like tar and my stomach hurts"],
        ["diclofenac most days for back pain", "aspirin and ibuprofen daily for arthritis"],
        ["tender in the upper abdomen, pale, pulse 100", "melaena on rectal examination"],
        ["Stool antigen for Helicobacter pylori positive.",
         "Gastroscopy: a 12 mm punched-out lesion with a flat base on the lesser curve; biopsies benign."]),
    "gastroesophageal reflux disease": (
        ["a burning behind my breastbone after big meals and when I lie down",
         "I wake up with bitter fluid in my mouth and I've had a cough for months"],
        ["obese (104 kg) with late evening meals", "several coffees a day and wine with dinner"],
        ["an unremarkable exam apart from central adiposity"],
        ["ECG and troponin normal; the symptoms settle fully on 4 weeks of omeprazole.",
         "Ambulatory pH study: acid exposure 9% of the time, with symptoms matching the drops in pH."]),
    "carbon monoxide poisoning": (
        ["the whole family woke up with thumping heads and feeling sick, even the children",
         "my head pounds and I feel muddled in the house but I'm fine at the office"],
        ["a boiler that has not been serviced in years", "a generator running in the garage during a power cut"],
        ["sats 100% on the probe despite confusion", "no focal neurology and a pink complexion"],
        ["Carboxyhaemoglobin 28% on a blood gas.", "Venous blood gas: carboxyhaemoglobin 22%, lactate 3.1."]),
    "Lyme disease": (
        ["a red patch on my thigh that keeps getting bigger with a clear middle, and I ache all over, 10 days after "
         "camping",
         "half my face has gone droopy and my joints ache; I was trekking in the woods last month"],
        ["a tick removed from behind the knee after a walk in New England woods",
         "daily dog walks in wooded parkland in Wisconsin"],
        ["a 15 cm annular erythema with central clearing on the thigh",
         "a lower motor neurone seventh nerve palsy with brow weakness"],
        ["Spirochaete serology (enzyme immunoassay plus Western blot) positive."]),
    "infective endocarditis": (
        ["I've had fevers and drenching sweats for 3 weeks and I'm exhausted",
         "the GP heard something new with my heart and I keep getting temperatures"],
        ["injects drugs", "a replaced aortic valve and a tooth extraction 6 weeks ago"],
        ["a fresh pansystolic murmur, splinter haemorrhages and Janeway lesions",
         "temp 38.9, Osler nodes and Roth spots"],
        ["Blood cultures x3 grow Streptococcus mitis; TOE shows a 12 mm oscillating mass on a mitral leaflet.",
         "Staphylococcus aureus in every blood culture bottle; echo shows a vegetation on a tricuspid leaflet."]),
    "pericarditis": (
        ["a sharp pain in the middle of my chest that's worse lying back and better leaning forward",
         "a stabbing chest pain when I breathe in, since a cold last week"],
        ["a sore throat and cold 10 days ago", "fit and well, never smoked"],
        ["a to-and-fro leathery sound at the left sternal edge on leaning forward"],
        ["ECG: widespread concave elevation of the J point with PR-segment depression; troponin normal; a small "
         "effusion on echo."]),
    "hyperosmolar hyperglycemic state": (
        ["I've been so thirsty and weeing all the time, and my daughter says I'm muddled",
         "my son found me drowsy on the floor, I hadn't been drinking much"],
        ["type 2 diabetes on metformin and a recent chest infection", "in residential care and drinking very little"],
        ["profoundly dry, BP 90/55, no Kussmaul breathing", "GCS 12, sunken eyes and a normal breathing pattern"],
        ["Glucose 52 mmol/L, calculated osmolarity 375 mOsm/L, pH 7.36, beta-hydroxybutyrate 0.6 mmol/L.",
         "Glucose 980 mg/dL, tonicity 355 mOsm/kg, bicarbonate 22 and urine acetone negative."]),
    "alcohol withdrawal": (
        ["I'm shaking, sweating and I can see spiders on the ceiling",
         "I had a fit at home the day after I stopped drinking"],
        ["a litre of vodka a day for years", "admitted 2 days ago after a fall and dry since then"],
        ["a coarse tremor, pulse 125, temp 38.0 and disorientation", "sweating and restlessness with BP 175/100"],
        ["Breathalyser reads 0.00; CIWA-Ar 30; head CT normal.",
         "Blood ethanol undetectable, GGT 420, MCV 104; head CT normal."]),
    "benign paroxysmal positional vertigo": (
        ["everything whirls for a few seconds when I roll over in bed",
         "the world whirls when I tip my head back to hang the washing"],
        ["a minor head injury a month ago", "ears otherwise fine, no tinnitus"],
        ["a right Dix-Hallpike test that triggers torsional upbeating nystagmus after a few seconds, fading within a "
         "minute", "intact cranial nerves and unremarkable Rinne and Weber tests"],
        ["Symptoms stop after a canalith repositioning manoeuvre."]),
}
SHIFTED_POOLS = [Pools(dx.name, dx.ages, dx.sexes, *map(list, SHIFTED_FINDINGS[dx.name])) for dx in VIGNETTE_POOLS]

SHIFTED_BACKGROUND = [
    "works as a postal worker", "keeps bees", "a cat at home", "night shifts in a warehouse",
    "a recent house move", "short-sighted, wears contact lenses", "an old football injury to the left ankle",
    "grommets as a child", "sings in a choir", "drinks green tea", "cod liver oil capsules", "a bunion operation",
    "plays five-a-side football", "a dental crown fitted last month",
]
SHIFTED_INCIDENTAL = ["a tattoo on the right forearm", "bitten fingernails", "mild hallux valgus",
                      "a small lipoma on the back", "wax in both ears", "a few spider veins on the thighs"]
SHIFTED_PRIOR = ["Records from another hospital ({n} years ago, recovered): {test}",
                 "Historic result ({n} yrs ago, fully resolved): {test}"]
# clinicians' shorthand that train never uses
SHIFTED_ABBREVIATIONS = [(r"\bwith\b", "w/"), (r"\bpatient\b", "pt"), (r"\bhistory\b", "hx"),
                         (r"\btemperature\b", "temp"), (r"\bexamination\b", "exam")]


def write_shifted_vignette(rng: random.Random, dx: Pools) -> str:
    age, sex = person(rng, dx)
    noun = ("boy" if sex == "M" else "girl") if age < 18 else ("man" if sex == "M" else "woman")
    words = f'"{rng.choice(dx.complaints)}"'
    history = rng.choice(dx.history)
    background = "; ".join(rng.sample(SHIFTED_BACKGROUND, rng.randint(1, 2)))
    exam = rng.sample(dx.exam, rng.randint(1, min(2, len(dx.exam))))
    if rng.random() < 0.4:
        exam.insert(rng.randint(0, len(exam)), rng.choice(SHIFTED_INCIDENTAL))
    exam_text, test = "; ".join(exam), rng.choice(dx.tests)
    style = rng.randrange(4)
    if style == 0:  # terse ED triage note
        arrival = rng.choice(["by ambulance", "walk-in", "brought by family"])
        return (f"ED triage. {age}{sex}, {arrival}. Presenting complaint (patient's words): {words}. "
                f"PMHx: {history}; {background}. Obs/exam: {exam_text}. Results: {test}")
    if style == 1:  # referral letter
        return (f"Dear colleague, I would be grateful if you would see this {age}-year-old {noun}, who tells me: "
                f"{words}. Relevant history: {history}. Otherwise: {background}. On examination I found {exam_text}. "
                f"{test} Many thanks.")
    if style == 2:  # the patient's own account, retold
        pronoun = "his" if sex == "M" else "her"
        return (f"In {pronoun} own words: {words}. The patient is {age}. History: {history}. Other background: "
                f"{background}. We found {exam_text}. {test}")
    return (f"Handover (SBAR). S: {age}{sex} saying {words}. B: {history}; {background}. A: {exam_text}. "
            f"R: please review; result back: {test}")


def add_shifted_prior(rng: random.Random, text: str, dx: Pools) -> str:
    """Another disease's key result from years ago (in the shifted wording), a distractor to discount."""
    other = rng.choice([d for d in SHIFTED_POOLS if d.name != dx.name])
    line = rng.choice(SHIFTED_PRIOR).format(n=rng.randint(2, 15), test=rng.choice(other.tests)).rstrip(".")
    parts = text.split(". ")
    parts.insert(rng.randint(1, max(1, len(parts) - 1)), line)
    return ". ".join(parts)


def shifted_example(rng: random.Random, dx: Pools) -> dict:
    text = write_shifted_vignette(rng, dx)
    if rng.random() < 0.5:
        text = add_shifted_prior(rng, text, dx)
    if rng.random() < 0.3:
        for pattern, short in SHIFTED_ABBREVIATIONS:
            text = re.sub(pattern, short, text)
    return {"input": text, "target": dx.name}
