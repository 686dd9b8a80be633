"""The grouped attention that bf16 generation runs on a CPU computes what sdpa computes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from medtune.accel.attention import grouped_attention

GQA = SimpleNamespace(num_key_value_groups=2, is_causal=True)  # 4 query heads over 2 key/value heads


def qkv(batch: int, rows: int, tokens: int):
    """Query, key and value in fp64, so that the two ways of computing agree to rounding."""
    torch.manual_seed(0)
    return (torch.randn(batch, 4, rows, 8, dtype=torch.float64), torch.randn(batch, 2, tokens, 8, dtype=torch.float64),
            torch.randn(batch, 2, tokens, 8, dtype=torch.float64))


def left_padded_mask(rows: int, tokens: int, pads: list[int], prefix: int = 0) -> torch.Tensor:
    """Causal, with ``pads[i]`` padding tokens after a shared ``prefix`` in row i: (batch, 1, rows, tokens)."""
    mask = torch.ones(rows, tokens, dtype=torch.bool).tril(tokens - rows).repeat(len(pads), 1, 1, 1)
    for i, n in enumerate(pads):
        mask[i, :, :, prefix:prefix + n] = False
    return mask


@pytest.mark.parametrize("rows, tokens, pads, prefix", [
    (6, 10, [0, 3], 4),  # a chunk of prompts after a cached prefix, the second padded
    (1, 10, [0, 3], 4),  # one decoding step
    (5, 5, [0, 2], 0)])  # prompts alone: the padded row's first queries see nothing
def test_grouped_attention_matches_sdpa_where_a_row_sees_anything(rows, tokens, pads, prefix):
    query, key, value = qkv(len(pads), rows, tokens)
    mask = left_padded_mask(rows, tokens, pads, prefix)
    grouped, _ = grouped_attention(GQA, query, key, value, mask, scaling=0.3)
    reference, _ = sdpa_attention_forward(GQA, query, key, value, mask, scaling=0.3)
    assert grouped.shape == reference.shape == (len(pads), rows, 4, 8)
    seen = mask.any(-1)[:, 0]  # (batch, rows): query rows that see at least one token
    torch.testing.assert_close(grouped[seen], reference[seen])
    assert torch.isfinite(grouped).all()  # a row that sees nothing must not carry NaN into the cache
    if not seen.all():
        assert not torch.equal(grouped[~seen], torch.zeros_like(grouped[~seen]))  # the case really arose


def test_grouped_attention_without_a_mask_is_causal_for_a_prompt_and_open_for_one_token():
    query, key, value = qkv(2, 7, 7)
    grouped, _ = grouped_attention(GQA, query, key, value, None)
    torch.testing.assert_close(grouped, sdpa_attention_forward(GQA, query, key, value, None)[0])
    query, key, value = qkv(2, 1, 7)
    grouped, _ = grouped_attention(GQA, query, key, value, None)
    torch.testing.assert_close(grouped, sdpa_attention_forward(GQA, query, key, value, None)[0])


def test_grouped_attention_leaves_a_position_bias_to_sdpa():
    query, key, value = qkv(2, 5, 9)
    mask = left_padded_mask(5, 9, [0, 1], prefix=3)
    bias = torch.randn(2, 1, 5, 9, dtype=torch.float64)
    grouped, _ = grouped_attention(GQA, query, key, value, mask, position_bias=bias)
    torch.testing.assert_close(grouped, sdpa_attention_forward(GQA, query, key, value, mask, position_bias=bias)[0])
    assert not torch.allclose(grouped, grouped_attention(GQA, query, key, value, mask)[0])  # the bias counted


def test_grouped_attention_in_bf16_stays_near_fp64():
    query, key, value = qkv(8, 12, 30)
    mask = left_padded_mask(12, 30, [0, 2, 4, 0, 1, 3, 0, 5], prefix=10)
    exact, _ = sdpa_attention_forward(GQA, query, key, value, mask)
    low, _ = grouped_attention(GQA, query.bfloat16(), key.bfloat16(), value.bfloat16(), mask)
    assert low.dtype == torch.bfloat16
    assert (low.double() - exact).abs().max() < 0.05  # bf16 rounding of scores and probabilities, no more


def test_grouped_attention_without_a_mask_follows_a_module_that_is_not_causal():
    query, key, value = qkv(2, 6, 6)
    encoder = SimpleNamespace(num_key_value_groups=2, is_causal=False)
    grouped, _ = grouped_attention(encoder, query, key, value, None)
    torch.testing.assert_close(grouped, sdpa_attention_forward(encoder, query, key, value, None)[0])
    assert not torch.allclose(grouped, grouped_attention(GQA, query, key, value, None)[0])


def packed_mask(lengths: list[int]) -> torch.Tensor:
    """Training's packed row: a shared prefix, then examples that each see the prefix and themselves."""
    width = sum(lengths)
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    sees = (owner[:, None] == owner[None, :]) | (owner[None, :] == 0)
    return (sees & torch.ones(width, width, dtype=torch.bool).tril())[None, None]


def test_grouped_attention_trains_as_sdpa_does():
    """Training (SFT's shared-prefix rows) takes the gradients of queries, keys and values through it."""
    mask = packed_mask([4, 3, 5])
    grads = {}
    for name, attention in (("grouped", grouped_attention), ("sdpa", sdpa_attention_forward)):
        query, key, value = (t.requires_grad_() for t in qkv(1, 12, 12))
        out, _ = attention(GQA, query, key, value, mask, scaling=0.3)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
        grads[name] = (out.detach(), query.grad, key.grad, value.grad)
    for mine, theirs in zip(grads["grouped"], grads["sdpa"]):
        torch.testing.assert_close(mine, theirs)


def test_grouped_attention_in_bf16_scales_queries_to_the_same_bits_as_scores():
    """Scaling the queries instead of the scores changes no bit in bf16 where the scale is a power of two
    (64 ** -0.5 for the embedded model's heads of 64)."""
    query, key, value = (t.bfloat16() for t in qkv(2, 12, 30))
    mask = left_padded_mask(12, 30, [0, 2], prefix=10)
    scores = torch.matmul(query.reshape(2, 2, 24, 8), key.transpose(-1, -2)).view(2, 2, 2, 12, 30).mul_(0.25)
    scores.masked_fill_(~mask[:, :, None], torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1).view(2, 2, 24, 30)
    expected = torch.matmul(probs, value).view(2, 4, 12, 8).transpose(1, 2)
    assert torch.equal(grouped_attention(GQA, query, key, value, mask, scaling=0.25)[0], expected)
