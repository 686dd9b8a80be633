"""Synthetic clinical notes for text_classification (smoking status).

Each note states its date, a smoking statement written for its label (quit dates to resolve
against the note date, relapses, pack-years) and 0-3 distractors of different kinds (alcohol,
a smoking household, cannabis), in several layouts and shorthands. ``split="shifted"`` writes notes
from separate pools (SOAP, problem list, discharge summary, nursing intake, referral letter; spelled
dates; other abbreviations, negations and distractors) that train and test never use.
"""

from __future__ import annotations

import random
from datetime import date

from medtune.tasks import TASKS

LABELS = TASKS["text_classification"].labels["label"]

ID_PREFIX = "tc"


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def format_date(d: date, rng: random.Random) -> str:
    return rng.choice([
        f"Note date: {d.isoformat()}",
        f"Date of service: {d.month:02d}/{d.day:02d}/{d.year}",
        f"Visit date: {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
        f"Encounter {d.month}/{d.day}/{d.year}",
    ])


def months_before(d: date, months: int) -> tuple[int, int]:
    """(year, month) that lies ``months`` calendar months before ``d``."""
    index = d.year * 12 + (d.month - 1) - months
    return index // 12, index % 12 + 1


def pack_years(rng: random.Random) -> str:
    return rng.choice([f"{rng.randint(5, 60)} pack-years", f"{rng.randint(5, 60)} pk-yr hx", f"{rng.randint(5, 60)} PY"])


def amount(rng: random.Random) -> str:
    return rng.choice(["1 ppd", "1/2 ppd", "2 ppd", "~10 cigarettes/day", "half a pack a day", "about a pack a day",
                       "5-6 cigs daily", "1.5 ppd", "a pack every 2-3 days"])


def current_statement(rng: random.Random, note: date, age: int) -> str:
    months = rng.randint(1, 11)
    year, month = months_before(note, rng.randint(1, 11))
    return rng.choice([
        f"smokes {amount(rng)}",
        f"Tobacco: {amount(rng)} x {rng.randint(2, 40)} yrs, ongoing",
        f"current every day smoker, {pack_years(rng)}",
        f"pt is a smoker ({amount(rng)}), not ready to quit",
        f"still smoking {amount(rng)} despite counseling at last visit",
        f"cut down from 2 ppd to {rng.choice(['1 ppd', '1/2 ppd', '5 cigs/day'])}",
        "smokes a few cigarettes on weekends when out with friends",
        "smokes 1-2 cigars daily",
        "rolls his/her own cigarettes, about 15 a day",
        f"quit {months} mo ago, {pack_years(rng)} before that",
        f"quit smoking {rng.randint(1, 10)} wks ago with nicotine patch",
        f"stopped smoking {rng.randint(3, 20)} days ago after ED visit",
        f"quit cigarettes {months} months ago",
        f"quit smoking in {MONTHS[month - 1]} {year} ({pack_years(rng)})",
        f"quit for {rng.randint(2, 10)} yrs but relapsed {rng.randint(1, 8)} months ago, now {amount(rng)}",
        f"former smoker per chart, but reports restarting {rng.randint(2, 10)} wks ago",
        f"tobacco use: yes, {amount(rng)}",
        f"smokes {amount(rng)}, also uses an e-cigarette",
    ])


def former_statement(rng: random.Random, note: date, age: int) -> str:
    months = rng.randint(12, 40)
    year, month = months_before(note, rng.choice([13, 14, 18, 24, 30, 60, 100]))
    quit_age = rng.randint(18, age - 2)
    return rng.choice([
        f"quit {rng.randint(1, 30)} yrs ago",
        f"quit smoking {months} months ago",
        f"ex-smoker, {pack_years(rng)}, quit in {note.year - rng.randint(2, 30)}",
        f"smoked {amount(rng)} x {rng.randint(3, 30)} yrs, quit in {note.year - rng.randint(2, 25)}",
        f"remote tobacco hx, quit {rng.randint(5, 40)} years ago",
        f"quit smoking in {MONTHS[month - 1]} {year}",
        f"hasn't smoked since age {quit_age}",
        f"denies current tobacco use; smoked {amount(rng)} in his/her {rng.choice(['20s', 'teens', 'military years'])}",
        f"stopped cigarettes {months} mo ago after MI",
        f"former smoker ({pack_years(rng)}), quit {rng.randint(2, 25)} yrs ago",
        f"no tobacco since quitting at age {quit_age}",
        f"smoked in college, none since (quit {note.year - rng.randint(age - 22, age - 19)})",
        f"Tobacco: former, quit {rng.randint(2, 20)} yr ago",
    ])


def never_statement(rng: random.Random, note: date, age: int) -> str:
    return rng.choice([
        "denies tobacco",
        "never smoker",
        "no hx tobacco use",
        "Tobacco: never",
        "has never smoked",
        "lifelong non-smoker",
        "denies tobacco and illicit drugs",
        "no tobacco use ever",
        "denies cigarette smoking or smokeless tobacco",
        "never used tobacco products",
        "non-smoker",
        "denies cigarettes, cigars or vaping nicotine",
    ])


# Distractors by kind; a note takes at most one of each kind, so they never contradict each other.
DISTRACTORS = {
    "alcohol": ["EtOH: 2-3 beers on weekends", "denies EtOH", "drinks 1 glass of wine nightly", "social EtOH",
                "former heavy drinker, sober 5 yrs"],
    "household": ["husband smokes 1 ppd outside the house", "wife is a current smoker", "roommate smokes indoors",
                  "mother, a former smoker, has COPD", "father smoked and died of lung ca",
                  "grew up in a household of smokers", "lives with partner and 2 children"],
    "other substances": ["vapes cannabis on weekends", "occasional cannabis edibles", "denies IVDU",
                         "smokes marijuana occasionally", "uses nicotine-free vape for flavour only"],
    "life": ["second-hand smoke exposure at work as a bartender", "works as a bus driver", "exercises 3x/week",
             "retired firefighter"],
}

COMPLAINTS = [
    "cough x 3 days", "annual physical", "HTN follow-up", "L knee pain", "pre-op evaluation", "chest tightness",
    "DM2 follow-up", "URI symptoms", "fatigue", "low back pain", "dyspnea on exertion", "med refill",
    "abdominal pain", "headache x 1 wk", "rash on forearm",
]
HISTORY = ["HTN", "HLD", "DM2", "GERD", "OA", "asthma", "depression", "CAD s/p PCI", "hypothyroidism", "migraine"]

STATEMENTS = {"current smoker": current_statement, "former smoker": former_statement, "never smoker": never_statement}


def write_note(rng: random.Random, label: str) -> str:
    note = date(rng.randint(2023, 2026), rng.randint(1, 12), rng.randint(1, 28))
    age = rng.randint(24, 88)
    sex = rng.choice(["M", "F"])
    smoking = STATEMENTS[label](rng, note, age)
    smoking = smoking.replace("his/her", "his" if sex == "M" else "her")
    kinds = rng.sample(sorted(DISTRACTORS), rng.randint(0, 3))
    social = [smoking, *(rng.choice(DISTRACTORS[kind]) for kind in kinds)]
    rng.shuffle(social)
    pmh = ", ".join(rng.sample(HISTORY, rng.randint(1, 3)))
    opening = rng.choice([
        f"{age}{sex} c/o {rng.choice(COMPLAINTS)}.",
        f"{age} y/o {'male' if sex == 'M' else 'female'} presenting for {rng.choice(COMPLAINTS)}.",
        f"Pt is a {age}-year-old {'man' if sex == 'M' else 'woman'} seen today for {rng.choice(COMPLAINTS)}.",
        f"CC: {rng.choice(COMPLAINTS)}. {age} yo {sex}.",
    ])
    history = rng.choice([f"PMH: {pmh}.", f"Hx: {pmh}.", f"Past medical history significant for {pmh}.", ""])
    social_text = rng.choice([
        "SH: " + "; ".join(social) + ".",
        "Social history: " + ". ".join(s[0].upper() + s[1:] for s in social) + ".",
        "Social: " + ", ".join(social) + ".",
    ])
    lines = [format_date(note, rng), opening, history, social_text]
    if rng.random() < 0.4:
        lines.append(rng.choice(["ROS otherwise negative.", "Vitals stable.", "Plan: f/u 3 mo.",
                                 "Counseled on diet and exercise.", "A/P: see below."]))
    return "\n".join(line for line in lines if line)




# ---------------------------------------------------------------- shifted split
# Pools that only split="shifted" draws from: other date formats, layouts, abbreviations, negations
# and distractors than train and test use, so the split measures whether the 12-month rule (not the
# training wording) was learned. Quit dates stay well clear of the 12-month line (<= 10 or >= 14 months).

SHIFTED_NAMES = ["Adeyemi", "Brennan", "Castillo", "Dubois", "Eriksen", "Fujita", "Ivanova", "Moreau"]


def spelled_date(d: date, rng: random.Random) -> str:
    month = MONTHS[d.month - 1]
    return rng.choice([
        f"{month} {d.day}, {d.year}",
        f"{d.day} {month} {d.year}",
        f"{d.day:02d}-{month[:3].upper()}-{d.year}",
        f"{month[:3]}. {d.day}, {d.year}",
    ])


def month_year(year: int, month: int, rng: random.Random) -> str:
    return rng.choice([f"{MONTHS[month - 1][:3]} {year}", f"{month:02d}/{year}", f"{MONTHS[month - 1]} of {year}"])


def shifted_current(rng: random.Random, note: date, age: int) -> str:
    months = rng.randint(1, 10)
    year, month = months_before(note, months)
    return rng.choice([
        f"tob: + ({rng.choice(['1/2 pk/d', '1 pk/d', '10 cigs/d', '20 cigs/d'])})",
        f"active tobacco user, {rng.randint(8, 30)} cigarettes a day",
        "nicotine dependence, cigarettes, uncomplicated - ongoing",
        "continues to smoke; precontemplative re: cessation",
        f"lights up {rng.randint(3, 12)} cigs a day, more when stressed",
        "smokes a pipe most evenings",
        f"last cigarette this morning ({rng.randint(5, 25)}/day habit)",
        f"smoke-free only since {month_year(year, month, rng)}, using patches",
        f"gave up cigarettes {rng.randint(2, 9)} weeks ago",
        f"ex-smoker for {rng.randint(2, min(8, age - 18))} yrs but took it up again {rng.randint(1, 6)} mo ago",
        f"tobacco use disorder, {rng.randint(2, min(50, age - 16))} pack-yr, still smoking",
        f"roll-ups, about {rng.randint(10, 25)} daily",
        "cigarette smoker - cessation advice >3 min given today",
        f"stopped smoking {months} months back, on varenicline",
    ])


def shifted_former(rng: random.Random, note: date, age: int) -> str:
    # quit dates and pack-years fit the patient's age: smoking started no younger than about 14
    years = rng.randint(2, min(30, age - 16))
    year, month = months_before(note, rng.choice([14, 16, 20, 26, 36, 50, 80]))
    statements = [
        f"former tobacco user, abstinent since {note.year - rng.randint(2, min(20, age - 16))}",
        f"kicked the habit {years} years ago",
        f"smoke-free for {years} yrs",
        f"last cigarette {month_year(year, month, rng)}",
        f"nicotine dependence, in sustained remission (quit {note.year - rng.randint(2, min(20, age - 16))})",
        f"tob: ex ({rng.randint(2, min(60, age - 17))} pk-yrs), stopped {rng.randint(14, 40)} months back",
        f"stopped smoking at the age of {rng.randint(18, age - 3)}",
        f"quit cold turkey {years} years ago after a {rng.choice(['chest infection', 'heart scare', 'bad bronchitis'])}",
        f"gave up cigarettes {years} yrs ago, {rng.randint(1, max(1, min(40, age - years - 15)))} pack-yr hx",
    ]
    if age >= 45:  # a remote habit needs the years to have been remote
        statements.append(f"smoked in the army, none for the last {rng.randint(20, age - 25)} years")
    return rng.choice(statements)


def shifted_never(rng: random.Random, note: date, age: int) -> str:
    return rng.choice([
        "negative for tobacco",
        "never used tobacco in any form",
        "no history of cigarette, cigar or pipe smoking",
        "lifetime nonsmoker",
        "tob: never",
        "has not ever smoked",
        "abstains from tobacco, never started",
        "never-smoker per patient and family",
        "Smoking: none (never)",
        "no personal tobacco hx",
        "does not smoke and never has",
    ])


SHIFTED_STATEMENTS = {"current smoker": shifted_current, "former smoker": shifted_former, "never smoker": shifted_never}

SHIFTED_DISTRACTORS = {
    "alcohol": ["ETOH 1-2 glasses of wine with dinner", "drinks 3-4 beers a day", "teetotal", "alcohol: none",
                "binge drinks at weekends"],
    "household": ["spouse quit smoking last year", "daughter smokes on the balcony", "partner vapes nicotine",
                  "father was a heavy pipe smoker", "sister is a chain smoker"],
    "other substances": ["THC vape pen nightly", "CBD oil for back pain", "smokes weed at parties",
                         "past heroin use, on methadone for 6 yrs"],
    "exposures": ["smoke inhalation injury in a house fire (2019)", "works in a smokehouse curing fish",
                  "wood-burning stove at home", "retired coal miner", "welder by trade"],
}
# reasons for a visit: problems (any layout), check-ups (not a referral) and admissions (discharge summary)
SHIFTED_PROBLEMS = ["cough and wheeze", "dizziness", "palpitations", "sore throat", "foot pain", "insomnia",
                    "shoulder pain"]
SHIFTED_VISITS = ["pre-employment medical", "insurance medical", "follow-up of hypertension", "annual review",
                  "establishing care"]
SHIFTED_ADMISSIONS = ["chest infection", "fall at home", "elective knee replacement", "dehydration",
                      "chest pain, cardiac cause ruled out"]
SHIFTED_HISTORY = ["hypertension", "type 2 diabetes", "hyperlipidaemia", "reflux", "osteoporosis",
                   "atrial fibrillation", "CKD stage 3", "anxiety", "glaucoma", "psoriasis"]


def soap_note(when: str, age: int, sex: str, complaint: str, history: list[str], social: list[str],
              rng: random.Random) -> str:
    return "\n".join([
        f"Date seen: {when}",
        f"S: {age} yo {'man' if sex == 'M' else 'woman'} here for {complaint.lower()}. "
        f"Tob/EtOH/drugs: {'; '.join(social)}.",
        f"O: BP {rng.randint(104, 162)}/{rng.randint(60, 96)}, HR {rng.randint(56, 98)}, BMI {rng.randint(19, 38)}.",
        f"A/P: {', '.join(history)} - stable, continue current plan.",
    ])


def problem_list(when: str, age: int, sex: str, complaint: str, history: list[str], smoking: str,
                 others: dict[str, str]) -> str:
    items = [*history, f"Tobacco screening: {smoking}"]
    lines = [f"PROBLEM LIST (updated {when})", f"{age} {'male' if sex == 'M' else 'female'}, visit for {complaint}"]
    lines += [f"{i}. {item}" for i, item in enumerate(items, start=1)]
    if others:
        lines.append("Other social: " + "; ".join(others.values()))
    return "\n".join(lines)


def discharge_note(when: str, age: int, sex: str, complaint: str, history: list[str], social: list[str]) -> str:
    sentences = " ".join(s[0].upper() + s[1:] + "." for s in social)
    return "\n".join([
        "DISCHARGE SUMMARY",
        f"Discharge date: {when}",
        f"Patient: {age}-year-old {'male' if sex == 'M' else 'female'}. Reason for admission: {complaint}.",
        f"Past history: {', '.join(history)}.",
        f"Social history: {sentences}",
    ])


def intake_form(when: str, age: int, sex: str, complaint: str, smoking: str, others: dict[str, str]) -> str:
    labels = {"alcohol": "Alcohol", "household": "Household", "other substances": "Other substances",
              "exposures": "Occupation/exposures"}
    lines = [f"NURSING INTAKE - assessment date {when}", f"Age/sex: {age} / {'male' if sex == 'M' else 'female'}",
             f"Reason for visit: {complaint}", f"Tobacco/nicotine: {smoking}"]
    lines += [f"{labels[kind]}: {text}" for kind, text in others.items()]
    return "\n".join(lines)


def referral_letter(when: str, age: int, sex: str, complaint: str, history: list[str], social: list[str],
                    rng: random.Random) -> str:
    return "\n".join([
        f"Date of letter: {when}",
        f"Dear Dr {rng.choice(SHIFTED_NAMES)},",
        f"Thank you for seeing this {age}-year-old {'man' if sex == 'M' else 'woman'} with {complaint.lower()}. "
        f"Background of {', '.join(history)}. On social history: {'; '.join(social)}.",
        "Kind regards",
    ])


def write_shifted_note(rng: random.Random, label: str) -> str:
    note = date(rng.randint(2023, 2026), rng.randint(1, 12), rng.randint(1, 28))
    age = rng.randint(24, 88)
    sex = rng.choice(["M", "F"])
    smoking = SHIFTED_STATEMENTS[label](rng, note, age)
    kinds = rng.sample(sorted(SHIFTED_DISTRACTORS), rng.randint(0, 3))
    others = {kind: rng.choice([d for d in SHIFTED_DISTRACTORS[kind] if age >= 60 or "retired" not in d])
              for kind in kinds}
    social = [smoking, *others.values()]
    rng.shuffle(social)
    when, history = spelled_date(note, rng), rng.sample(SHIFTED_HISTORY, rng.randint(1, 3))
    layout = rng.randrange(5)
    reasons = {2: SHIFTED_ADMISSIONS, 4: SHIFTED_PROBLEMS}.get(layout, SHIFTED_PROBLEMS + SHIFTED_VISITS)
    complaint = rng.choice(reasons)
    if layout == 0:
        return soap_note(when, age, sex, complaint, history, social, rng)
    if layout == 1:
        return problem_list(when, age, sex, complaint, history, smoking, others)
    if layout == 2:
        return discharge_note(when, age, sex, complaint, history, social)
    if layout == 3:
        return intake_form(when, age, sex, complaint, smoking, others)
    return referral_letter(when, age, sex, complaint, history, social, rng)


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n notes, labels in turn. Test notes differ from training ones by the draw; ``split="shifted"``
    writes them from the shifted pools (other layouts and wording) instead."""
    write = write_shifted_note if split == "shifted" else write_note
    examples = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        examples.append({"input": write(rng, label), "target": label})
    rng.shuffle(examples)
    return examples
