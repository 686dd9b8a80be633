"""Write vignettes.csv: synthetic emergency-department vignettes with their Emergency Severity Index level.

    python examples/esi/make_vignettes.py      # the same file every time (seeded)

ESI, as the spec's prompt states it: 1 = needs an immediate life-saving intervention; 2 = a high-risk
situation, new confusion or severe pain or distress; 3 = stable, but needs two or more resources (labs,
imaging, IV fluids or medicines, a specialist); 4 = needs one resource; 5 = needs none. No real patients.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

PRESENTATIONS = {
    "ESI-1": ["found unresponsive and not breathing, no pulse palpable",
              "in respiratory arrest after a heroin overdose, pinpoint pupils",
              "massive bleeding from a thigh wound, pale and barely responsive, BP 70/40",
              "seizing continuously for 15 minutes, not responding between seizures",
              "anaphylaxis after a bee sting with stridor and BP 68/40"],
    "ESI-2": ["crushing chest pain radiating to the left arm for 30 minutes, sweaty",
              "sudden weakness of the right arm and slurred speech starting an hour ago",
              "new confusion and fever, hard to wake, heart rate 124",
              "says he plans to kill himself tonight and has a gun at home",
              "severe abdominal pain rated 10/10 with vomiting blood"],
    "ESI-3": ["right lower abdominal pain since yesterday with fever, tender on exam",
              "shortness of breath and leg swelling for three days, known heart failure",
              "vomiting and diarrhea for two days, dizzy on standing, dry mouth",
              "fall from a ladder with hip pain, unable to bear weight",
              "kidney stone history with flank pain and blood in the urine"],
    "ESI-4": ["a 3 cm cut on the forearm from a kitchen knife, bleeding controlled",
              "twisted ankle playing football, swollen, walking with a limp",
              "painful urination for two days, no fever",
              "a fishhook stuck in the thumb",
              "earache for three days with mild fever"],
    "ESI-5": ["needs a refill of blood pressure medicine, ran out yesterday, feels well",
              "mild sore throat for a day, eating and drinking normally",
              "a small rash on the arm for a week, not itchy, no fever",
              "asks for a work note after a cold that has resolved",
              "a splinter in the finger, no redness"],
}
OPENINGS = ["{age}-year-old {sex} presenting with {what}.", "{sex_cap}, {age}, brought in: {what}.",
            "Triage note: {age} yo {sex}, {what}.", "{age}{s} here because of {what}."]
VITALS = ["HR {hr}, RR {rr}, SpO2 {spo2}%.", "Vitals: pulse {hr}, resp {rr}, sat {spo2}%.", ""]


def vignette(rng: random.Random, level: str) -> str:
    sex = rng.choice(["man", "woman"])
    text = rng.choice(OPENINGS).format(age=rng.randint(18, 90), sex=sex, sex_cap=sex.capitalize(),
                                       s=sex[0].upper(), what=rng.choice(PRESENTATIONS[level]))
    stable = level in ("ESI-4", "ESI-5")
    vitals = rng.choice(VITALS).format(hr=rng.randint(60, 95) if stable else rng.randint(95, 140),
                                       rr=rng.randint(12, 18) if stable else rng.randint(18, 32),
                                       spo2=rng.randint(96, 100) if stable else rng.randint(85, 97))
    return " ".join(part for part in (text, vitals) if part)


def main() -> None:
    rng = random.Random(20261207)
    rows, seen = [], set()
    while len(rows) < 300:
        level = f"ESI-{len(rows) % 5 + 1}"
        text = vignette(rng, level)
        if text not in seen:
            seen.add(text)
            rows.append({"case_id": f"esi-{len(rows) + 1:04d}", "vignette": text, "esi": level})
    rng.shuffle(rows)
    with open(Path(__file__).with_name("vignettes.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "vignette", "esi"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
