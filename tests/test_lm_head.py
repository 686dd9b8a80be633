"""TRL's fused LM head on a CPU: medtune makes it score only the completion tokens.

The compact path must be the same math as TRL's score-every-position path: the
same loss and the same gradients, only less work.
"""

from __future__ import annotations

import torch

from medtune.models import load_model
from medtune.train.common import compact_lm_head_everywhere


def fused_loss_and_grads(model, batch: dict, compact: bool):
    from trl.trainer import utils as trl_utils

    patched = trl_utils._use_triton
    if not compact:  # TRL's own choice for a CPU tensor
        from trl.kernels.chunked_logprob import _use_triton as original

        trl_utils._use_triton = original
    try:
        model.zero_grad()
        out = model(**batch, fused_lm_head=True)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    finally:
        trl_utils._use_triton = patched


def test_compact_lm_head_gives_trls_loss_and_gradients(tiny_model):
    from trl.trainer.utils import add_fused_lm_head

    assert compact_lm_head_everywhere(), "TRL's fused-head internals moved: the CPU speed-up is lost"
    assert compact_lm_head_everywhere()  # idempotent
    from trl.trainer import utils as trl_utils

    assert trl_utils._use_triton(torch.device("cpu"))

    model, tokenizer, _ = load_model(tiny_model, "cpu")
    add_fused_lm_head(model)
    torch.manual_seed(0)
    input_ids = torch.randint(3, len(tokenizer), (3, 24))
    labels = input_ids.clone()
    labels[:, :18] = -100  # the prompt: no loss
    labels[2, 18:20] = -100
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    loss_full, grads_full = fused_loss_and_grads(model, batch, compact=False)
    loss_compact, grads_compact = fused_loss_and_grads(model, batch, compact=True)
    assert torch.allclose(loss_full, loss_compact, atol=1e-6)
    assert grads_full.keys() == grads_compact.keys() and grads_full
    for name in grads_full:
        assert torch.allclose(grads_full[name], grads_compact[name], atol=1e-6), name


def test_sft_training_runs_with_the_compact_head(tiny_model, tmp_path, monkeypatch):
    """train_sft switches TRL to the compact path, and PEFT to the fused LoRA forward, itself: a user never has to."""
    from peft.tuners.lora.layer import Linear
    from trl.kernels.chunked_logprob import _use_triton as original
    from trl.trainer import utils as trl_utils

    from medtune.config import load_config
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.tasks import get_task
    from medtune.train.sft import train_sft

    monkeypatch.setattr(trl_utils, "_use_triton", original)  # as a fresh process has it
    monkeypatch.setattr(Linear, "forward", getattr(Linear.forward, "peft_forward", Linear.forward))
    task = get_task("text_classification")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = load_config(overrides={"sft": {"max_steps": 1, "batch_size": 2, "max_length": 2048}}).sft
    train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:2], settings,
              tmp_path / "sft", "cpu", 0)
    assert getattr(trl_utils._use_triton, "_medtune", False)
    assert trl_utils._use_triton(torch.device("cpu"))
    assert getattr(Linear.forward, "_medtune", False)


def test_a_bf16_head_is_cast_to_fp32_once_for_its_gradient(tiny_model, monkeypatch):
    """TRL accumulates the hidden states' gradient in fp32 and, on a CPU, casts the bf16 head's vocabulary
    chunks to fp32 at every backward. Inside ``lm_head_cast_once`` the frozen head is cast once for all
    backward passes, and the gradients keep every bit."""
    from peft import LoraConfig, get_peft_model
    from trl.kernels import chunked_logprob
    from trl.trainer.utils import add_fused_lm_head

    from medtune.models import use_precision
    from medtune.train.common import frozen_weights_in_compute_format, lm_head_cast_once

    compact_lm_head_everywhere()
    base, tokenizer, _ = load_model(tiny_model, "cpu")
    add_fused_lm_head(base)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    input_ids = torch.randint(3, len(tokenizer), (2, 20))
    labels = input_ids.clone()
    labels[:, :14] = -100
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    head = model.get_output_embeddings()
    casts = []
    to_fp32 = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda t, *a, **k: (
        casts.append(1) if t.untyped_storage().data_ptr() == head.weight.untyped_storage().data_ptr() else None)
        or to_fp32(t, *a, **k))

    def two_backward_passes():
        casts.clear()
        grads = []
        for _ in range(2):
            model.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**batch, fused_lm_head=True).loss
            loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return grads, len(casts)

    use_precision("bf16")  # the conftest puts the default back
    with frozen_weights_in_compute_format(model, "cpu"):
        assert head.weight.dtype == torch.bfloat16
        trls, trl_casts = two_backward_passes()
        with lm_head_cast_once(model, "cpu"):
            once, our_casts = two_backward_passes()
        assert chunked_logprob._addmm_fp32.__module__ == chunked_logprob.__name__  # TRL's own again
    assert trl_casts == 2 and our_casts == 1  # one vocabulary chunk in the tiny model, two backward passes
    for mine, theirs in zip(once, trls):
        assert mine.keys() == theirs.keys() and mine
        for name in mine:
            assert torch.equal(mine[name], theirs[name]), name
