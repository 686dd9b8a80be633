"""The run directory: made and marked by medtune, used by one process at a time, resumable after any kill.

    RUN/.medtune-run     written when medtune takes a folder as a run; --restart deletes only such a folder
    RUN/.medtune-lock    locked (flock) by the one process using the run; holds that process's PID

Each step of a stage is committed by one file, written after every other file of the step; a step
without it is not done, and is redone (training resumes from its last checkpoint):

    training     RUN/<task>/<stage>/train_log.json
    evaluation   RUN/<task>/<stage>/metrics.json
    pair mining  RUN/<task>/pairs/stats.json

What a kill leaves behind (temp files, checkpoints of committed training, QLoRA's scratch copy) is
removed when the run is opened again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import yaml
from safetensors import SafetensorError

from . import __version__
from .errors import MedtuneError
from .io import write_json

STAGES = ("base", "sft", "dpo")  # RUN/<task>/<stage>/ for each, besides pairs/
MARKER = ".medtune-run"
LOCK = ".medtune-lock"
TRAINED, EVALUATED, MINED = "train_log.json", "metrics.json", "stats.json"
WRITE_FAILED = ("No space left on device", "os error 28", "Disk quota exceeded", "Read-only file system",
                "file write failed")
RESUME_HINT = "make room (or fix the folder) and run the same command again: it resumes where it stopped"
# keys every config.yaml medtune wrote has: a run made before the marker existed is recognised by them
LEGACY_CONFIG_KEYS = {"model", "run_dir", "tasks", "seed", "sft", "dpo", "eval", "stats"}


def is_done(folder: Path, marker: str) -> bool:
    return (Path(folder) / marker).is_file()


@contextmanager
def open_run(run_dir: Path, restart: bool = False) -> Iterator[Path]:
    """Take ``run_dir`` for this process: create or recognise it, lock it, empty it with ``restart``,
    and clear what an interrupted process left. Refuses a folder medtune did not make. Under several
    processes rank 0 takes it for all of them (it writes the run; distributed.py), the others waiting
    until it is ready, or stopping with it."""
    from .distributed import on_main

    run_dir = Path(run_dir).expanduser()
    with ExitStack() as held:
        on_main(take_run, run_dir, restart, held)
        with disk_errors_named(run_dir):
            yield run_dir


def take_run(run_dir: Path, restart: bool, held: ExitStack) -> None:
    """``open_run``'s work, its lock entered into ``held``."""
    check_is_run(run_dir, restart)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedtuneError(f"{run_dir}: cannot create the run directory ({exc.strerror})") from None
    held.enter_context(exclusive(run_dir))
    if restart:
        clear(run_dir)
    if not (run_dir / MARKER).is_file():
        write_json(run_dir / MARKER, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                      "medtune_version": __version__})
    clean_orphans(run_dir)


@contextmanager
def disk_errors_named(run_dir: Path) -> Iterator[None]:
    """A full or read-only disk met while writing the run becomes one line naming where; the libraries that
    write weights and optimizer state (safetensors, torch) report it in their own exception types."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise MedtuneError(f"{exc.filename or run_dir}: {exc.strerror}; {RESUME_HINT}") from None
    except (SafetensorError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        if not any(sign in first for sign in WRITE_FAILED):
            raise
        raise MedtuneError(f"{run_dir}: writing the run failed ({first}); {RESUME_HINT}") from None


def check_is_run(run_dir: Path, restart: bool) -> None:
    """A run directory is new, empty, or made by medtune: never a user's folder of other files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MedtuneError(f"{run_dir}: exists and is not a folder; choose another --run-dir")
    if not run_dir.is_dir() or (run_dir / MARKER).is_file() or made_before_marker(run_dir):
        return
    try:
        others = sorted(p.name for p in run_dir.iterdir())
    except OSError as exc:
        raise MedtuneError(f"{run_dir}: cannot read the folder ({exc.strerror})") from None
    if not others:
        return
    listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    action = "--restart deletes only a folder medtune made" if restart else "medtune writes only into a new " \
             "or empty folder, or a run directory it made"
    raise MedtuneError(f"{run_dir}: not a medtune run directory (no {MARKER}; it holds {listed}); {action}. "
                       "Choose another --run-dir")


def made_before_marker(run_dir: Path) -> bool:
    """A run directory from a medtune version without the marker: its config.yaml is one medtune wrote."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and LEGACY_CONFIG_KEYS <= saved.keys()


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock; a second process is told which PID holds it. The operating system releases
    the lock when its holder dies, even by kill -9."""
    path = run_dir / LOCK
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise MedtuneError(f"{run_dir}: cannot write into the run directory ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise MedtuneError(f"{run_dir}: in use by another medtune process (PID {holder}); wait for it to "
                               "finish, or stop it, and run this command again") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def clear(run_dir: Path) -> None:
    """Everything in the run directory but the lock this process holds."""
    for child in run_dir.iterdir():
        if child.name == LOCK:
            continue
        remove(child)


def clean_orphans(run_dir: Path) -> None:
    """Remove what a killed process left: temp files and folders of atomic writes, QLoRA's scratch copies,
    and the checkpoints of training that was committed before they were deleted."""
    for path in list(run_dir.rglob("*")):
        if not path.exists():  # inside a folder removed earlier in this loop
            continue
        name = path.name
        if (name.startswith(".") and name.endswith(".tmp")) or (name == "scratch_model" and path.is_dir()):
            remove(path)
        elif name == "checkpoints" and path.is_dir() and is_done(path.parent, TRAINED):
            remove(path)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
