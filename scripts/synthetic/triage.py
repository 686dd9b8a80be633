"""Synthetic patient portal messages for triage.

A message core written for its (personnel, urgency) cell, with slots filled in, greetings and
sign-offs, rambling context, negated or past red flags, typos and lower case. About 30% of
messages are urgent; admin requests never carry a red flag. Test messages are written from
message cores never used in training (``split_cores``), so a model that only memorised
training phrasings does not score well.
"""

from __future__ import annotations

import random

from medtune.tasks import TASKS

PERSONNEL = TASKS["triage"].labels["personnel"]

ID_PREFIX = "tr"


MEDS = ["lisinopril", "metformin", "atorvastatin", "levothyroxine", "sertraline", "amlodipine", "omeprazole",
        "albuterol inhaler", "gabapentin", "losartan", "montelukast", "escitalopram"]
CRITICAL_MEDS = ["insulin", "Lantus", "Eliquis", "apixaban", "warfarin", "Xarelto", "insulin pens",
                 "Keppra (seizure med)", "tacrolimus (transplant med)"]
SLOTS = {
    "med": MEDS,
    "critical": CRITICAL_MEDS,
    "otc": ["ibuprofen", "Advil", "Benadryl", "Tylenol", "Sudafed", "melatonin", "St John's wort", "Pepto-Bismol"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the 14th", "next week"],
    "n": ["2", "3", "4", "5"],
    "lbs": ["12", "15", "18", "20", "25"],
    "doctor": ["Dr. Lee", "Dr. Alvarez", "Dr. Patel", "Dr. Brooks", "Dr. Kim", "Dr. Osei"],
    "form": ["FMLA paperwork", "a disability form", "my kid's school sports physical form", "a DMV medical form",
             "a jury duty excuse letter", "my life insurance medical form"],
    "finding": ["mild degenerative disc disease at L4-L5", "a 6 mm nodule in the right lower lobe",
                "nonspecific white matter hyperintensities", "hepatic steatosis", "a 2 cm simple renal cyst",
                "a small thyroid nodule", "mild left ventricular hypertrophy"],
    "lab": ["A1c came back 8.9", "LDL came back 190", "TSH is 0.1", "PSA went from 2.1 to 4.8",
            "ferritin is 6", "ALT is 112", "vitamin D is 14", "eGFR dropped to 48"],
    "bp": ["138/86, 142/88, 135/84", "128/80 and 131/79", "145/90 a couple of times", "118/76 every morning"],
    "sugar": ["130-150", "110-125", "160s", "95-140"],
    "relative": ["husband", "wife", "mom", "dad", "partner", "son"],
    "kid_age": ["6", "8", "4", "11"],
    "infant_age": ["5-week-old", "2-month-old", "6-week-old", "10-week-old"],
}

# (personnel, urgency) -> message cores
CORES = {
    ("physician", "non-urgent"): [
        "I saw my MRI report in the portal and it says {finding}. What does that mean and do I need to do anything about it?",
        "My {lab}. Should we change my treatment?",
        "I've lost about {lbs} lbs over the last {n} months without trying and I've been waking up sweaty at night.",
        "My knee swelling keeps getting worse this month even with physical therapy. Do I need imaging or a different treatment?",
        "Food has been getting stuck when I swallow for about {n} months now and it's getting worse.",
        "I've had a dry cough ever since I started {med}. Can we switch me to something else?",
        "I've been exhausted for {n} months and my hair is falling out. Could this be my thyroid? Should I be tested?",
        "My biopsy result posted and it says tubular adenoma. Is that cancer? What happens next?",
        "I was told I have prediabetes. Should I start a medication or is diet enough?",
        "I don't need a refill, I want to know if I should stop {med} because I've had a rash on my arms since starting it.",
        "The CT report mentions {finding}. Is that related to the pain I've been having?",
        "My numbness in both feet is spreading up my legs over the last few weeks.",
        "Can we talk about changing my depression treatment? The {med} isn't helping after {n} months.",
    ],
    ("physician", "urgent"): [
        "I've had chest pain for the last hour that goes into my left arm and I'm sweating a lot.",
        "My {relative} has a droopy face on one side and slurred speech since about 20 minutes ago.",
        "I'm getting more and more short of breath, I can barely finish a sentence right now.",
        "I've been having thoughts of ending my life and I don't feel safe tonight.",
        "I just threw up what looks like blood, a lot of it, and I feel faint.",
        "I got the worst headache of my life about an hour ago, it came on suddenly and I keep vomiting.",
        "My calf has been swollen for days and now my chest hurts when I breathe in and I'm short of breath.",
        "Chest pressure and my heart is racing since this morning, it won't go away when I rest.",
        "My {relative} suddenly can't move the right arm and is confused.",
        "I cut my hand badly on a saw and it won't stop bleeding even with pressure.",
    ],
    ("nurse", "non-urgent"): [
        "I've had a sore throat and runny nose for {n} days. What can I take for it?",
        "The edges of my incision from last week's surgery look a little pink. How should I clean it?",
        "Is it ok to get the flu shot and the COVID booster on the same day?",
        "My blood pressure readings this week were {bp}. Is that ok or should I do something?",
        "My morning blood sugars have been {sugar}. Should I keep logging them?",
        "My {kid_age} year old has a temp of 100.4 but is eating and playing normally. What should we do?",
        "How do I change the dressing on my leg wound, and how often?",
        "I've had mild diarrhea for 2 days but I'm keeping fluids down. Anything I should do?",
        "My arm is really sore where I got the tetanus shot yesterday. Is that normal?",
        "When is my daughter due for her next round of vaccines?",
        "My ankle is still a bit swollen {n} days after I rolled it. Should I keep icing it?",
        "My home pulse ox reads 96-97%. Is that normal?",
        "There is a little clear drainage from my stitches. When do they come out?",
    ],
    ("nurse", "urgent"): [
        "My {infant_age} baby has a temperature of 101.3 and isn't feeding well.",
        "My surgical wound started bleeding a lot and has soaked through {n} dressings in the last half hour.",
        "I got my vaccine about 15 minutes ago and now my lips are swelling and my throat feels tight.",
        "My pulse oximeter says 86% and I'm struggling to catch my breath.",
        "My {infant_age} has a fever of 100.9 and is very sleepy and hard to wake.",
        "My drain site is gushing blood and I can't get it to stop.",
        "After the allergy shot my whole body broke out in hives and my tongue feels swollen.",
    ],
    ("pharmacist", "non-urgent"): [
        "Can I get a refill on my {med}? I have about a week left.",
        "Is it safe to take {otc} with my {med}?",
        "I forgot my {med} this morning. Should I take it now or just wait until tomorrow?",
        "My insurance says they won't cover {med} anymore. Is there a covered alternative?",
        "Should I take my {med} with food or on an empty stomach?",
        "Can I take {otc} while I'm on {med}? I have a cold.",
        "The pharmacy gave me a different looking pill for my {med}. Is it the same medicine?",
        "How many hours apart should I space my {med} and my calcium supplement?",
        "I need a 90 day supply of {med} sent in for mail order please.",
        "Can I get a refill on my {critical}? I still have about 2 weeks left.",
        "Is it ok to take {otc} with my {critical}? No bleeding or anything, just a headache.",
        "My insurance wants a prior authorization for my {med}. What do I do?",
    ],
    ("pharmacist", "urgent"): [
        "I just realized I'm completely out of my {critical} and I have no doses left for tonight.",
        "I ran out of my {critical} this morning and the pharmacy says they need a new prescription.",
        "The pharmacy can't fill my {critical} until next week and I took my last dose today.",
        "I'm traveling and left my {critical} at home, I'm due for my next dose today.",
    ],
    ("admin", "non-urgent"): [
        "I need to reschedule my appointment on {day} to later in the week.",
        "I got a bill for my visit but I thought my insurance covered it. Can someone look into it?",
        "Can you fill out {form} for me?",
        "Please send my records to my new doctor's office, I'm moving next month.",
        "How do I get a copy of my vaccination record for work?",
        "I need a referral number for my insurance for the dermatology appointment.",
        "Can I switch my primary care to {doctor}?",
        "I was charged twice for the same lab visit, can you fix that?",
        "Could you move my {day} appointment to a telehealth visit?",
        "I need a letter saying I was seen on {day} for my employer.",
        "Can I book my annual physical? I'd prefer mornings.",
        "I need to cancel my follow-up about my {med} dose, I'll call to rebook.",
    ],
}

URGENT_RATE = {"physician": 0.5, "nurse": 0.4, "pharmacist": 0.3, "admin": 0.0}  # ~30% overall

GREETINGS = ["", "Hi,", "Hello,", "Good morning,", "Hi Dr. Lee's office,", "To whom it may concern,", "Hey",
             "Hi there, hope you're well.", "Hello nurse,"]
SIGNOFFS = ["", "Thanks", "Thank you!", "Thanks so much, Maria", "- John", "Sincerely, Linda Park", "thx",
            "Please call me back.", "Sent from my iPhone"]
CONTEXT = [
    "I have diabetes and high blood pressure.", "I'm on {med} and {med2}.", "My last visit was in March.",
    "Sorry for the long message.", "My daughter helps me with this portal.", "I work nights so messages are best.",
    "I saw {doctor} last time.", "I'm 67 if that matters.", "I tried calling but the line was busy.",
    "I had my knee replaced two years ago.", "This is my first time using this app.",
    "I'm allergic to penicillin.", "My insurance changed in January.",
]
# Red-flag words in a negated, past or hypothetical sentence: they do not make a message urgent.
NEGATED_RED_FLAGS = ["No chest pain or trouble breathing.", "No fever.", "I'm not bleeding or anything.",
                     "No shortness of breath.", "Not an emergency, just wondering.", "I feel fine otherwise.",
                     "I had chest pain last year but the stress test was normal and it never came back.",
                     "No SOB, no CP.", "The bleeding stopped on its own two weeks ago.",
                     "My breathing is fine, no tightness in my chest.",
                     "What should I watch for in case I ever get chest pain?",
                     "My face and speech are normal, my wife was just worried.",
                     "No swelling of lips or throat, just itchy.", "No thoughts of harming myself, just feeling low."]


def fill(template: str, rng: random.Random) -> str:
    values = {key: rng.choice(options) for key, options in SLOTS.items()}
    values["med2"] = rng.choice([m for m in MEDS if m != values["med"]])
    return template.format(**values)


def add_typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) < 5 or not w.isalpha():
            continue
        j = rng.randrange(1, len(w) - 1)
        words[i] = rng.choice([w[:j] + w[j + 1] + w[j] + w[j + 2:], w[:j] + w[j + 1:], w[:j] + w[j] + w[j:]])
    return " ".join(words)


def split_cores(split: str) -> dict[tuple[str, str], list[str]]:
    """Every 4th message core is written only into the test split, the rest only into train:
    test messages say things in ways training never showed, as a clinic's new messages do."""
    return {cell: [core for i, core in enumerate(cores) if (i % 4 == 0) == (split == "test")]
            for cell, cores in CORES.items()}


def write_message(rng: random.Random, personnel: str, urgency: str, cores=None) -> str:
    parts = [rng.choice(GREETINGS), fill(rng.choice((cores or CORES)[(personnel, urgency)]), rng)]
    for context in rng.sample(CONTEXT, rng.choice([0, 0, 1, 1, 2, 3])):  # some messages ramble
        parts.insert(rng.randint(1, len(parts)), fill(context, rng))
    if urgency == "non-urgent" and personnel != "admin" and rng.random() < 0.3:
        parts.append(rng.choice(NEGATED_RED_FLAGS))
    if urgency == "urgent" and rng.random() < 0.3:
        parts.append(rng.choice(["What should I do?", "Please help.", "Is this serious?", "Do I need to come in?"]))
    parts.append(rng.choice(SIGNOFFS))
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.3:
        text = add_typos(text, rng)
    if rng.random() < 0.15:
        text = text.lower()
    return text


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n messages, personnel in turn, written from the ``split``'s message cores."""
    cores = split_cores(split)
    examples = []
    for i in range(n):
        personnel = PERSONNEL[i % len(PERSONNEL)]
        urgency = "urgent" if rng.random() < URGENT_RATE[personnel] else "non-urgent"
        examples.append({"input": write_message(rng, personnel, urgency, cores), "personnel": personnel,
                         "urgency": urgency})
    rng.shuffle(examples)
    return examples
