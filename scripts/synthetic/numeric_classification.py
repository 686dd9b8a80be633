"""Synthetic lab reports for numeric_classification (serum sodium).

A sodium value drawn in a label's range (half of them within 3 mmol/L of a threshold), written
in one of several units and spellings among distractor labs and vitals, in five layouts. The
target comes from the rule the task's prompt states (``label_for``). ``split="shifted"`` writes the
reports in lab-system layouts, spellings and units that train and test never use (same thresholds).
"""

from __future__ import annotations

import random

from medtune.tasks import TASKS

LABELS = TASKS["numeric_classification"].labels["label"]
LOW, HIGH = 135.0, 145.0  # the rule the task's prompt states


def label_for(value: float) -> str:
    """The rule's label for a sodium value (mmol/L)."""
    if value < LOW:
        return "hyponatremia"
    if value > HIGH:
        return "hypernatremia"
    return "normal"


ID_PREFIX = "nc"


def sodium_value(rng: random.Random, label: str) -> float:
    """A value in the label's range; half of them within 3 mmol/L of a threshold."""
    near = rng.random() < 0.5
    if label == "hyponatremia":
        value = rng.uniform(132, 134.49) if near else rng.uniform(112, 132)
    elif label == "hypernatremia":
        value = rng.uniform(145.51, 148) if near else rng.uniform(148, 168)
    else:
        value = rng.choice([rng.uniform(135, 137.9), rng.uniform(142, 145.49)]) if near else rng.uniform(135, 145.49)
    # most labs report whole numbers; some report one decimal
    value = round(value, 1) if rng.random() < 0.25 else float(round(value))
    return value


def show(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def sodium_text(rng: random.Random, value: float) -> str:
    unit = rng.choice(["mmol/L", "mEq/L", "mmol/l", "meq/L", ""])
    v = show(value)
    return rng.choice([
        f"Na {v} {unit}", f"sodium: {v} {unit}", f"Na+ = {v} {unit}", f"Sodium {v} {unit}",
        f"NA: {v} {unit}", f"Serum sodium {v} {unit}", f"Na+ {v}{unit and ' ' + unit}",
    ]).strip()


def distractor_labs(rng: random.Random) -> list[str]:
    return [
        rng.choice([f"K {rng.uniform(2.9, 5.9):.1f}", f"potassium: {rng.uniform(2.9, 5.9):.1f} mmol/L",
                    f"K+ = {rng.uniform(2.9, 5.9):.1f} mEq/L"]),
        rng.choice([f"Cl {rng.randint(92, 115)}", f"chloride: {rng.randint(92, 115)} mmol/L",
                    f"Cl- = {rng.randint(92, 115)} mEq/L"]),
        rng.choice([f"HCO3 {rng.randint(16, 32)}", f"bicarb {rng.randint(16, 32)}", f"CO2: {rng.randint(16, 32)} mmol/L"]),
        rng.choice([f"BUN {rng.randint(6, 60)}", f"urea {rng.uniform(2.5, 20):.1f} mmol/L", f"BUN: {rng.randint(6, 60)} mg/dL"]),
        rng.choice([f"Cr {rng.uniform(0.5, 3.5):.2f}", f"creatinine: {rng.uniform(0.5, 3.5):.1f} mg/dL",
                    f"creat {rng.randint(45, 300)} umol/L"]),
        rng.choice([f"Glu {rng.randint(60, 420)}", f"glucose: {rng.randint(60, 420)} mg/dL",
                    f"glucose {rng.uniform(3.5, 22):.1f} mmol/L"]),
    ]


def vitals(rng: random.Random) -> str:
    return (f"BP {rng.randint(90, 180)}/{rng.randint(50, 105)}, HR {rng.randint(50, 125)}, "
            f"T {rng.uniform(36.0, 38.9):.1f} C, SpO2 {rng.randint(88, 100)}%")


def write_report(rng: random.Random, value: float) -> str:
    labs = distractor_labs(rng)
    rng.shuffle(labs)
    labs = labs[: rng.randint(2, 6)]
    labs.insert(rng.randint(0, len(labs)), sodium_text(rng, value))
    style = rng.randrange(5)
    if style == 0:  # one-line panel
        return f"{rng.choice(['BMP', 'Chem 7', 'Basic metabolic panel', 'Renal panel'])}: " + ", ".join(labs)
    if style == 1:  # slash-separated, as pasted into notes
        return f"Labs {rng.choice(['today', 'this AM', 'on admission', '(06:00)'])}: " + " / ".join(labs)
    if style == 2:  # multi-line result list
        return "\n".join([rng.choice(["LAB RESULTS", "Results:", "Chemistry"]), *labs])
    if style == 3:  # a sentence inside a progress note
        context = rng.choice(["with CHF", "post-op day 2", "with pneumonia", "admitted for falls", "on HCTZ",
                              "with vomiting x2d"])
        return (f"{rng.randint(19, 95)}yo {rng.choice(['M', 'F'])} {context}. Vitals: {vitals(rng)}. "
                "Labs notable for " + ", ".join(labs[:-1]) + f" and {labs[-1]}.")
    return f"Vitals {vitals(rng)}\nChem: " + "; ".join(labs) + rng.choice(["", "\nRepeat BMP in AM.", "\nUA pending."])




# ---------------------------------------------------------------- shifted split
# Pools that only split="shifted" draws from: lab-system layouts (tabular with H/L flags and the
# 135-145 range, HL7 OBX segments, analyser printouts, cumulative reports with an older result,
# dictated narrative), other spellings of sodium and its units, and distractor analytes (urine
# sodium, osmolality, calcium, albumin) that train and test never show. The thresholds are the same.

SHIFTED_UNITS = ["mmol per litre", "MMOL/L", "mEq/l", "mmol/litre", "meq per L"]
SHIFTED_NAMES = ["SODIUM", "Sodium, serum", "S-Sodium", "Plasma sodium", "sNa", "Na (serum)"]


def flag(value: float) -> str:
    """The flag a lab system prints against the 135-145 range (H/L), blank when in range."""
    return "L" if value < LOW else "H" if value > HIGH else ""


def range_flag(result: str, ref: str) -> str:
    """H/L of another analyte against its printed range; blank without a range."""
    if not ref:
        return ""
    low, high = (float(x) for x in ref.split("-"))
    return "L" if float(result) < low else "H" if float(result) > high else ""


def osmolality(rng: random.Random, value: float) -> int:
    """Serum osmolality that agrees with the sodium (about 2 x Na + glucose and urea)."""
    return round(2 * value + rng.uniform(8, 20))


def shifted_others(rng: random.Random, value: float) -> list[tuple[str, str, str, str]]:
    """(name, result, unit, reference range) of other analytes, as the lab system lists them."""
    return [
        ("POTASSIUM", f"{rng.uniform(3.0, 5.8):.1f}", "mmol/L", "3.5-5.1"),
        ("CHLORIDE", f"{rng.randint(94, 112)}", "mmol/L", "98-107"),
        ("CALCIUM", f"{rng.uniform(1.9, 2.7):.2f}", "mmol/L", "2.15-2.55"),
        ("ALBUMIN", f"{rng.randint(26, 48)}", "g/L", "35-50"),
        ("OSMOLALITY", f"{osmolality(rng, value)}", "mOsm/kg", "275-295"),
        ("UREA NITROGEN", f"{rng.randint(7, 55)}", "mg/dL", "7-20"),
        ("MAGNESIUM", f"{rng.uniform(0.6, 1.1):.2f}", "mmol/L", "0.70-1.00"),
    ]


def tabular_report(rng: random.Random, value: float) -> str:
    rows = rng.sample(shifted_others(rng, value), rng.randint(2, 4))
    rows.insert(rng.randint(0, len(rows)), ("SODIUM", show(value), "mmol/L", "135-145"))
    lines = [f"{rng.choice(['CLINICAL CHEMISTRY', 'SERUM ELECTROLYTES', 'RENAL PROFILE'])}   "
             f"Specimen: serum   Collected {rng.randint(0, 23):02d}:{rng.choice(['05', '20', '40'])}",
             "TEST            RESULT  FLAG  UNITS    REF RANGE"]
    for name, result, unit, ref in rows:
        shown = flag(value) if name == "SODIUM" else range_flag(result, ref)
        lines.append(f"{name:<16}{result:<8}{shown:<6}{unit:<9}{ref}")
    return "\n".join(lines)


def hl7_report(rng: random.Random, value: float) -> str:
    segments = [("2951-2", "Sodium [Moles/volume] in Serum or Plasma", show(value), "mmol/L", "135-145", flag(value))]
    for code, name, result, unit, ref in rng.sample([
            ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", f"{rng.uniform(3.0, 5.8):.1f}", "mmol/L", "3.5-5.1"),
            ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", f"{rng.randint(94, 112)}", "mmol/L", "98-107"),
            ("2955-3", "Sodium [Moles/volume] in Urine", f"{rng.randint(10, 120)}", "mmol/L", ""),
            ("2692-2", "Osmolality of Serum or Plasma", f"{osmolality(rng, value)}", "mOsm/kg", "275-295")],
            rng.randint(1, 3)):
        segments.insert(rng.randint(0, len(segments)), (code, name, result, unit, ref, range_flag(result, ref)))
    return "\n".join(f"OBX|{i}|NM|{code}^{name}^LN||{result}|{unit}|{ref}|{shown}|||F"
                     for i, (code, name, result, unit, ref, shown) in enumerate(segments, start=1))


def analyser_printout(rng: random.Random, value: float) -> str:
    unit = rng.choice(SHIFTED_UNITS)
    parts = [f"{rng.choice(SHIFTED_NAMES)} .... {value:.1f} {unit} {flag(value)}".rstrip()]
    others = [f"iCa .... {rng.uniform(1.0, 1.35):.2f}", f"Osm (calc) .... {osmolality(rng, value)}",
              f"K .... {rng.uniform(3.0, 5.8):.2f}", f"Mg .... {rng.uniform(0.6, 1.1):.2f}",
              f"Lactate .... {rng.uniform(0.6, 4.5):.1f}"]
    for line in rng.sample(others, rng.randint(1, 3)):
        parts.insert(rng.randint(0, len(parts)), line)
    header = rng.choice(["ISE ANALYSER RUN #", "AUTOANALYSER BATCH ", "CHEM ANALYSER SAMPLE "]) + str(rng.randint(100, 999))
    return "\n".join([header, *parts, "-- end of run --"])


def cumulative_report(rng: random.Random, value: float) -> str:
    """The current sodium next to an older one from another day: the current column is the one to read."""
    older = round(rng.uniform(118, 166))
    unit = rng.choice(SHIFTED_UNITS)
    return "\n".join([
        "CUMULATIVE REPORT (most recent first)",
        f"Analyte        Today     {rng.randint(3, 30)} days ago",
        f"{rng.choice(SHIFTED_NAMES):<15}{show(value):<10}{older}   ({unit})",
        f"Albumin        {rng.randint(26, 48):<10}{rng.randint(26, 48)}   (g/L)",
        f"Calcium        {rng.uniform(1.9, 2.7):<10.2f}{rng.uniform(1.9, 2.7):.2f}   (mmol/L)",
    ])


def dictated_narrative(rng: random.Random, value: float) -> str:
    who = rng.choice(["her", "his", "the patient's"])
    when = rng.choice(["this morning", "on the repeat sample", "at 0600", "on arrival to the unit"])
    unit = rng.choice(SHIFTED_UNITS)
    extra = rng.choice([f"urine sodium {rng.randint(10, 120)} {unit}", f"serum osmolality {osmolality(rng, value)}",
                        f"corrected calcium {rng.uniform(1.9, 2.7):.2f}", f"albumin {rng.randint(26, 48)} g/L"])
    return (f"Telephoned result from the lab: {who} serum sodium came back at {show(value)} {unit} {when}; "
            f"{extra}. Reviewed with the team.")


SHIFTED_LAYOUTS = [tabular_report, hl7_report, analyser_printout, cumulative_report, dictated_narrative]


def write_shifted_report(rng: random.Random, value: float) -> str:
    return rng.choice(SHIFTED_LAYOUTS)(rng, value)


def generate_examples(rng: random.Random, n: int, split: str = "train") -> list[dict]:
    """n reports, labels in turn. Test reports differ from training ones by the draw; ``split="shifted"``
    writes them in the shifted layouts and spellings instead."""
    write = write_shifted_report if split == "shifted" else write_report
    examples = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        value = sodium_value(rng, label)
        examples.append({"input": write(rng, value), "target": label_for(value), "value": value})
    rng.shuffle(examples)
    return examples
