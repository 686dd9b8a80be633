"""The training piece that touches TRL's fused LM head (accel/training.py): the same loss and gradients as
TRL's own path, and TRL as it was once the block ends."""

from __future__ import annotations

import torch

from medtune.accel.training import compact_lm_head
from medtune.models import load_model


def batch_for(tokenizer, rows: int, length: int, prompt: int) -> dict:
    torch.manual_seed(0)
    input_ids = torch.randint(3, len(tokenizer), (rows, length))
    labels = input_ids.clone()
    labels[:, :prompt] = -100  # the prompt: no loss
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def loss_and_grads(model, batch: dict):
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compact_lm_head_gives_trls_loss_and_gradients_and_leaves_trl_as_it_was(tiny_model):
    from trl.trainer import utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    model, tokenizer, _ = load_model(tiny_model, "cpu")
    add_fused_lm_head(model)
    batch = batch_for(tokenizer, 3, 24, 18)
    batch["labels"][2, 18:20] = -100
    original = trl_utils._use_triton
    loss_trl, grads_trl = loss_and_grads(model, batch)
    with compact_lm_head():
        assert trl_utils._use_triton(torch.device("cpu"))
        loss_compact, grads_compact = loss_and_grads(model, batch)
    assert trl_utils._use_triton is original
    assert torch.allclose(loss_trl, loss_compact, atol=1e-6)
    assert grads_trl.keys() == grads_compact.keys() and grads_trl
    for name in grads_trl:
        assert torch.allclose(grads_trl[name], grads_compact[name], atol=1e-6), name
