"""Synthetic case vignettes for clinical_reasoning.

Vignettes are built from per-diagnosis pools of presenting complaints, history,
examination findings and one key test, plus unrelated background and findings
as distractors, in several sentence templates. Half the vignettes also quote
another disease's key result from a resolved episode years ago (a distractor
a clinician discounts); some use shorthand (SOB, HTN, c/o, PMH). Test vignettes
use phrasings held out of training (``split_pools``). No pool names a diagnosis
or any of its synonyms (tests/test_tasks.py checks the bundled vignettes).
"""

from __future__ import annotations

import random
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
    """n vignettes, diagnoses in turn, written from the ``split``'s share of the phrasings."""
    examples = []
    for i in range(n):
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
