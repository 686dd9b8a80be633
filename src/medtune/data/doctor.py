"""The data doctor: find what is wrong with a task file or a preference-pair file
before any training starts, in words a clinician can act on.

Errors stop the run (nothing is trained or written): unreadable or empty file,
non-UTF-8 text, a malformed row, a missing column, an empty value, a label
outside the task's label set. Warnings are reported and the run goes on
(unless ``--strict``): duplicates, train/test overlap, class imbalance, examples
longer than the configured maximum length; for pairs, ``chosen == rejected``,
pairs that become identical once truncated to the training length (the failure
that silently emptied one of Savage et al.'s DPO runs), pairs differing only in
whitespace, and a doubled BOS token after the chat template.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MedtuneError
from ..tasks.common import Task
from .importer import apply_mapping, canonical_label, is_empty, label_fields, openai_preference_row
from .readers import ReadProblems, read_rows
from .records import check_facts, check_field, check_id, check_label, check_number, check_text, check_texts

PAIR_FIELDS = ("prompt", "chosen", "rejected")
MAX_LISTED = 5  # rows named per warning; the count covers them all


@dataclass
class Finding:
    level: str  # "error" or "warning"
    message: str
    rows: list[int] = field(default_factory=list)
    count: int = 1

    def render(self, file: str) -> str:
        where = file
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_LISTED])
            more = f" and {len(self.rows) - MAX_LISTED} more" if len(self.rows) > MAX_LISTED else ""
            where += f", row{'s' if len(self.rows) > 1 else ''} {shown}{more}"
        return f"{where}: {self.message}"


@dataclass
class Diagnosis:
    file: str
    kind: str
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # the canonical rows, when there are no errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def error(self, message: str, rows: list[int] | None = None) -> None:
        self.findings.append(Finding("error", message, rows or []))

    def warn(self, message: str, rows: list[int] | None = None) -> None:
        self.findings.append(Finding("warning", message, rows or [], len(rows or []) or 1))

    def to_dict(self) -> dict:
        return {"file": self.file, "kind": self.kind, "rows": self.rows,
                "errors": [{"message": f.message, "rows": f.rows} for f in self.errors],
                "warnings": [{"message": f.message, "rows": f.rows, "count": f.count} for f in self.warnings]}

    def lines(self) -> list[str]:
        return [f"{f.level}: {f.render(self.file)}" for f in self.findings]


# ------------------------------------------------------------------ task files

def check_task_file(path: Path, task: Task, mapping: dict | None = None, tokenizer=None,
                    max_length: int | None = None, other: list[dict] | None = None,
                    other_name: str = "the other split") -> Diagnosis:
    diag = Diagnosis(str(path), "task")
    rows = read_or_record(path, diag)
    if rows is None:
        return diag
    diag.rows = len(rows)
    rows = [(n, apply_mapping(r, mapping or {})) for n, r in rows]
    present = set().union(*(r.keys() for _, r in rows))
    any_of = task.any_of_fields  # triage: one of the two heads is enough
    needed = ("input", *[f for f in task.required_fields if f != "input" and f not in any_of])
    if any_of and not any(f in present for f in any_of):
        needed = (*needed, *any_of)
    missing = [f for f in needed if f not in present]
    if missing:
        diag.error(f"missing column(s) {', '.join(missing)} for task {task.name} (columns found: "
                   f"{', '.join(sorted(present))}). Rename them, or map them with --map {missing[0]}=YOUR_COLUMN")
        return diag
    labels = label_fields(task)
    absent = [f for f in any_of if f not in present]  # a head the file does not carry is not evaluated
    if absent:
        diag.warn(f"no {', '.join(absent)} column: only {', '.join(f for f in any_of if f in present)} "
                  f"will be trained and evaluated for task {task.name}")
    examples = [(n, *canonical_example(row, n, task, labels, source=Path(path).stem, skip=absent)) for n, row in rows]
    for number, _, problems in examples:
        for problem in problems:
            diag.error(problem, [number])
    error_on_duplicate_ids(diag, [(number, record) for number, record, _ in examples])
    records = [(number, record) for number, record, problems in examples if not problems]
    if diag.errors:
        return diag
    error_on_unread_references(diag, records, task)
    if diag.errors:
        return diag
    warn_duplicates(diag, records, labels)
    warn_overlap(diag, records, other, other_name)
    warn_imbalance(diag, records, labels)
    if tokenizer is not None and max_length:
        warn_too_long(diag, records, task, tokenizer, max_length)
    diag.records = [r for _, r in records]
    return diag


def canonical_example(row: dict, number: int, task: Task, labels: dict, source: str,
                      skip: list[str] = ()) -> tuple[dict, list[str]]:
    """A user's row as the task's canonical example, or the problems that stop it (records.py)."""
    problems, example = [], {}
    example_id, problem = check_id(row["id"]) if not is_empty(row.get("id")) else (f"{source}-{number}", None)
    if problem:
        problems.append(problem)
    else:
        example["id"] = example_id
    for name in task.required_fields:
        if name in skip:
            continue
        value = row.get(name)
        if is_empty(value):
            problems.append(f"empty {name!r}: every example needs a value here")
            continue
        value, problem = check_by_kind(task, labels, name, value)
        if problem:
            problems.append(problem)
        else:
            example[name] = value
    optional = [*task.numeric_fields, *(f for f in task.field_kinds if f not in task.required_fields)]
    for name in optional:
        if name in row and not is_empty(row[name]):
            value, problem = check_by_kind(task, labels, name, row[name])
            if problem:
                problems.append(problem)
            else:
                example[name] = value
    return example, problems


def check_by_kind(task: Task, labels: dict, name: str, value):
    """A field's value checked as what the task holds there (records.py)."""
    if name in labels:
        return check_label(name, value, labels[name], canonical_label)
    if name in task.numeric_fields:
        return check_number(name, value)
    kind = task.field_kinds.get(name)
    if kind == "facts":
        return check_facts(value)
    if kind == "texts":
        return check_texts(name, value)
    return check_text(name, value) if name == "input" else check_field(name, value)


def error_on_unread_references(diag: Diagnosis, records: list[tuple[int, dict]], task: Task) -> None:
    """What SFT teaches must be what the parser reads as right: a reference the task's parser would score
    wrong (a spec's reference template, labels or aliases that disagree) would train the model against it."""
    if not task.checks_reference:
        return
    unread = []
    for number, example in records:
        try:
            correct = task.score(example, task.reference(example))["correct"]
        except MedtuneError as exc:
            diag.error(str(exc), [number])
            continue
        if not correct:
            unread.append(number)
    if unread:
        example = dict(records)[unread[0]]
        diag.error(f"the task's parser does not read the reference completion back as right (row {unread[0]}'s "
                   f"reference is {task.reference(example)!r}); check the spec's reference template, labels "
                   "and aliases", unread)


def error_on_duplicate_ids(diag: Diagnosis, records: list[tuple[int, dict]]) -> None:
    """Stages are compared item by item through the ids: one id on two rows would pair the wrong answers.
    ``records`` may hold rows with other problems: every readable id counts."""
    rows_of = defaultdict(list)
    for number, record in records:
        if "id" in record:
            rows_of[record["id"]].append(number)
    for item_id, numbers in rows_of.items():
        if len(numbers) > 1:
            diag.error(f"id {item_id!r} is on {len(numbers)} rows; ids must be unique (the stages' answers are "
                       "paired by id)", numbers)


def warn_duplicates(diag: Diagnosis, records: list[tuple[int, dict]], labels: dict) -> None:
    by_input = defaultdict(list)
    for number, ex in records:
        by_input[" ".join(ex["input"].lower().split())].append((number, ex))
    repeated = [group for group in by_input.values() if len(group) > 1]
    conflicting = [g for g in repeated if len({tuple(ex.get(f) for f in labels) for _, ex in g}) > 1]
    if repeated:
        diag.warn(f"{sum(len(g) - 1 for g in repeated)} duplicated input(s); duplicates weigh twice in training "
                  "and inflate test scores", [n for g in repeated for n, _ in g[1:]])
    if conflicting:
        diag.warn(f"{len(conflicting)} input(s) appear with different labels; check which label is right",
                  [n for g in conflicting for n, _ in g])


def warn_overlap(diag: Diagnosis, records: list[tuple[int, dict]], other: list[dict] | None, other_name: str) -> None:
    if not other:
        return
    seen = {" ".join(ex["input"].lower().split()) for ex in other}
    shared = [n for n, ex in records if " ".join(ex["input"].lower().split()) in seen]
    if shared:
        diag.warn(f"{len(shared)} input(s) also appear in {other_name}: test scores would be inflated "
                  "by examples the model trained on", shared)


def warn_imbalance(diag: Diagnosis, records: list[tuple[int, dict]], labels: dict) -> None:
    for name, allowed in labels.items():
        if not any(name in ex for _, ex in records):
            continue  # a head the file does not carry (triage with one head)
        counts = Counter(ex[name] for _, ex in records)
        total = sum(counts.values())
        absent = [label for label in allowed if counts[label] == 0]
        if absent:
            diag.warn(f"{name}: no example of {', '.join(absent)}; the model cannot learn a label it never sees")
        rare = [f"{label} ({counts[label]}/{total})" for label in allowed if 0 < counts[label] < 0.05 * total]
        if rare:
            diag.warn(f"{name}: class imbalance, rare label(s) {', '.join(rare)}; macro-F1 will be noisy for them")


def warn_too_long(diag: Diagnosis, records: list[tuple[int, dict]], task: Task, tokenizer, max_length: int) -> None:
    long_rows = []
    for number, ex in records:
        messages = task.messages(ex) + [{"role": "assistant", "content": task.reference(ex)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) > max_length:
            long_rows.append(number)
    if long_rows:
        diag.warn(f"{len(long_rows)} example(s) are longer than max_length={max_length} tokens with this model's "
                  "tokenizer; training would cut their answers off. Raise sft.max_length or shorten them", long_rows)


# ------------------------------------------------------------------ preference pairs

def check_pairs_file(path: Path, mapping: dict | None = None, tokenizer=None, max_length: int | None = None,
                     system_prompt: str | None = None, mined: bool = False) -> Diagnosis:
    """``mined``: pairs medtune mined, whose answers are the model's own text."""
    diag = Diagnosis(str(path), "pairs")
    rows = read_or_record(path, diag)
    if rows is None:
        return diag
    diag.rows = len(rows)
    converted = []
    for number, row in rows:
        row = openai_preference_row(row) or apply_mapping(row, mapping or {})
        converted.append((number, row))
    present = set().union(*(r.keys() for _, r in converted))
    missing = [f for f in PAIR_FIELDS if f not in present]
    if missing:
        diag.error(f"missing column(s) {', '.join(missing)} for preference pairs (columns found: "
                   f"{', '.join(sorted(present))}); expected prompt, chosen, rejected or OpenAI's preference format")
        return diag
    pairs = [(number, *canonical_pair(row, number, Path(path).stem, mined)) for number, row in converted]
    for number, _, problems in pairs:
        for problem in problems:
            diag.error(problem, [number])
    error_on_duplicate_ids(diag, [(number, record) for number, record, _ in pairs])
    records = [(number, record) for number, record, problems in pairs if not problems]
    if diag.errors:
        return diag
    same = [n for n, p in records if p["chosen"] == p["rejected"]]
    if same:
        diag.warn(f"{len(same)} pair(s) have chosen == rejected: they teach nothing and will be dropped", same)
    blank = [n for n, p in records if p["chosen"] != p["rejected"] and p["chosen"].split() == p["rejected"].split()]
    if blank:
        diag.warn(f"{len(blank)} pair(s) differ only in whitespace: DPO would learn spacing, not content", blank)
    if tokenizer is not None:
        check_pair_tokens(diag, records, tokenizer, max_length, system_prompt)
    diag.records = [p for _, p in records]
    return diag


def canonical_pair(row: dict, number: int, source: str, mined: bool = False) -> tuple[dict, list[str]]:
    """A user's (or a mining round's) pair in TRL's format with its provenance, or the problems that stop it."""
    problems = []
    record = {}
    for name in ("id", "example_id"):
        if not is_empty(row.get(name)):
            value, problem = check_id(row[name], name)
            if problem:
                problems.append(problem)
            else:
                record[name] = value
    if is_empty(row.get("id")):
        record["id"] = f"{source}-{number}"
    empty = [f for f in PAIR_FIELDS if is_empty(row.get(f))]
    if empty:
        problems.append(f"empty {', '.join(empty)}: a preference pair needs a prompt and two different answers")
    for name in PAIR_FIELDS:
        if name not in empty:
            value, problem = check_text(name, row[name], nul_ok=mined and name != "prompt")
            if problem:
                problems.append(problem)
            else:
                record[name] = row[name]  # as written: whitespace differences are the doctor's to report
    record["source"] = "human"
    if not is_empty(row.get("source")):
        value, problem = check_text("source", row["source"])
        if problem:
            problems.append(problem)
        else:
            record["source"] = value
    return {k: record[k] for k in ("id", "prompt", "chosen", "rejected", "source", "example_id") if k in record}, problems


def check_pair_tokens(diag: Diagnosis, records, tokenizer, max_length: int | None, system_prompt: str | None) -> None:
    """Truncation collapse and doubled BOS, seen exactly as the trainer will tokenize."""
    collapsed, double_bos = [], []
    bos = tokenizer.bos_token_id
    for number, pair in records:
        prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
                 [{"role": "user", "content": pair["prompt"]}]
        prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt_text)["input_ids"]  # with the tokenizer's own special-token handling
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            double_bos.append(number)
        if max_length and pair["chosen"] != pair["rejected"]:
            prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
            chosen = prompt_ids + tokenizer(pair["chosen"], add_special_tokens=False)["input_ids"]
            rejected = prompt_ids + tokenizer(pair["rejected"], add_special_tokens=False)["input_ids"]
            if chosen[:max_length] == rejected[:max_length]:
                collapsed.append(number)
    if collapsed:
        diag.warn(f"{len(collapsed)} pair(s) become identical after truncation to max_length={max_length} tokens "
                  "(chosen and rejected differ only after the cut): DPO gets no signal from them. Raise "
                  "dpo.max_length or shorten the prompts", collapsed)
    if double_bos:
        diag.warn(f"{len(double_bos)} prompt(s) start with a doubled BOS token after the chat template; the "
                  "template already adds it, so turn off the tokenizer's add_bos_token", double_bos)


# ------------------------------------------------------------------ shared

def read_or_record(path: Path, diag: Diagnosis):
    try:
        return read_rows(Path(path))
    except ReadProblems as exc:
        for problem in exc.problems:
            diag.error(problem)
        return None
    except MedtuneError as exc:
        diag.error(str(exc).removeprefix(f"{path}: ").removeprefix(f"{path}, "))
        return None
