"""One validation layer for the values in a user's records: what each canonical field may hold.

Every check returns ``(value, problem)``: the value in its canonical form, or a sentence saying what is
wrong with it, written for the person who will fix the file. The doctor reports the problem with the
file and row; nothing downstream ever sees a value that failed here.

* text (``input``, ``prompt``, ``chosen``, ``rejected``, a summary's ``target``): a string that is not
  blank, holds no NUL character and is valid Unicode;
* a label: text (or a whole number, written as its digits) that names one of the task's labels;
* an id: text or a whole number, unique in its file;
* a number (``value``): a finite number, or text that reads as one;
* key facts (``facts``): a list whose items are text, or lists of alternative wordings; or one text
  with the facts separated by ``;`` (CSV);
* a list of alternatives (a task's accepted answers): a list of texts, or one text separated by ``;``;
* any other field a task's prompt shows: text, or a number (shown as written).
"""

from __future__ import annotations

import math

Checked = tuple[object, "str | None"]


def kind_of(value) -> str:
    """How a JSON or Parquet value is named in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    return f"a {type(value).__name__}"


def text_problem(name: str, value: str, nul_ok: bool = False) -> str | None:
    if not value.strip():
        return f"empty {name!r}: every example needs a value here"
    if "\x00" in value and not nul_ok:
        return f"{name} contains a NUL character (\\x00); remove it (often a sign of a binary or UTF-16 file)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} is not valid Unicode text (it holds an unpaired surrogate code point)"
    return None


def check_text(name: str, value, nul_ok: bool = False) -> Checked:
    """``nul_ok``: a model's own output (a mined pair's answers), where a NUL is the model's, not a file's."""
    if not isinstance(value, str):
        return None, f"{name} must be text, got {kind_of(value)}"
    problem = text_problem(name, value, nul_ok)
    return (None, problem) if problem else (value.strip(), None)


def check_field(name: str, value) -> Checked:
    """A field a task's prompt or reference shows (other than ``input``): text, or a number shown as written."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"{name} {value!r} is not a finite number"
        return str(value), None
    return check_text(name, value)


def check_texts(name: str, value) -> Checked:
    """A list of alternatives (e.g. accepted answers): a list of texts, or one text with them separated by ';'."""
    if isinstance(value, str):
        value = [part for part in value.split(";") if part.strip()]
    if not isinstance(value, list) or not value:
        return None, f"{name} must be a list of texts (or text with them separated by ';'), got {kind_of(value)}"
    texts = []
    for i, item in enumerate(value, start=1):
        text, problem = check_text(f"{name} item {i}", item)
        if problem:
            return None, problem
        texts.append(text)
    return texts, None


def whole_number_text(value) -> str | None:
    """A whole number written as its digits (ids and labels may be numbers); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def check_id(value, name: str = "id") -> Checked:
    number = whole_number_text(value)
    if number is not None:
        return number, None
    if not isinstance(value, str):
        return None, f"{name} must be text or a whole number, got {kind_of(value)}"
    return check_text(name, value)


def check_label(name: str, value, labels: list[str], canonical) -> Checked:
    """``canonical(text, labels)`` reads a label written with other case or punctuation, or gives None."""
    number = whole_number_text(value)
    if number is None and not isinstance(value, str):
        return None, f"{name} must be one label (text), got {kind_of(value)}; allowed: {', '.join(labels)}"
    text, problem = check_text(name, number if number is not None else value)
    if problem:
        return None, problem
    label = canonical(text, labels)
    if label is None:
        return None, f"{name} {text!r} is not one of the task's labels ({', '.join(labels)})"
    return label, None


def check_number(name: str, value) -> Checked:
    hint = "write it as digits without units (e.g. 131 or 131.5)"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, f"{name} must be a number, got {kind_of(value)}; {hint}"
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None, f"{name} {value!r} is not a number; {hint}"
    if not math.isfinite(number):
        return None, f"{name} {value!r} is not a finite number; {hint}"
    return number, None


def check_facts(value) -> Checked:
    """Key facts as a list of alternatives per fact: ``[["MI", "myocardial infarction"], ["aspirin"]]``."""
    if isinstance(value, str):
        value = [part for part in value.split(";") if part.strip()]  # CSV: facts separated by ';'
    if not isinstance(value, list) or not value:
        return None, f"facts must be a list of facts (or text with facts separated by ';'), got {kind_of(value)}"
    facts = []
    for i, fact in enumerate(value, start=1):
        forms = fact if isinstance(fact, list) else [fact]
        if not forms:
            return None, f"facts item {i} is an empty list; give each fact one or more wordings"
        checked = []
        for form in forms:
            text, problem = check_text(f"facts item {i}", form)
            if problem:
                return None, problem
            checked.append(text)
        facts.append(checked)
    return facts, None
