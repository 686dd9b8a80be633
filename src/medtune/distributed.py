"""Several processes on one run (``accelerate launch --num_processes N -m medtune ...``, or torchrun).

Training is split by the libraries: Trainer wraps the model in DDP and accelerate gives each process its
share of every batch. medtune adds what the libraries leave to it:

* one process (rank 0) writes the run directory (``on_main``): it holds the run's lock and writes every
  model, log, prediction and report, while the others wait for it and get what it returned;
* generation and answer choosing give each process every N-th batch of prompts (``my_share``) and gather
  the answers back (``gather``), so predictions.jsonl and the mined pairs do not depend on N;
* a training stage's checkpoints record how many processes made them (train/common.py).

With one process every helper here does nothing and costs nothing. docs/scale.md has the commands.
"""

from __future__ import annotations

import os

import torch

from .errors import RankStopped


def launched() -> bool:
    """Started by a launcher with more than one process (accelerate launch and torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str) -> None:
    """Join the launcher's process group through accelerate, as Trainer does later: gloo on a CPU, the
    GPUs' backend (NCCL) on GPUs, where it also picks this process's GPU. The other ranks' console goes
    quiet: rank 0 speaks for the run."""
    if not launched() or torch.distributed.is_initialized():
        return
    from accelerate import PartialState

    from .progress import console

    PartialState(cpu=device == "cpu")
    console.quiet = not is_main()


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by rank 0 alone (it writes the run's files), the others waiting for it;
    every process gets its result. A failure on rank 0 stops the others too, instead of leaving them
    waiting at the next step."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    box, failure = [None], None
    if is_main():
        try:
            box = [("done", fn(*args, **kwargs))]
        except BaseException as exc:  # told to the others before it propagates here
            failure = exc
            box = [("failed", f"{type(exc).__name__}: {exc}")]
    torch.distributed.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    status, value = box[0]
    if status == "failed":
        raise RankStopped(f"process 0 stopped ({value})")
    return value


def my_share(items: list, models: list = ()) -> list:
    """This process's share of ``items``: every N-th one from its rank on. Callers share whole batches, so a
    batch is computed alike whichever process computes it. All of them where the processes hold shards of the
    ``models``' weights (``in_lockstep``)."""
    return items if in_lockstep(models) else items[rank()::world_size()]


def in_lockstep(models: list) -> bool:
    """Whether the processes hold shards of these models' weights (DeepSpeed ZeRO-3, FSDP: DPO's collapse guard
    generates with the model in training): every forward pass then gathers weights from all of them, so each
    process must make the same calls (generate keeps their lengths in step itself, ``synced_gpus``)."""
    if world_size() == 1 or not models:
        return False
    from transformers.integrations import is_deepspeed_zero3_enabled, is_fsdp_managed_module

    return is_deepspeed_zero3_enabled() or any(is_fsdp_managed_module(model) for model in models)


def gather(pieces: dict) -> dict:
    """Every process's ``{index: result}`` merged, on every process."""
    if world_size() == 1:
        return pieces
    everyone: list = [None] * world_size()
    torch.distributed.all_gather_object(everyone, pieces)
    return {key: value for part in everyone for key, value in part.items()}


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()
