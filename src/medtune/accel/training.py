"""The speed pieces of SFT and DPO training, entered once per trainer: ``sft(trainer, compute)`` and
``dpo(trainer, compute)`` are blocks around ``trainer.train()``; every change they make is undone when
the block ends.

* ``compact_lm_head``: TRL's fused LM head projects only the positions whose label is scored on CUDA
  and XPU, and every position elsewhere (to keep shapes fixed for compiling backends); on a CPU the
  compact path is the same math with less work.
* ``grouped_attention``: attention.py's two matmuls in place of torch's CPU flash kernel.
* ``shared_prompt`` and ``shared_trunk``: shared_prompt.py and shared_trunk.py.
"""

from __future__ import annotations

import contextlib

import torch

from .attention import attend_grouped
from .shared_prompt import Sharing, example_trees, pair_trees
from .shared_trunk import SharedTrunk

@contextlib.contextmanager
def compact_lm_head():
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


@contextlib.contextmanager
def grouped_attention(model):
    switched = attend_grouped(model)
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation("sdpa")


@contextlib.contextmanager
def common(trainer, compute):
    """The pieces SFT and DPO share, each where the run uses it and the set-up allows it."""
    model = trainer.model
    bf16 = compute.device == "cpu" and compute.dtype == torch.bfloat16
    with contextlib.ExitStack() as stack:
        if compute.uses("compact_lm_head") and compute.device == "cpu":
            stack.enter_context(compact_lm_head())
        if compute.uses("grouped_attention") and bf16:
            stack.enter_context(grouped_attention(model))
        yield


@contextlib.contextmanager
def sft(trainer, compute):
    """SFT's pieces around ``trainer.train()``; yields what the shared prompt did (or None)."""
    with common(trainer, compute), contextlib.ExitStack() as stack:
        sharing = None
        if compute.uses("shared_prompt"):
            sharing = Sharing([fused_model(trainer)], pad_id(trainer), example_trees)
            stack.callback(sharing.unwrap)
            stack.enter_context(around(trainer, "compute_loss", sharing.batch))
        yield sharing


@contextlib.contextmanager
def dpo(trainer, compute):
    """DPO's pieces around ``trainer.train()``; yields what the shared prompt did (or None)."""
    with common(trainer, compute), contextlib.ExitStack() as stack:
        sharing, trunk = None, None
        if compute.uses("shared_prompt"):
            sharing = Sharing([fused_model(trainer), trainer.ref_model], pad_id(trainer), pair_trees)
            stack.callback(sharing.unwrap)
        # the reference is the policy with its adapters disabled: the frozen layers below them are shared
        if (compute.uses("shared_trunk") and trainer.ref_model is None and is_peft(trainer.model)
                and not trainer.args.gradient_checkpointing):
            trunk = SharedTrunk(fused_model(trainer))

        @contextlib.contextmanager
        def batch(inputs):
            with sharing.batch(inputs) if sharing else contextlib.nullcontext(), \
                    trunk.batch() if trunk else contextlib.nullcontext():
                yield

        if sharing or trunk:  # TRL's policy and reference passes of a batch both run in _compute_loss
            stack.enter_context(around(trainer, "_compute_loss", batch))
        yield sharing


@contextlib.contextmanager
def around(trainer, name: str, block):
    """``trainer.<name>(model, inputs, ...)`` runs inside ``block(inputs)`` for the duration; then the class's
    method again."""
    original = getattr(trainer, name)

    def call(model, inputs, *args, **kwargs):
        with block(inputs):
            return original(model, inputs, *args, **kwargs)

    setattr(trainer, name, call)
    try:
        yield
    finally:
        delattr(trainer, name)


def pad_id(trainer) -> int:
    return trainer.processing_class.pad_token_id or 0


def is_peft(model) -> bool:
    from accelerate.utils import is_peft_model

    return is_peft_model(model)


def fused_model(trainer):
    """The model whose forward TRL fused (under PEFT, the base model)."""
    return trainer.model.get_base_model() if is_peft(trainer.model) else trainer.model
