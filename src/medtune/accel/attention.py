"""Attention for bf16 on a CPU, generating and training: two plain matmuls over the key/value heads
(the ``grouped_attention`` piece).

torch's CPU flash kernel (what ``sdpa`` runs there) runs far below the matmul rate in bf16 on small models'
shapes; scores by one batched matmul, a softmax and a second matmul run near it (dev/LOG.md). The query heads
that share a key/value head (grouped-query attention) are stacked as rows of one matmul, so keys and values
are never copied per query head, as ``repeat_kv`` does.

In fp32 the two matmuls were no faster than the kernel, so only bf16 on a CPU runs this: the copy generation
uses (``generation.generation_copy``) and training under autocast (``training.py``). Training keeps each
layer's probabilities for the backward, where the kernel keeps one number a query row, so above
``TRAINING_SCORES`` scores a call goes to sdpa.

The scores round to bf16 before the softmax (as transformers' ``eager`` attention's do in bf16), where the
kernel keeps them in fp32; answers and gradients stay as close to fp32's as the kernel's (dev/LOG.md).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

GROUPED = "medtune_grouped"

# what this attention does not do: anything past softmax(q k^T * scale + mask) v goes to sdpa
_NOT_HANDLED = ("softcap", "s_aux", "sinks", "position_bias")

# 2**23 bf16 probabilities are 16 MB a layer kept for the backward; past that the two matmuls' forward and
# backward were no faster than the kernel's
TRAINING_SCORES = 2 ** 23


def grouped_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention contract: query (batch, heads, rows, dim), key and value (batch, kv heads,
    tokens, dim), a boolean mask (batch, 1, rows, tokens) or None; returns (batch, rows, heads, dim)."""
    batch, heads, rows, dim = query.shape
    groups, tokens = key.shape[1], key.shape[2]
    kept = torch.is_grad_enabled() and batch * heads * rows * tokens > TRAINING_SCORES
    if dropout or kept or kwargs.get("output_attentions") or any(kwargs.get(k) is not None for k in _NOT_HANDLED):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    per_group = heads // groups  # query head h reads key/value head h // per_group, as repeat_kv lays them out
    # the scale goes on the queries, dim numbers a row where the scores have one a token (the same bits where
    # it is a power of two, as 64 ** -0.5 is); scaling the scores in place cost the backward a copy of them
    query = query * (dim ** -0.5 if scaling is None else scaling)
    scores = torch.matmul(query.reshape(batch, groups, per_group * rows, dim), key.transpose(-1, -2))
    if attention_mask is not None:
        hidden = ~attention_mask  # (batch, 1, rows, tokens): the same mask for every head
    elif rows > 1 and (is_causal if is_causal is not None else getattr(module, "is_causal", True)):
        # sdpa_mask leaves out a mask that is causal alone
        hidden = torch.ones(rows, tokens, dtype=torch.bool, device=query.device).triu(tokens - rows + 1)
    else:
        hidden = None
    if hidden is not None:
        # the lowest finite value, not -inf: a row with nothing to see (a left pad with no prefix before it)
        # then averages instead of giving NaN, which its keys and values would carry into later rows.
        # Outside autograd: in a row that sees anything a hidden score's probability is 0, so the softmax's
        # backward gives it gradient 0 anyway, and autograd's masking of that gradient was one more pass.
        # The scores' rows are each key head's query heads one after another, so the mask repeats per head.
        per_row = hidden.repeat(*[1] * (hidden.dim() - 2), per_group, 1)
        with torch.no_grad():
            scores.masked_fill_(per_row, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, value).view(batch, heads, rows, dim)
    return out.transpose(1, 2).contiguous(), None


def attend_grouped(model) -> bool:
    """Switch a model that attends with sdpa to the grouped matmuls, and say whether it was switched: eager,
    flash and flex attention are left as they are."""
    if model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(GROUPED)
    return True


AttentionInterface.register(GROUPED, grouped_attention)
AttentionMaskInterface.register(GROUPED, sdpa_mask)  # the boolean masks sdpa takes
