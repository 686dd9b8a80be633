"""medtune's LoRA forward adds the low-rank update inside one matmul (train/common.py).

It must be PEFT's math: the same outputs and gradients, and PEFT's own path
wherever it cannot fuse (adapters disabled, as DPO's reference; several adapters).
"""

from __future__ import annotations

import unittest.mock

import pytest
import torch

from medtune.models import load_model, lora_config
from medtune.train.common import fused_lora_everywhere, lora_dropout


def lora_model(tiny_model, dropout: float):
    from peft import get_peft_model

    model, tokenizer, _ = load_model(tiny_model, "cpu")
    model = get_peft_model(model, lora_config(8, 16, dropout, "all-linear"))
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: give the update something to add
            param.data.normal_(0, 0.05)
    return model.train(), tokenizer


def masks_as_medtune_draws(dropout, x):
    """PEFT's dropout module with the mask medtune's draws, scaled in the input as torch's dropout does."""
    dropped, rescale = lora_dropout(dropout, x)
    return dropped * rescale


def loss_and_grads(model, batch: dict, forward, seed: int = 0):
    from peft.tuners.lora.layer import Linear

    torch.manual_seed(seed)  # the same dropout masks on both paths
    model.zero_grad()
    with (unittest.mock.patch.object(Linear, "forward", forward),
          unittest.mock.patch.object(torch.nn.Dropout, "forward", masks_as_medtune_draws)):
        out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_lora_gives_pefts_outputs_and_gradients(tiny_model, dropout):
    from peft.tuners.lora.layer import Linear

    assert fused_lora_everywhere(), "PEFT's LoRA layer moved: the CPU speed-up is lost"
    assert fused_lora_everywhere()  # idempotent
    fused, peft_forward = Linear.forward, Linear.forward.peft_forward
    model, tokenizer = lora_model(tiny_model, dropout)
    input_ids = torch.randint(3, len(tokenizer), (2, 20))
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}

    seen = []  # the fused path is the one taken: its output comes from the in-place addmm
    layer = next(m for m in model.modules() if isinstance(m, Linear))
    hook = layer.register_forward_hook(
        lambda mod, args, out: seen.append([out.grad_fn.name()] + [f.name() for f, _ in out.grad_fn.next_functions if f]))
    logits_peft, grads_peft = loss_and_grads(model, batch, peft_forward)
    logits_fused, grads_fused = loss_and_grads(model, batch, fused)
    hook.remove()
    assert seen[0][0] == "AddBackward0" and seen[1] == ["ViewBackward0", "AddmmBackward0"]
    assert torch.allclose(logits_peft, logits_fused, atol=1e-5)
    assert grads_peft.keys() == grads_fused.keys() and any("lora_A" in n for n in grads_fused)
    for name in grads_peft:
        assert torch.allclose(grads_peft[name], grads_fused[name], atol=1e-5, rtol=1e-4), name


def test_fused_lora_leaves_what_it_cannot_fuse_to_peft(tiny_model):
    from peft.tuners.lora.layer import Linear

    fused_lora_everywhere()
    model, tokenizer = lora_model(tiny_model, 0.0)
    layer = next(m for m in model.modules() if isinstance(m, Linear))
    x = torch.randn(2, 5, layer.in_features)
    with torch.no_grad():
        with model.disable_adapter():  # DPO's reference model
            assert torch.equal(layer(x), layer.base_layer(x))
        model.add_adapter("second", lora_config(4, 8, 0.0, "all-linear"))
        model.base_model.set_adapter(["default", "second"])
        for param in layer.lora_B["second"].parameters():
            param.data.normal_(0, 0.05)
        both = layer(x)
        expected = Linear.forward.peft_forward(layer, x)
        assert torch.equal(both, expected)  # two adapters: PEFT's own sum
        model.base_model.set_adapter("default")
        assert not torch.allclose(layer(x), both)


def test_fused_lora_with_a_bias_and_any_input_shape():
    """Models with biased projections (Qwen2's q/k/v) and inputs of any rank take the fused path correctly."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear

    fused_lora_everywhere()
    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.Linear(20, 6, bias=False)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["0", "1"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    for shape in [(5, 12), (2, 3, 12), (2, 2, 3, 12)]:
        x = torch.randn(*shape, requires_grad=True)
        results = []
        for forward in (Linear.forward.peft_forward, Linear.forward):
            model.zero_grad()
            x.grad = None
            with unittest.mock.patch.object(Linear, "forward", forward):
                out = model(x)
            out.pow(2).sum().backward()
            results.append((out.detach(), x.grad.clone(),
                            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        (out_p, gx_p, g_p), (out_f, gx_f, g_f) = results
        assert out_f.shape == out_p.shape == (*shape[:-1], 6)
        assert torch.allclose(out_p, out_f, atol=1e-6) and torch.allclose(gx_p, gx_f, atol=1e-6)
        assert g_p.keys() == g_f.keys() and len(g_p) == 4
        for name in g_p:
            assert torch.allclose(g_p[name], g_f[name], atol=1e-6), name


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to bf16 rounding: within 2% of ``b``'s norm."""
    return bool((a.float() - b.float()).norm() <= 0.02 * b.float().norm())


def test_fused_lora_under_bf16_autocast_on_a_cpu(tiny_model):
    """Training in bf16 on a CPU holds the frozen base weights in bf16 (frozen_weights_in_compute_format) and
    runs under autocast: there the fused path casts the layer's input to bf16 once for the base product and
    the update, where PEFT's path casts it to the adapter's fp32 and autocast casts it back. Outputs and
    gradients are PEFT's up to bf16 rounding. A base left in fp32 under autocast keeps PEFT's path."""
    from peft.tuners.lora.layer import Linear

    from medtune.models import use_precision
    from medtune.train.common import fusable_adapter, frozen_weights_in_compute_format

    fused_lora_everywhere()
    fused, peft_forward = Linear.forward, Linear.forward.peft_forward
    model, tokenizer = lora_model(tiny_model, 0.0)
    input_ids = torch.randint(3, len(tokenizer), (2, 20))
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids}
    layer = next(m for m in model.modules() if isinstance(m, Linear))
    x = torch.randn(3, layer.in_features)
    use_precision("bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fusable_adapter(layer, x, (), {}) is None  # fp32 base: autocast casts it, PEFT's path
        with frozen_weights_in_compute_format(model, "cpu"):
            assert fusable_adapter(layer, x, (), {})[-1] == torch.bfloat16
            seen = []
            hook = layer.register_forward_hook(lambda mod, args, out: seen.append(
                (out.dtype, [out.grad_fn.name()] + [f.name() for f, _ in out.grad_fn.next_functions if f])))
            logits_peft, grads_peft = loss_and_grads(model, batch, peft_forward)
            logits_fused, grads_fused = loss_and_grads(model, batch, fused)
            hook.remove()
    assert seen[0][0] == torch.bfloat16 and seen[0][1][0] == "AddBackward0"  # PEFT: base + B(A(x)) * scaling
    assert seen[1] == (torch.bfloat16, ["ViewBackward0", "AddmmBackward0"])  # one in-place addmm, in bf16
    assert close(logits_fused, logits_peft)
    assert grads_peft.keys() == grads_fused.keys() and any("lora_A" in n for n in grads_fused)
    for name in grads_peft:
        assert close(grads_fused[name], grads_peft[name]), name
    with frozen_weights_in_compute_format(model, "cpu"):
        assert fusable_adapter(layer, x, (), {}) is None  # no autocast: fp32 input, bf16 base, PEFT's path


def test_fused_lora_under_bf16_autocast_with_a_bias():
    """A biased projection (Qwen2's q/k/v) keeps its fp32 bias while the weight is held in bf16: the fused
    path adds it in bf16, as autocast would."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear

    from medtune.models import use_precision
    from medtune.train.common import frozen_weights_in_compute_format

    fused_lora_everywhere()
    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(12, 20)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    x = torch.randn(2, 3, 12)
    use_precision("bf16")
    with frozen_weights_in_compute_format(model, "cpu"), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.base_model.model[0].base_layer.bias.dtype == torch.float32
        fused = model(x)
        with unittest.mock.patch.object(Linear, "forward", Linear.forward.peft_forward):
            expected = model(x)
    assert fused.dtype == torch.bfloat16 and fused.grad_fn.next_functions[0][0].name() == "AddmmBackward0"
    assert close(fused, expected)


def test_lora_dropout_mask_on_a_cpu():
    """The CPU's mask (16 random bits an element, four from each 64-bit draw): each element dropped with
    probability p in each of the four 16-bit lanes of a draw, independently of its neighbours, a fresh mask
    each call, the same one for the same seed; evaluation and p = 0 leave the input alone."""
    dropout = torch.nn.Dropout(0.05).train()
    rows = torch.ones(1000, 4096)
    torch.manual_seed(0)
    dropped, rescale = lora_dropout(dropout, rows)
    assert rescale == pytest.approx(1 / 0.95) and dropped.dtype == rows.dtype and dropped.shape == rows.shape
    assert set(dropped.unique().tolist()) == {0.0, 1.0}
    lost = (dropped == 0).float()
    for lane in range(4):  # 1,024,000 elements a lane: a standard error of 2.2e-4
        assert lost.view(-1, 4)[:, lane].mean().item() == pytest.approx(0.05, abs=1.5e-3), lane
    pairs = lost.view(-1, 2)  # neighbours are independent: both dropped with probability p^2
    assert (pairs[:, 0] * pairs[:, 1]).mean().item() == pytest.approx(0.05 ** 2, abs=4e-4)
    again, _ = lora_dropout(dropout, rows)
    assert not torch.equal(again, dropped)
    torch.manual_seed(0)
    assert torch.equal(lora_dropout(dropout, rows)[0], dropped)
    odd = torch.randn(3, 7)  # a count that is not a multiple of four
    dropped_odd, _ = lora_dropout(dropout, odd)
    assert ((dropped_odd == 0) | (dropped_odd == odd)).all()
    for idle in (torch.nn.Dropout(0.05).eval(), torch.nn.Dropout(0.0).train(), torch.nn.Identity()):
        same, rescale = lora_dropout(idle, odd)
        assert torch.equal(same, odd) and rescale == 1.0
