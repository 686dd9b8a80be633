"""Synthetic patient portal messages for triage.

A message core written for its (personnel, urgency) cell, with slots filled in, greetings and
sign-offs, rambling context, negated or past red flags, typos and lower case. About 30% of
messages are urgent; admin requests never carry a red flag. Test messages are written from
message cores never used in training (``split_cores``), so a model that only memorised
training phrasings does not score well. ``split="shifted"`` writes messages from separate pools: other
voices (carers writing for a parent or child, terse texting, formal letters), phrasings, medicines,
greetings and asides that train and test never use.
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




# ---------------------------------------------------------------- shifted split
# Pools that only split="shifted" draws from: other voices (a carer writing for a parent or child, terse
# texting, formal letters), other phrasings of the same requests and red flags, other medicines,
# greetings, sign-offs and asides. The personnel and urgency rules are the same as train's.

SHIFTED_SLOTS = {
    "med": ["metoprolol", "simvastatin", "furosemide", "hydrochlorothiazide", "pantoprazole", "citalopram",
            "tamsulosin", "allopurinol", "pregabalin", "ramipril"],
    "critical": ["insulin glargine", "Humalog", "Coumadin", "rivaroxaban", "Pradaxa (blood thinner)",
                 "levetiracetam (for seizures)", "mycophenolate (transplant med)", "enoxaparin injections"],
    "thinner": ["Coumadin", "rivaroxaban", "Pradaxa", "enoxaparin injections"],
    "otc": ["cough syrup", "naproxen", "Claritin", "Imodium", "a decongestant nasal spray", "turmeric capsules"],
    "day": ["the 3rd", "Thursday afternoon", "the 22nd", "next Monday"],
    "n": ["2", "3", "6"],
    "doctor": ["Dr. Nakamura", "Dr. Fischer", "Dr. Mensah", "Dr. Rossi"],
    "form": ["my gym membership health form", "a travel insurance medical form", "my pilot's medical paperwork",
             "a housing support letter"],
    "finding": ["a 4 mm gallbladder polyp", "mild emphysematous changes", "a bone island in the pelvis",
                "a small hiatal hernia", "diverticulosis without inflammation"],
    "lab": ["cholesterol is 7.9", "hemoglobin is 10.1", "platelets are 520", "uric acid is 9.2",
            "calcium is 10.9", "B12 is 150"],
    "bp": ["150/95 most mornings", "between 126/78 and 134/82", "around 160/100 twice", "122/74 daily"],
    "sugar": ["around 7-8 mmol", "120s-140s fasting", "mostly under 150"],
    "parent_age": ["79", "84", "88", "91"],
    "kid_age": ["3", "5", "7", "10"],
    "infant_age": ["4-week-old", "7-week-old", "8-week-old", "11-week-old"],
}

SHIFTED_CORES = {
    ("physician", "non-urgent"): [
        "Writing for my father ({parent_age}). He has become more forgetful over the past {n} months, losing his keys "
        "and repeating questions. Could the doctor assess him?",
        "bloods came back, {lab}. is that bad? do i need different tablets",
        "I would be grateful if the doctor could explain the finding of {finding} on my recent scan and "
        "whether further investigation is warranted.",
        "Mum's ankles have swollen more each week since her {med} dose went up. Should her medication be changed?",
        "seen a bit of bright red blood on the tissue on and off for {n} weeks, no pain. pls advise",
        "I am writing on behalf of my husband, whose hand tremor has slowly worsened since the spring. We would like "
        "a medical opinion on whether he needs treatment.",
        "I'd like to discuss stopping {med} altogether, I've felt dizzy ever since the dose was increased.",
        "lump in my neck for {n} wks, not going down, doesnt hurt. should someone look at it",
    ],
    ("physician", "urgent"): [
        "Mum ({parent_age}) suddenly can't lift her left arm and her words are muddled, it started 15 minutes ago.",
        "crushing chest pain 30 min, sweaty n feel sick. what do i do",
        "I am writing because my husband has become severely breathless at rest this evening and his lips look blue.",
        "Dad keeps saying he wants to end it all and he has been giving his things away. I'm scared to leave him "
        "alone tonight.",
        "gasping for air even sitting still, getting worse past hour",
        "My wife fainted and is now vomiting bright red blood.",
        "nosebleed 40 min wont stop, on {thinner}, soaked 2 towels",
        "Please forgive a message rather than a call: I have had tight central chest pain spreading to my jaw for "
        "the last 45 minutes.",
    ],
    ("nurse", "non-urgent"): [
        "stitches itchy, is that normal?? healing fine otherwise",
        "Dad's home BP machine has been reading {bp} this week. Is that in range?",
        "Could you please advise whether my son should have the HPV jab at his next check-up? He turns 11 soon.",
        "sugars {sugar} all week, just fyi. keep checking?",
        "Mum has a small skin tear on her shin from the car door. How should we dress it?",
        "cold for 3 days, stuffy nose and sore throat, whats best to take",
        "I would like to know how long I should wait after my shingles jab before having the flu jab.",
        "my {kid_age} yr old was 38.2 this morning but is drinking and playing as usual. anything to do?",
    ],
    ("nurse", "urgent"): [
        "Our {infant_age} daughter feels very hot, 38.6 on the thermometer, and won't take her bottle.",
        "our {infant_age} has a temp of 38.5, floppy and not feeding",
        "had my flu jab 20 mins ago, now my throat feels tight and im covered in itchy welts",
        "I am writing to report that the incision from my operation has opened and is bleeding heavily through "
        "the dressings.",
        "Dad's home oxygen reading is 84% and he is gasping for air.",
        "my c-section wound is pouring blood since I got out of the shower",
    ],
    ("pharmacist", "non-urgent"): [
        "{med} repeat script pls, about 10 days of tablets left",
        "I would be grateful if you could confirm whether {otc} interacts with my {med}.",
        "Mum takes {med} every day; can she have {otc} for her cold?",
        "which is better, taking {med} in the morning or at night?",
        "my plan stopped covering {med}. any cheaper option?",
        "I missed two doses of {med} while on holiday. Should I double up?",
        "Please send my next {critical} script to the mail-order chemist; I still have a month's supply.",
        "can i split my {med} tablets in half?",
    ],
    ("pharmacist", "urgent"): [
        "no {critical} left for tonights dose!! chemist shut",
        "Dad used his last {critical} this morning and the chemist says the script has lapsed. He needs his dose this "
        "evening.",
        "I regret to say I used my final dose of {critical} this morning and my repeat prescription has not been "
        "authorised.",
        "Lost my bag with all my {critical} in it on the train, next dose due in 2 hours.",
    ],
    ("admin", "non-urgent"): [
        "need to move my appt on {day}, anything thurs?",
        "I am writing to request copies of my notes for my solicitor.",
        "I'm my mother's carer. Can I be added as her contact so I can book her appointments?",
        "got an invoice for a visit insurance should cover, pls check",
        "pls fax {form} to my work",
        "Kindly update my address and telephone number on file.",
        "Can Dad's annual check be on a Tuesday? That's when I can drive him.",
        "I'd like to register my newborn with the practice.",
        "is there parking at the new clinic building?",
    ],
}

# Greetings, sign-offs and asides that fit any voice (a carer's message or the patient's own).
SHIFTED_GREETINGS = ["", "Dear Sir or Madam,", "Good afternoon,", "hiya", "To the practice team,", "Morning all,",
                     "Hello again,"]
SHIFTED_SIGNOFFS = ["", "Kind regards, R. Whitfield", "cheers", "ty", "Yours faithfully, D. Okoro", "Best wishes",
                    "Many thanks in advance.", "(sent from the family account)"]
SHIFTED_CONTEXT = [
    "We have been with this practice for years.", "Current meds: {med} and {med2}.",
    "Our phone number has changed, see the profile.", "We moved here in the summer.",
    "English is my second language, sorry for mistakes.", "Usually seen by {doctor}.",
]
# Red-flag words that are negated, past or hypothetical: they do not make a message urgent.
SHIFTED_NEGATED = ["No breathing problems and no chest pains.", "Not bleeding at the moment.",
                   "It is not an emergency.", "He is alert and talking normally.", "Denies any chest discomfort.",
                   "Hasn't had a temperature.", "No rash or swelling in the mouth.",
                   "She is not having any dark thoughts, just tired.",
                   "The chest pain I had in 2019 turned out to be muscular."]
SHIFTED_URGENT_ENDINGS = ["Should we go to A&E?", "Please advise asap.", "Is this an emergency?"]


CHILD_WORDS = ["week-old", "yr old", "baby", "son ", "newborn"]  # a child's message takes no adult medication list


def fill_shifted(template: str, rng: random.Random) -> str:
    values = {key: rng.choice(options) for key, options in SHIFTED_SLOTS.items()}
    values["med2"] = rng.choice([m for m in SHIFTED_SLOTS["med"] if m != values["med"]])
    return template.format(**values)


def texting(text: str) -> str:
    """Texting register: lower case and the usual contractions."""
    for long, short in ((" you ", " u "), ("please", "pls"), (" are ", " r "), (" and ", " & "), ("thanks", "thx")):
        text = text.replace(long, short)
    return text.lower()


def write_shifted_message(rng: random.Random, personnel: str, urgency: str) -> str:
    core = fill_shifted(rng.choice(SHIFTED_CORES[(personnel, urgency)]), rng)
    parts = [rng.choice(SHIFTED_GREETINGS), core]
    context = rng.choice(["", "", *SHIFTED_CONTEXT])
    if context and not (context.startswith("Current meds") and any(w in core for w in CHILD_WORDS)):
        parts.insert(rng.randint(1, len(parts)), fill_shifted(context, rng))
    if urgency == "non-urgent" and personnel != "admin" and rng.random() < 0.3:
        parts.append(rng.choice(SHIFTED_NEGATED))
    if urgency == "urgent" and rng.random() < 0.3:
        parts.append(rng.choice(SHIFTED_URGENT_ENDINGS))
    parts.append(rng.choice(SHIFTED_SIGNOFFS))
    text = " ".join(p for p in parts if p)
    return texting(text) if rng.random() < 0.2 else text


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n messages, personnel in turn, written from the ``split``'s message cores; ``split="shifted"``
    writes them from the shifted pools (other voices and phrasings) instead."""
    cores = split_cores(split)
    examples = []
    for i in range(n):
        personnel = PERSONNEL[i % len(PERSONNEL)]
        urgency = "urgent" if rng.random() < URGENT_RATE[personnel] else "non-urgent"
        if split == "shifted":
            text = write_shifted_message(rng, personnel, urgency)
        else:
            text = write_message(rng, personnel, urgency, cores)
        examples.append({"input": text, "personnel": personnel, "urgency": urgency})
    rng.shuffle(examples)
    return examples
