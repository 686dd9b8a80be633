"""Arbitrary JSON values in every field of every record kind: the doctor answers with an error naming the
row, or accepts a record every later stage can use; it never raises anything else.

Bounded (``max_examples``) to keep the default suite quick; Hypothesis remembers failing examples between
runs in its own database.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtune.data import bundled_path
from medtune.data.doctor import check_pairs_file, check_task_file
from medtune.errors import MedtuneError
from medtune.tasks import TASKS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["", " ", "\x00", "normal", "urgent", "nurse", "\ud800", "1e999", "nan", "131.5"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)

PAIR_FIELDS = ["id", "prompt", "chosen", "rejected", "source", "example_id"]
HOSTILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def first_row(task) -> dict:
    return json.loads(bundled_path(task, "train").read_text(encoding="utf-8").splitlines()[0])


def fields_of(task) -> list[str]:
    return ["id", *task.required_fields, *task.numeric_fields]


def write_rows(path: Path, rows: list[dict]) -> Path:
    # ensure_ascii: the file stays valid UTF-8 whatever the strings hold (lone surrogates become escapes)
    path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows), encoding="utf-8")
    return path


def assert_usable(task, record: dict) -> None:
    """An accepted record holds canonical values that every stage can use."""
    json.dumps(record, ensure_ascii=False).encode("utf-8")
    assert isinstance(record["id"], str) and record["id"] and "\x00" not in record["id"]
    assert isinstance(record["input"], str) and record["input"].strip() and "\x00" not in record["input"]
    for head, labels in (task.labels or {}).items():
        field = head if head in task.required_fields else "target"
        assert record.get(field) is None or record[field] in labels
    for name in task.numeric_fields:
        assert name not in record or (isinstance(record[name], float) and math.isfinite(record[name]))
    task.messages(record)
    task.score(record, task.reference(record))
    task.wrong_completions(record)


@pytest.mark.parametrize("name", list(TASKS))
@HOSTILE
@given(data=st.data())
def test_task_records_with_any_values(name, data, tmp_path):
    task = TASKS[name]
    row = first_row(task)
    changed = data.draw(st.dictionaries(st.sampled_from(fields_of(task)), json_values, min_size=1, max_size=3))
    row.update(changed)
    path = write_rows(tmp_path / f"{name}.jsonl", [row])
    try:
        diag = check_task_file(path, task)
    except MedtuneError:
        return
    if diag.errors:
        assert all(f.rows == [1] or not f.rows for f in diag.errors)
        assert all(str(path) in line for line in diag.lines())
        return
    assert len(diag.records) == 1
    assert_usable(task, diag.records[0])


@HOSTILE
@given(changed=st.dictionaries(st.sampled_from(PAIR_FIELDS), json_values, min_size=1, max_size=3))
def test_pair_records_with_any_values(changed, tmp_path):
    row = {"id": "p1", "prompt": "Sodium 128 mmol/L.", "chosen": "hyponatremia", "rejected": "normal", **changed}
    path = write_rows(tmp_path / "pairs.jsonl", [row])
    diag = check_pairs_file(path)
    if diag.errors:
        assert all(str(path) in line for line in diag.lines())
        return
    (pair,) = diag.records
    json.dumps(pair, ensure_ascii=False).encode("utf-8")
    assert all(isinstance(pair[k], str) and pair[k].strip() and "\x00" not in pair[k]
               for k in ("id", "prompt", "chosen", "rejected", "source"))


@HOSTILE
@given(preferred=json_values, other=json_values, messages=json_values)
def test_openai_preference_rows_with_any_values(preferred, other, messages, tmp_path):
    row = {"input": {"messages": messages}, "preferred_output": preferred, "non_preferred_output": other}
    diag = check_pairs_file(write_rows(tmp_path / "openai.jsonl", [row]))
    if not diag.errors:
        (pair,) = diag.records
        assert all(isinstance(pair[k], str) for k in ("prompt", "chosen", "rejected"))


@pytest.mark.parametrize("name", ["numeric_classification", "summarization", "triage"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_parquet_records_with_any_values(name, data, tmp_path):
    """Parquet carries its own types (lists, structs, booleans, binary) through to the doctor."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    task = TASKS[name]
    row = first_row(task)
    row.update(data.draw(st.dictionaries(st.sampled_from(fields_of(task)), json_values | st.binary(max_size=4),
                                         min_size=1, max_size=2)))
    path = tmp_path / f"{name}.parquet"
    try:
        pq.write_table(pa.Table.from_pylist([row]), path)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return  # a value Parquet itself cannot hold
    diag = check_task_file(path, task)
    if not diag.errors:
        assert_usable(task, diag.records[0])
