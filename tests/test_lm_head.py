"""The training pieces that touch TRL's fused LM head (accel/training.py): the same loss and gradients as
TRL's own path, and TRL as it was once the block ends."""

from __future__ import annotations

import torch

from medtune.accel.training import bf16_frozen_weights, compact_lm_head, lm_head_cast_once
from medtune.models import load_model


def batch_for(tokenizer, rows: int, length: int, prompt: int) -> dict:
    torch.manual_seed(0)
    input_ids = torch.randint(3, len(tokenizer), (rows, length))
    labels = input_ids.clone()
    labels[:, :prompt] = -100  # the prompt: no loss
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def loss_and_grads(model, batch: dict, autocast: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
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


def test_a_bf16_head_cast_once_gives_every_bit_of_trls_gradients(tiny_model):
    """Inside ``lm_head_cast_once`` the frozen bf16 head is cast to fp32 once for all backward passes, as TRL
    casts it chunk by chunk at every backward: the gradients keep every bit, over two steps."""
    from peft import LoraConfig, get_peft_model
    from trl.kernels import chunked_logprob
    from trl.trainer.utils import add_fused_lm_head

    base, tokenizer, _ = load_model(tiny_model, "cpu")
    add_fused_lm_head(base)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    batch = batch_for(tokenizer, 2, 20, 14)
    original = chunked_logprob._addmm_fp32

    def two_steps():
        return [loss_and_grads(model, batch, autocast=True)[1] for _ in range(2)]

    with compact_lm_head(), bf16_frozen_weights(model, torch.bfloat16):
        assert model.get_output_embeddings().weight.dtype == torch.bfloat16
        trls = two_steps()
        with lm_head_cast_once(model):
            once = two_steps()
    assert chunked_logprob._addmm_fp32 is original
    assert model.get_output_embeddings().weight.dtype == torch.float32  # the fp32 head back
    for mine, theirs in zip(once, trls):
        assert mine.keys() == theirs.keys() and mine
        for name in mine:
            assert torch.equal(mine[name], theirs[name]), name
