"""The speed pieces of SFT and DPO training, entered once per trainer: ``sft(trainer, compute)`` and
``dpo(trainer, compute)`` are blocks around ``trainer.train()``; every change they make is undone when
the block ends.

* ``compact_lm_head``: TRL's fused LM head projects only the positions whose label is scored on CUDA
  and XPU, and every position elsewhere (to keep shapes fixed for compiling backends); on a CPU the
  compact path is the same math with less work.
* ``bf16_frozen_weights``: under bf16 autocast every frozen weight is cast again at each use (autocast
  caches only the casts of weights that require grad); a bf16 copy held for the block is the same cast,
  done once. The embedding stays fp32 (a lookup), so a tied LM head is untied for the block.
* ``lm_head_cast_once``: TRL accumulates the hidden states' gradient in fp32 and, on a CPU, casts each
  vocabulary chunk of a bf16 head to fp32 at every backward; the head is frozen, so one cast serves.
* ``grouped_attention``: attention.py's two matmuls in place of torch's CPU flash kernel.
* ``shared_prompt`` and ``shared_trunk``: shared_prompt.py and shared_trunk.py.
"""

from __future__ import annotations

import contextlib

import torch

from .attention import attend_grouped
from .shared_prompt import Sharing, example_trees, pair_trees
from .shared_trunk import SharedTrunk

# the largest LM head kept as an fp32 copy for its gradient: a 128k x 2048 head (1 GB) is cast chunk by chunk
FP32_HEAD_MAX_BYTES = 2 ** 28


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
def bf16_frozen_weights(model, dtype: torch.dtype):
    held = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight.dtype == torch.float32 and not weight.requires_grad:
            held.append((module, weight))
            module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    try:
        yield
    finally:
        for module, weight in held:
            module.weight = weight


@contextlib.contextmanager
def lm_head_cast_once(model):
    from trl.kernels import chunked_logprob

    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if (weight is None or weight.dtype == torch.float32 or weight.requires_grad
            or weight.numel() * 4 > FP32_HEAD_MAX_BYTES):
        yield
        return
    original = chunked_logprob._addmm_fp32
    storage, cast = weight.untyped_storage().data_ptr(), {}

    def addmm_fp32(acc, a, b):
        if b.untyped_storage().data_ptr() != storage or acc.dtype != torch.float32:
            return original(acc, a, b)
        key = (b.storage_offset(), tuple(b.shape), b.stride())  # a chunk of the head
        if key not in cast:
            cast[key] = b.float()
        acc.addmm_(a.float(), cast[key])

    chunked_logprob._addmm_fp32 = addmm_fp32
    try:
        yield
    finally:
        chunked_logprob._addmm_fp32 = original


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
        if compute.uses("bf16_frozen_weights") and bf16:
            stack.enter_context(bf16_frozen_weights(model, compute.dtype))
        if compute.uses("lm_head_cast_once") and bf16:
            stack.enter_context(lm_head_cast_once(model))
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
