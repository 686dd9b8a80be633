"""Read a user's table (CSV, JSONL, Parquet, or a Hugging Face ``save_to_disk`` folder).

Every row comes back with the number a person would look for in the file:
the line number for JSONL and CSV (the header is line 1), the row number for
Parquet and dataset folders. Problems raise ``MedtuneError`` naming file and row.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import MedtuneError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        raise MedtuneError(f"{path}: a folder, but not a Hugging Face dataset saved with save_to_disk")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MedtuneError(f"{path}: unsupported file type {path.suffix!r}; use CSV, JSONL, Parquet "
                           "or a Hugging Face save_to_disk folder")
    return fmt


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """``[(row number, row dict)]`` from any supported file."""
    path = Path(path)
    if not path.exists():
        raise MedtuneError(f"{path}: file not found")
    fmt = detect_format(path)
    rows = {"csv": read_csv, "tsv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet, "hf": read_hf}[fmt](path)
    if not rows:
        raise MedtuneError(f"{path}: the file has no data rows")
    return rows


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MedtuneError(f"{path}, line {line}: not UTF-8 text (byte {exc.start}); "
                           "save the file as UTF-8 and try again") from None


class ReadProblems(MedtuneError):
    """Several problems in one file (each names its line), reported together."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"{path}, {p}" for p in problems))


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".jsonl":
        return read_jsonl_lines(path)
    text = read_text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MedtuneError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(i, check_object(path, i, row)) for i, row in enumerate(data, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MedtuneError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        rows.append((number, check_object(path, number, row)))
    return rows


def read_jsonl_lines(path: Path) -> list[tuple[int, dict]]:
    """JSON Lines, line by line, so every non-UTF-8 or malformed line is named, not just the first."""
    rows, problems = [], []
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: not UTF-8 text (byte {exc.start + 1} of the line); "
                            "save the file as UTF-8 and try again")
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            "each line must be one complete {...} record")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {number}: expected a JSON object with named fields, got {type(row).__name__}")
            continue
        rows.append((number, row))
    if problems:
        raise ReadProblems(path, problems)
    return rows


def check_object(path: Path, number: int, row) -> dict:
    if not isinstance(row, dict):
        raise MedtuneError(f"{path}, line {number}: expected a JSON object with named fields, got {type(row).__name__}")
    return row


def read_csv(path: Path) -> list[tuple[int, dict]]:
    text = read_text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise MedtuneError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise MedtuneError(f"{path}, line 1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise MedtuneError(f"{path}, line 1: duplicate column names in the header: {header}")
    rows = []
    try:
        for values in reader:
            number = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise MedtuneError(f"{path}, line {number}: {len(values)} fields but the header has {len(header)} "
                                   "(an unquoted comma or line break inside a value?)")
            rows.append((number, dict(zip(header, values))))
    except csv.Error as exc:
        raise MedtuneError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    return rows


def read_parquet(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise MedtuneError(f"{path}: cannot read as Parquet ({exc})") from None
    return list(enumerate(table.to_pylist(), start=1))


def read_hf(path: Path) -> list[tuple[int, dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as exc:
        raise MedtuneError(f"{path}: cannot load the saved dataset ({exc})") from None
    if isinstance(data, DatasetDict):
        raise MedtuneError(f"{path}: a dataset with splits {list(data)}; pass the folder of one split "
                           f"(e.g. {path / list(data)[0]})")
    return list(enumerate(data.to_list(), start=1))
