"""Synthetic clinical notes for text_classification (smoking status).

Each note states its date, a smoking statement written for its label (quit dates to resolve
against the note date, relapses, pack-years) and 0-3 distractors of different kinds (alcohol,
a smoking household, cannabis), in several layouts and shorthands.
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


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n notes, labels in turn; ``split`` is unused: test notes differ from training ones by the draw."""
    examples = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        examples.append({"input": write_note(rng, label), "target": label})
    rng.shuffle(examples)
    return examples
