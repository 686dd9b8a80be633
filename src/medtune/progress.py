"""rich progress bars shared by generation, evaluation and training."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # never break a file path or row number across lines


def quiet_libraries() -> None:
    """Leave the terminal to our rich bars: no tqdm bars or log dicts from HF libraries."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    # TRL's pass over the reference log-probs draws a tqdm bar of its own (a variable you set is kept)
    os.environ.setdefault("TQDM_DISABLE", "1")
    transformers.utils.logging.set_verbosity_error()
    # renamed-argument notices from transformers/TRL (gradient_checkpointing -> activation_checkpointing)
    # are for library developers, not for someone reading a study's progress
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl)\.")
    # bitsandbytes (PEFT imports it where installed) warns at import, on a CPU with AVX512-BF16, that it could
    # not fetch an optional 4-bit kernel from the hub: medtune neither uses that kernel nor fetches anything
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("kernels").setLevel(logging.ERROR)  # offline, it says it skipped that kernel's trust check


def progress(enabled: bool = True) -> Progress:
    # Plain text (no live redraw) when not on a terminal, e.g. in CI logs. enabled=False: work done
    # inside another bar (rich shows one live display at a time).
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
        disable=not enabled or os.environ.get("MEDTUNE_NO_PROGRESS") == "1"
        or not sys.stderr.isatty() and os.environ.get("CI") == "true",
    )
