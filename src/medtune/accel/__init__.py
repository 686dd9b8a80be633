"""Speed work that reaches into the libraries medtune builds on, behind one switch (``accel`` in the config).

Each piece below makes a step faster without changing what it computes beyond the number format's
rounding; the study is correct without any of them (``accel: off`` imports nothing from this package,
and runs stock TRL, PEFT and transformers code). ``auto`` turns a piece on only where it was measured to
pay and only with the library versions it was tested with; elsewhere medtune says so in one line and
runs the stock code. Each piece's measurement, with and without it, is in docs/performance.md.

Every patch made here is made for the duration of a block and undone when it ends (``training.py``,
``generation.py``): importing medtune, or running with ``off``, changes no library.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ..progress import console


@dataclass(frozen=True)
class Piece:
    what: str
    devices: tuple[str, ...]  # where it was measured to pay
    formats: tuple[str, ...]  # in which compute formats ("bf16", "fp32")
    tested: dict[str, str]  # package -> the versions it was tested with


TRL, TRANSFORMERS, PEFT = {"trl": ">=1.16,<1.17"}, {"transformers": ">=5.24,<5.26"}, {"peft": ">=0.21,<0.22"}

PIECES: dict[str, Piece] = {
    "compact_lm_head": Piece("TRL's fused LM head scores only the completion tokens on a CPU, as it does on a GPU",
                             ("cpu",), ("bf16", "fp32"), TRL),
    "grouped_attention": Piece("attention as two matmuls over the key/value heads instead of torch's CPU kernel",
                               ("cpu",), ("bf16",), TRANSFORMERS),
    "shared_prompt": Piece("a batch's common prompt prefix (SFT), and each pair's prompt (DPO), computed once "
                           "in packed rows with a tree mask", ("cpu",), ("bf16", "fp32"), TRL | TRANSFORMERS),
    "shared_trunk": Piece("DPO's reference pass, and the SFT model evaluated beside the DPO model, start from "
                          "the layers below DPO's adapters computed once", ("cpu",), ("bf16", "fp32"),
                          TRL | TRANSFORMERS),
    "fast_generation": Piece("a task's shared prompt prefix prefilled once, prompts prefilled in chunks, a static "
                             "cache, and a bf16 copy of the weights to generate with", ("cpu",), ("bf16", "fp32"),
                             TRANSFORMERS),
    "trained_handoff": Piece("the model a stage trained is handed to the next stage in memory, merged as loading "
                             "it would give it, instead of being loaded again", ("cpu",), ("bf16", "fp32"),
                             TRL | PEFT),
}


def untested(piece: Piece) -> list[str]:
    """The packages whose installed version this piece was not tested with."""
    out = []
    for package, wanted in piece.tested.items():
        try:
            installed = Version(metadata.version(package))
        except metadata.PackageNotFoundError:
            out.append(f"{package} (not installed)")
            continue
        if installed not in SpecifierSet(wanted):
            out.append(f"{package} {installed} (tested: {wanted})")
    return out


def choose(setting, device: str, dtype) -> frozenset[str]:
    """The pieces a run uses: ``auto`` (where each pays, with the versions it was tested with) or a list of
    piece names (each still only with tested versions). Prints one line for what ``auto`` leaves out."""
    fmt = "bf16" if str(dtype).endswith("bfloat16") else "fp32"
    if setting == "auto":
        wanted = [name for name, p in PIECES.items() if device in p.devices and fmt in p.formats]
    else:
        wanted = list(setting)
    chosen, skipped = [], []
    for name in wanted:
        problems = untested(PIECES[name])
        (skipped if problems else chosen).append((name, problems))
    if skipped:
        versions = sorted({p for _, problems in skipped for p in problems})
        console.print(f"accel: {', '.join(n for n, _ in skipped)} off, stock code instead: not tested with "
                      f"{'; '.join(versions)}", highlight=False)
    return frozenset(name for name, _ in chosen)
