"""The review database: RUN/review/review.sqlite (SQLite in WAL mode), the one place judgments live.

    meta(key, value)            the app's secret (the CSRF tokens derive from it) and the schema version
    reviewers(id, name, token_hash, created)
                                each reviewer's link token, stored only as its SHA-256
    queue(reviewer_id, stages, task, item, sort_key, shown_as_a)
                                each reviewer's items for a stage pair, in their seeded order, and which stage
                                the reviewer sees as answer A; written once, so an item never changes sides
    judgments(reviewer_id, stages, task, item, shown_as_a, preference, grade_1, grade_2, unsafe_1, unsafe_2,
              unsafe_reason, time)
                                one row per (reviewer, stage pair, task, item): judging again replaces it

``stages`` is the pair as configured, "sft,dpo"; ``grade_1``/``unsafe_1`` belong to its first stage. Every
request opens its own connection (``connect``); writes are single statements, so concurrent posts never lose a
judgment. ``load_judgments`` is what the statistics and ``pairs --from-review`` read.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import random
import re
import secrets
import sqlite3
import threading
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..errors import MedtuneError

SCHEMA_VERSION = "1"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MAX_REVIEWERS = 100
EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ["reviewer", "task", "item", "stage_1", "stage_2", "shown_as_a", "preference", "grade_stage_1",
               "grade_stage_2", "unsafe_stage_1", "unsafe_stage_2", "unsafe_reason", "time"]
WRITE_LOCK = threading.Lock()  # one writer at a time in this process; SQLite's own lock guards other processes

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviewers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
    stages TEXT NOT NULL,
    task TEXT NOT NULL,
    item TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    shown_as_a TEXT NOT NULL,
    PRIMARY KEY (reviewer_id, stages, task, item)
);
CREATE TABLE IF NOT EXISTS judgments (
    reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
    stages TEXT NOT NULL,
    task TEXT NOT NULL,
    item TEXT NOT NULL,
    shown_as_a TEXT NOT NULL,
    preference TEXT NOT NULL,
    grade_1 INTEGER,
    grade_2 INTEGER,
    unsafe_1 INTEGER NOT NULL DEFAULT 0,
    unsafe_2 INTEGER NOT NULL DEFAULT 0,
    unsafe_reason TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL,
    PRIMARY KEY (reviewer_id, stages, task, item)
);
"""


def db_path(run_dir: Path) -> Path:
    return Path(run_dir) / "review" / "review.sqlite"


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection of its own (one per request): autocommit, waiting up to 30 s for another writer."""
    if readonly:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                               isolation_level=None)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def opened(path: Path, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    with closing(connect(path, readonly)) as conn:
        yield conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), under this process's write lock."""
    with WRITE_LOCK:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def init_db(run_dir: Path) -> Path:
    """Create RUN/review/review.sqlite (or open the one there) with its tables and secret; returns its path."""
    path = db_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedtuneError(f"{path.parent}: cannot create the review folder ({exc.strerror})") from None
    try:
        with opened(path) as conn, transaction(conn):
            # one by one: executescript would commit the transaction
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))
    except sqlite3.DatabaseError as exc:
        raise MedtuneError(f"{path}: not a usable review database ({exc})") from None
    return path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- reviewers and their tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def reviewer_names(spec: str) -> list[str]:
    """``--reviewers``: a count N (reviewer-1 .. reviewer-N) or comma-separated names."""
    spec = spec.strip()
    if spec.isdigit():
        n = int(spec)
        if not 1 <= n <= MAX_REVIEWERS:
            raise MedtuneError(f"--reviewers {spec}: give between 1 and {MAX_REVIEWERS} reviewers")
        return [f"reviewer-{i}" for i in range(1, n + 1)]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise MedtuneError(f"--reviewers {spec!r}: give a number, or names separated by commas (alice,bob)")
    bad = [name for name in names if not NAME_PATTERN.fullmatch(name)]
    if bad:
        raise MedtuneError(f"--reviewers: {bad[0]!r} is not a usable name (letters, digits and . _ @ -, starting "
                           "with a letter or digit, at most 64 characters)")
    if len(set(names)) != len(names):
        raise MedtuneError(f"--reviewers {spec!r}: a name appears twice")
    if len(names) > MAX_REVIEWERS:
        raise MedtuneError(f"--reviewers: at most {MAX_REVIEWERS} reviewers")
    return names


def ensure_reviewers(path: Path, names: list[str], new_links: bool = False) -> dict[str, str | None]:
    """Create the reviewers ``names`` that do not exist yet. Returns name -> the new token (shown once, never
    stored) for each created reviewer, and for each named one whose token ``new_links`` re-issues (the old
    one stops working); None for a reviewer kept as it was."""
    out: dict[str, str | None] = {}
    with opened(path) as conn, transaction(conn):
        for name in names:
            row = conn.execute("SELECT id FROM reviewers WHERE name = ?", (name,)).fetchone()
            if row is not None and not new_links:
                out[name] = None
                continue
            token = secrets.token_urlsafe(24)
            if row is None:
                conn.execute("INSERT INTO reviewers (name, token_hash, created) VALUES (?, ?, ?)",
                             (name, hash_token(token), now()))
            else:
                conn.execute("UPDATE reviewers SET token_hash = ? WHERE id = ?", (hash_token(token), row["id"]))
            out[name] = token
    return out


def all_reviewers(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT id, name, token_hash FROM reviewers ORDER BY id").fetchall()


def reviewer_by_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    if not token or len(token) > 200:
        return None
    return conn.execute("SELECT id, name, token_hash FROM reviewers WHERE token_hash = ?",
                        (hash_token(token),)).fetchone()


def secret(conn: sqlite3.Connection) -> bytes:
    return bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()["value"])


def csrf_token(key: bytes, reviewer: sqlite3.Row) -> str:
    """The reviewer's form token: derived from the app's secret and the reviewer's current link, so a
    re-issued link also retires the pages opened with the old one."""
    return hmac.new(key, f"csrf|{reviewer['id']}|{reviewer['token_hash']}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, reviewer: sqlite3.Row, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(csrf_token(key, reviewer).encode(), sent.encode("utf-8", "replace"))


# ---------------------------------------------------------------- queues


def stages_key(stages: tuple[str, str]) -> str:
    return ",".join(stages)


def sort_key(name: str, task: str, item: str) -> str:
    """A reviewer's own order of the items: seeded by the reviewer's name, the same on every run."""
    return hashlib.sha256(f"queue|{name}|{task}|{item}".encode("utf-8")).hexdigest()


def ensure_queue(path: Path, reviewer: sqlite3.Row, stages: tuple[str, str], items: list[tuple[str, str]]) -> None:
    """Add the (task, item)s not yet in the reviewer's queue for ``stages``. Which stage is shown as A is
    drawn for the new items together, half each way (one more either way for an odd number), seeded by the
    reviewer and the pair; an item already queued keeps its side."""
    key = stages_key(stages)
    with opened(path) as conn, transaction(conn):
        have = {(r["task"], r["item"]) for r in conn.execute(
            "SELECT task, item FROM queue WHERE reviewer_id = ? AND stages = ?", (reviewer["id"], key))}
        new = sorted((sort_key(reviewer["name"], task, item), task, item) for task, item in set(items) - have)
        if not new:
            return
        rng = random.Random(f"sides|{reviewer['name']}|{key}|{len(have)}")
        offset = rng.randrange(2)  # which side gets the extra item of an odd number
        first = [(i + offset) % 2 == 0 for i in range(len(new))]
        rng.shuffle(first)
        conn.executemany("INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?)",
                         [(reviewer["id"], key, task, item, skey, stages[0] if a_first else stages[1])
                          for (skey, task, item), a_first in zip(new, first)])


def queue_rows(conn: sqlite3.Connection, reviewer_id: int, stages: tuple[str, str]) -> list[sqlite3.Row]:
    """The reviewer's queue for the pair in order, each row with ``judged`` (0/1)."""
    return conn.execute(
        "SELECT q.task, q.item, q.shown_as_a, (j.item IS NOT NULL) AS judged FROM queue q "
        "LEFT JOIN judgments j ON j.reviewer_id = q.reviewer_id AND j.stages = q.stages AND j.task = q.task "
        "AND j.item = q.item WHERE q.reviewer_id = ? AND q.stages = ? ORDER BY q.sort_key",
        (reviewer_id, stages_key(stages))).fetchall()


def judgment_of(conn: sqlite3.Connection, reviewer_id: int, stages: tuple[str, str], task: str,
                item: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM judgments WHERE reviewer_id = ? AND stages = ? AND task = ? AND item = ?",
                        (reviewer_id, stages_key(stages), task, item)).fetchone()


def save_judgment(conn: sqlite3.Connection, reviewer_id: int, stages: tuple[str, str], task: str, item: str,
                  shown_as_a: str, preference: str, grades: dict[str, int | None], unsafe: dict[str, bool],
                  unsafe_reason: str) -> None:
    """Insert the reviewer's judgment of the item, or replace the one made before (one row, never two)."""
    s1, s2 = stages
    with transaction(conn):
        conn.execute(
            "INSERT INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (reviewer_id, stages, task, item) DO UPDATE SET shown_as_a = excluded.shown_as_a, "
            "preference = excluded.preference, grade_1 = excluded.grade_1, grade_2 = excluded.grade_2, "
            "unsafe_1 = excluded.unsafe_1, unsafe_2 = excluded.unsafe_2, unsafe_reason = excluded.unsafe_reason, "
            "time = excluded.time",
            (reviewer_id, stages_key(stages), task, item, shown_as_a, preference, grades.get(s1), grades.get(s2),
             int(bool(unsafe.get(s1))), int(bool(unsafe.get(s2))), unsafe_reason, now()))


# ---------------------------------------------------------------- reading back


def load_judgments(run_dir: Path) -> list[dict]:
    """Every judgment in RUN/review/review.sqlite, oldest first ([] where nobody has reviewed the run):

    {"reviewer": name, "task", "item": example id, "stages": [s1, s2] (the pair as configured),
     "shown_as_a": stage, "preference": the preferred stage or "tie", "grades": {stage: 1-5 or None},
     "unsafe": {stage: bool}, "unsafe_reason": str, "time": ISO-8601 (UTC; the last change)}
    """
    path = db_path(run_dir)
    if not path.is_file():
        return []
    try:
        with opened(path, readonly=True) as conn:
            rows = conn.execute(
                "SELECT r.name, j.* FROM judgments j JOIN reviewers r ON r.id = j.reviewer_id "
                "ORDER BY j.time, j.rowid").fetchall()
    except sqlite3.DatabaseError as exc:
        raise MedtuneError(f"{path}: cannot read the review database ({exc})") from None
    out = []
    for row in rows:
        s1, s2 = row["stages"].split(",")
        out.append({"reviewer": row["name"], "task": row["task"], "item": row["item"], "stages": [s1, s2],
                    "shown_as_a": row["shown_as_a"], "preference": row["preference"],
                    "grades": {s1: row["grade_1"], s2: row["grade_2"]},
                    "unsafe": {s1: bool(row["unsafe_1"]), s2: bool(row["unsafe_2"])},
                    "unsafe_reason": row["unsafe_reason"], "time": row["time"]})
    return out


def csv_cell(value) -> str:
    """A spreadsheet must not read a reviewer's text as a formula: such a cell gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_text(rows: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        s1, s2 = r["stages"]
        writer.writerow([csv_cell(v) for v in (
            r["reviewer"], r["task"], r["item"], s1, s2, r["shown_as_a"], r["preference"],
            "" if r["grades"][s1] is None else r["grades"][s1], "" if r["grades"][s2] is None else r["grades"][s2],
            int(r["unsafe"][s1]), int(r["unsafe"][s2]), r["unsafe_reason"], r["time"])])
    return buffer.getvalue()


def export_judgments(run_dir: Path, path: Path, fmt: str | None = None) -> int:
    """Write every judgment to ``path`` as CSV or JSONL (``fmt``, else by the file's suffix) for audit;
    returns how many rows. JSONL rows are ``load_judgments``'s; a CSV has one column per field
    (``CSV_COLUMNS``)."""
    from ..io import write_text

    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise MedtuneError(f"{path}: export to a .csv or .jsonl file (got {fmt!r})")
    if not db_path(run_dir).is_file():
        raise MedtuneError(f"{db_path(run_dir)}: no review database; start a review with `medtune review "
                           f"{run_dir}` first")
    rows = load_judgments(run_dir)
    write_text(path, export_text(rows, fmt))
    return len(rows)
