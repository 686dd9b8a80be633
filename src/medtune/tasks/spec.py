"""A task written as data: one YAML file (docs/tasks.md) read into the same ``Task`` the engine runs.

A spec names the prompt and the reference completion as Jinja2 templates over an example's fields, and an
answer kind that decides how an output is read and scored:

* ``label``: one or more heads, each a closed set of labels (with aliases); a label is read from free
  text as the bundled label tasks read it; accuracy and macro-F1 per head.
* ``short_answer``: a short open answer, right when it names the reference (or an accepted alternative
  of the example's, or a synonym from the spec's vocabulary); accuracy.
* ``free_text``: a longer answer graded 1-5 by the built-in rubric from the example's key facts, or by
  the LLM judge with the spec's own rubric; mean grade and fact coverage.

The five bundled tasks are specs too (``tasks/specs/``).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Literal

import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import MedtuneError
from .common import Metric, Task, accuracy, find_label, macro_f1, normalize

ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
PROVIDED = {"labels", "heads", "asked"}  # template names the engine fills in besides the example's fields
KIND_METRICS = {"label": ("accuracy", "macro_f1"), "short_answer": ("accuracy",),
                "free_text": ("likert", "fact_coverage")}
DEFAULT_PRIMARY = {"label": "macro_f1", "short_answer": "accuracy", "free_text": "likert"}
DEFAULT_MAX_NEW_TOKENS = {"label": 16, "short_answer": 24, "free_text": 128}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Head(Strict):
    """One label head: its labels, and other wordings that count as a label."""

    labels: list[str] = Field(min_length=1, description="the allowed labels, in the order reports list them")
    aliases: dict[str, list[str]] = Field(default_factory=dict, description="label -> other accepted wordings")
    whole_answers: dict[str, str] = Field(default_factory=dict, description="an answer accepted only when it is "
                                          "the whole output (e.g. 'former' -> 'former smoker'), -> its label")

    @field_validator("labels")
    @classmethod
    def distinct(cls, labels: list[str]) -> list[str]:
        seen = {}
        for label in labels:
            key = normalize(label)
            if not key:
                raise ValueError(f"label {label!r} has no letters or digits")
            if key in seen:
                raise ValueError(f"labels {seen[key]!r} and {label!r} are the same once case and punctuation "
                                 "are ignored; a parser could not tell them apart")
            seen[key] = label
        return labels

    @model_validator(mode="after")
    def known_targets(self):
        unknown = sorted({*self.aliases, *self.whole_answers.values()} - set(self.labels))
        if unknown:
            raise ValueError(f"aliases name {unknown}, which are not labels ({', '.join(self.labels)})")
        return self


class DataFiles(Strict):
    """A task's data files (CSV, JSONL, Parquet or a save_to_disk folder): a spec's data section (paths relative
    to the spec file) or the config's data.tasks.<task>."""

    train: Path
    test: Path | None = Field(None, description="without it, a seeded stratified split of `train` is made")
    test_shifted: Path | None = Field(None, description="a second test split written with other wording than "
                                      "train (other templates, sites or authors): the report shows how well "
                                      "what each model learned carries over")
    map: dict[str, str] = Field(default_factory=dict, description="canonical field -> your column")
    test_fraction: float = Field(0.2, gt=0, lt=1)


class Spec(Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the task's name: lower case, digits, underscores")
    description: str = Field(min_length=1)
    kind: Literal["label", "short_answer", "free_text"]
    system_prompt: str = Field(min_length=1)
    prompt: str = Field(min_length=1, description="Jinja2 template of the user message over the example's fields")
    reference: str | None = Field(None, description="Jinja2 template of the completion SFT teaches and DPO "
                                  "prefers; default: the label(s) as 'head: label' lines, or {{ target }}")
    labels: list[str] | None = Field(None, description="label kind, one head: its labels (field `target`)")
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    whole_answers: dict[str, str] = Field(default_factory=dict)
    heads: dict[str, Head] | None = Field(None, description="label kind, several heads: field -> its labels")
    optional_heads: bool = Field(False, description="a file may carry only some heads; the others are "
                                 "neither asked, taught nor scored")
    vocabulary: list[list[str]] | None = Field(None, description="short_answer: every answer the parser knows, "
                                               "canonical name first, then synonyms")
    accepted_field: str | None = Field(None, description="short_answer: an example field listing other "
                                       "accepted answers")
    answer_cue: str | None = Field(None, description="a regular expression; the answer is read after it first")
    facts_field: str = Field("facts", description="free_text: the example field with the key facts")
    rubric: str | None = Field(None, description="free_text: the LLM judge's rubric (eval.grader: llm)")
    numeric_fields: list[str] = Field(default_factory=list, description="optional fields that must be numbers")
    metrics: list[str] | None = Field(None, min_length=1, description="the kind's metrics to report (default: all)")
    primary: list[str] | None = Field(None, min_length=1, description="the metrics the verdict is decided on")
    max_new_tokens: int | None = Field(None, ge=1)
    data: DataFiles | None = None

    @field_validator("prompt", "reference", "rubric")
    @classmethod
    def parses(cls, source: str | None) -> str | None:
        if source is not None:
            try:
                ENV.parse(source)
            except TemplateSyntaxError as exc:
                raise ValueError(f"not a valid template (line {exc.lineno}: {exc.message})") from None
        return source

    @field_validator("answer_cue")
    @classmethod
    def regex(cls, cue: str | None) -> str | None:
        if cue is not None:
            try:
                re.compile(cue)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return cue

    @model_validator(mode="after")
    def fits_its_kind(self):
        if self.kind == "label":
            if (self.labels is None) == (self.heads is None):
                raise ValueError("a label task gives `labels` (one head) or `heads` (several), not both or neither")
            if self.labels is not None:
                Head(labels=self.labels, aliases=self.aliases, whole_answers=self.whole_answers)
            elif not self.heads:
                raise ValueError("heads: a label task needs at least one head")
        elif self.labels is not None or self.heads is not None:
            raise ValueError(f"labels and heads belong to label tasks, not {self.kind}")
        allowed = self.metric_names()
        for key in ("metrics", "primary"):
            unknown = [m for m in getattr(self, key) or [] if m not in allowed]
            if unknown:
                raise ValueError(f"{key}: {unknown} is not a metric of a {self.kind} task here; "
                                 f"its metrics are {', '.join(allowed)}")
        unreported = [m for m in self.primary or [] if self.metrics is not None and m not in self.metrics]
        if unreported:
            raise ValueError(f"primary: {unreported} must also be in metrics ({', '.join(self.metrics)})")
        return self

    def head_map(self) -> dict[str, Head]:
        """Head name -> head; one head is named ``label`` and reads its label from the field ``target``."""
        if self.labels is not None:
            return {"label": Head(labels=self.labels, aliases=self.aliases, whole_answers=self.whole_answers)}
        return dict(self.heads or {})

    def metric_names(self) -> list[str]:
        kinds = KIND_METRICS[self.kind]
        if self.kind != "label" or self.labels is not None:
            return list(kinds)
        return [f"{head}_{m}" for m in reversed(kinds) for head in self.heads or {}]


# ---------------------------------------------------------------- reading a spec file

def read_spec(path: Path) -> Spec:
    """A spec file, validated; every problem names the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedtuneError(f"{path}: task spec not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedtuneError(f"{path}: cannot read the task spec ({exc})") from None
    except yaml.YAMLError as exc:
        raise MedtuneError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MedtuneError(f"{path}: a task spec is a mapping of keys to values (see docs/tasks.md)")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: invalid task spec"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                lines.append(f"  - {key}: unknown key (see docs/tasks.md)")
            else:
                lines.append(f"  - {key}: {err['msg'].removeprefix('Value error, ')}")
        raise MedtuneError("\n".join(lines)) from None
    if spec.data is not None:  # relative to the spec file, wherever medtune runs from
        base = path.resolve().parent
        spec.data.train = base / spec.data.train
        spec.data.test = base / spec.data.test if spec.data.test else None
        spec.data.test_shifted = base / spec.data.test_shifted if spec.data.test_shifted else None
    return spec


def load_spec(path: Path) -> Task:
    spec = read_spec(path)
    try:
        return task_from_spec(spec)
    except ValueError as exc:
        raise MedtuneError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- the task a spec describes

def template_fields(source: str) -> set[str]:
    return meta.find_undeclared_variables(ENV.parse(source)) - PROVIDED


def task_from_spec(spec: Spec) -> Task:
    heads = spec.head_map() if spec.kind == "label" else {}
    fields = {head: (head if spec.heads else "target") for head in heads}  # head -> example field
    prompt, reference = ENV.from_string(spec.prompt), ENV.from_string(spec.reference or default_reference(spec))
    lines = head_lines(heads, fields) if spec.kind == "label" and spec.heads and spec.reference is None else None
    either = tuple(fields.values()) if spec.optional_heads else ()

    def asked(example: dict) -> list[str]:
        present = [h for h in heads if example.get(fields[h]) is not None]
        return present or list(heads)

    def context(example: dict) -> dict:
        return {**example, "labels": heads["label"].labels if "label" in heads else None,
                "heads": {h: head.labels for h, head in heads.items()}, "asked": asked(example)}

    def render(template, example: dict, what: str) -> str:
        try:
            return template.render(context(example))
        except UndefinedError as exc:
            raise MedtuneError(f"task {spec.id}: the {what} template uses a field this example lacks "
                               f"({exc.message}); example {example.get('id')!r}") from None
        except (TemplateError, TypeError, ValueError) as exc:
            raise MedtuneError(f"task {spec.id}: the {what} template fails on example {example.get('id')!r}: "
                               f"{exc}") from None

    def build_prompt(example: dict) -> str:
        return render(prompt, example, "prompt")

    def build_reference(example: dict) -> str:
        return lines(example) if lines else render(reference, example, "reference")

    score, wrong = {"label": label_scoring, "short_answer": short_answer_scoring,
                    "free_text": free_text_scoring}[spec.kind](spec, heads, fields, asked, build_reference)
    metrics = [m for m in kind_metrics(spec, heads, fields) if spec.metrics is None or m.name in spec.metrics]
    shown = template_fields(spec.prompt) | (template_fields(spec.reference) if spec.reference else set())
    first = ["input", *fields.values(), *(["target"] if spec.kind != "label" else []),
             *([spec.facts_field] if spec.kind == "free_text" else [])]
    optional = {"id", *spec.numeric_fields, *([spec.accepted_field] if spec.accepted_field else [])}
    required = tuple(dict.fromkeys([*first, *sorted(shown - optional - set(first))]))
    primary = spec.primary or [m.name for m in metrics if m.name.endswith(DEFAULT_PRIMARY[spec.kind])] \
        or [metrics[0].name]
    return Task(
        name=spec.id,
        description=spec.description,
        system_prompt=spec.system_prompt,
        labels={h: head.labels for h, head in heads.items()} or None,
        metrics=metrics,
        primary_metrics=primary,
        max_new_tokens=spec.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[spec.kind],
        build_prompt=build_prompt,
        reference=build_reference,
        score=score,
        wrong_completions=wrong,
        required_fields=required,
        any_of_fields=either,
        numeric_fields=tuple(spec.numeric_fields),
        graded=spec.kind == "free_text",
        class_field="target" if spec.kind == "short_answer" and spec.vocabulary else None,
        field_kinds={spec.facts_field: "facts"} if spec.kind == "free_text" else
        ({spec.accepted_field: "texts"} if spec.accepted_field else {}),
        rubric=spec.rubric,
        checks_reference=spec.kind != "free_text",
        data=spec.data,
        source=spec,
    )


def default_reference(spec: Spec) -> str:
    """The reference template a spec without one gets: the label, or the target answer. Several heads
    without one are rendered as 'head: label' lines (``head_lines``)."""
    return "{{ target }}"


def head_lines(heads: dict[str, Head], fields: dict[str, str]):
    """One 'head: label' line per head the example is labelled for, in the spec's order."""
    def render(example: dict) -> str:
        return "\n".join(f"{h}: {example[fields[h]]}" for h in heads if example.get(fields[h]) is not None)
    return render


# ---------------------------------------------------------------- label answers

def read_label(output: str, head: str, labels: Head, others: list[str]) -> str | None:
    """The label an output gives for ``head``: a whole-answer word, else the label after "<head>:" (up to the
    next head's name), else the first label anywhere in the output."""
    bare = labels.whole_answers.get(normalize(output))
    if bare:
        return bare
    if others:
        following = "|".join(re.escape(normalize(h)) for h in others)
        after = re.search(rf"\b{re.escape(normalize(head))}\b(.*?)(?=\b(?:{following})\b|$)", normalize(output))
        if after:
            value = find_label(after.group(1), labels.labels, labels.aliases)
            if value:
                return value
    return find_label(output, labels.labels, labels.aliases)


def label_scoring(spec: Spec, heads: dict[str, Head], fields: dict[str, str], asked, build_reference):
    single = len(heads) == 1 and spec.labels is not None

    def score(example: dict, output: str) -> dict:
        if single:
            head = next(iter(heads))
            pred, gold = read_label(output, head, heads[head], []), example[fields[head]]
            return {"gold": gold, "pred": pred, "correct": pred == gold, "parse_failed": pred is None}
        row, wanted = {}, asked(example)
        for head, labels in heads.items():
            pred, gold = read_label(output, head, labels, [h for h in heads if h != head]), example.get(fields[head])
            row[f"gold_{head}"], row[f"pred_{head}"] = gold, pred
            row[f"correct_{head}"] = pred == gold if gold is not None else None
        row["correct"] = all(row[f"correct_{head}"] for head in wanted)
        row["parse_failed"] = all(row[f"pred_{head}"] is None for head in wanted)
        return row

    def wrong_completions(example: dict) -> list[str]:
        options = [head.labels if example.get(fields[h]) is not None else [None] for h, head in heads.items()]
        gold = tuple(example.get(fields[h]) for h in heads)
        wrong = []
        for combination in itertools.product(*options):
            if combination != gold:
                swapped = {**example, **{fields[h]: v for h, v in zip(heads, combination)}}
                wrong.append(build_reference(swapped))
        return wrong

    return score, wrong_completions


def labelled(rows: list[dict], head: str) -> list[dict] | None:
    """The rows with a gold label for ``head``; None when none has one (the metric does not apply)."""
    kept = [r for r in rows if r.get(f"gold_{head}") is not None]
    return kept or (None if rows else [])


def kind_metrics(spec: Spec, heads: dict[str, Head], fields: dict[str, str]) -> list[Metric]:
    if spec.kind == "label" and spec.labels is not None:
        labels = spec.labels
        return [Metric("accuracy", accuracy, "mcnemar", item_key="correct"),
                Metric("macro_f1", lambda rows: macro_f1(rows, labels), "bootstrap")]
    if spec.kind == "label":
        def f1(head):
            return lambda rows: (None if (kept := labelled(rows, head)) is None
                                 else macro_f1(kept, heads[head].labels, f"gold_{head}", f"pred_{head}"))

        def acc(head):
            return lambda rows: None if (kept := labelled(rows, head)) is None else accuracy(kept, f"correct_{head}")

        return ([Metric(f"{h}_macro_f1", f1(h), "bootstrap") for h in heads]
                + [Metric(f"{h}_accuracy", acc(h), "mcnemar", item_key=f"correct_{h}") for h in heads])
    if spec.kind == "short_answer":
        return [Metric("accuracy", accuracy, "mcnemar", item_key="correct")]
    return [Metric("likert", mean_of("grade"), "wilcoxon", item_key="grade", min_effect=0.25),
            Metric("fact_coverage", mean_of("coverage"), "bootstrap")]


def mean_of(key: str):
    def compute(rows: list[dict]) -> float:
        return sum(float(r[key]) for r in rows) / len(rows) if rows else 0.0
    return compute


# ---------------------------------------------------------------- short and free-text answers

def short_answer_scoring(spec: Spec, heads, fields, asked, build_reference):
    cue = re.compile(spec.answer_cue, re.IGNORECASE) if spec.answer_cue else None
    names = [forms[0] for forms in spec.vocabulary or []]
    synonyms = {forms[0]: forms[1:] for forms in spec.vocabulary or []}

    def read(output: str, answers: list[str], aliases: dict) -> str | None:
        found = cue.search(output) if cue else None
        if found:
            value = find_label(output[found.end():], answers, aliases)
            if value:
                return value
        return find_label(output, answers, aliases)

    def score(example: dict, output: str) -> dict:
        gold = example["target"]
        accepted = [gold, *(example.get(spec.accepted_field) or [] if spec.accepted_field else [])]
        if names:  # a known vocabulary: the first answer named, as its canonical name
            pred = read(output, names, synonyms)
            wanted = {find_label(a, names, synonyms) or a for a in accepted}
            return {"gold": gold, "pred": pred, "correct": pred in wanted, "parse_failed": pred is None}
        pred = read(output, accepted, {})
        return {"gold": gold, "pred": pred, "correct": pred is not None, "parse_failed": not output.strip()}

    return score, lambda example: []


def free_text_scoring(spec: Spec, heads, fields, asked, build_reference):
    from ..evaluate.grader import grade_summary

    def score(example: dict, output: str) -> dict:
        graded = grade_summary(example["input"], build_reference(example), example[spec.facts_field], output)
        return {"coverage": graded["coverage"], "grade": graded["grade"], "unsupported": graded["unsupported"],
                "words": graded["words"], "length": graded["length"], "copy": graded["copy"], "grader": "builtin",
                "correct": graded["grade"] >= 4, "parse_failed": not output.strip()}

    return score, lambda example: []
