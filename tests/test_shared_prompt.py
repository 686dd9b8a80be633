"""DPO pairs with the prompt computed once: the same per-token outputs and gradients as TRL's layout."""

from __future__ import annotations

import pytest
import torch

from medtune.models import load_model
from medtune.train.shared_prompt import SharedPromptForward, pack

FIELDS = ("log_probs", "entropy", "mean_logits", "is_top1")


def trl_batch(pairs: list[tuple[list[int], list[int], list[int]]], pad_id: int = 2) -> dict:
    """TRL's preference collator layout: [chosen rows, rejected rows], prompt + completion, right-padded."""
    rows = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        attention[i, :len(p) + len(c)] = 1
        completion[i, len(p):len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


PAIRS = [  # prompts of different lengths; completions longer, shorter and as long as each other
    ([5, 17, 40, 41, 42, 9], [30, 31, 2], [33, 2]),
    ([5, 18, 60, 61, 62, 63, 64, 65, 9], [34, 2], [35, 36, 37, 2]),
    ([5, 19, 9], [38, 39, 2], [50, 51, 2]),
]


def fused_model(tiny_model, attention: str):
    from trl.trainer.utils import add_fused_lm_head

    model, _, _ = load_model(tiny_model, "cpu")
    model.config._attn_implementation = attention
    add_fused_lm_head(model, outputs=FIELDS)
    return model


def forward(model, batch: dict):
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                 labels=labels, fused_lm_head=True)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_row_per_pair_gives_trl_layouts_outputs_and_gradients(tiny_model, attention):
    model = fused_model(tiny_model, attention)
    batch = trl_batch(PAIRS)
    model.zero_grad()
    expected = forward(model, batch)
    expected.log_probs.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]

    shared = SharedPromptForward(model, pad_id=2)
    model.zero_grad()
    with shared.batch(batch):
        got = forward(model, batch)
    got.log_probs.sum().backward()
    assert shared.batches == {"packed": 1, "trl_layout": 0}
    assert got.log_probs.shape == expected.log_probs.shape
    assert torch.equal(got.label_mask, expected.label_mask)
    assert expected.log_probs[expected.label_mask].abs().min() > 0  # the comparison below is not of zeros
    for name in FIELDS:
        assert torch.allclose(getattr(got, name).float(), getattr(expected, name).float(), atol=1e-5), name
    for p, g in zip(model.parameters(), expected_grads):
        assert torch.allclose(p.grad, g, atol=1e-5)


def test_the_packed_rows_hold_each_prompt_once(tiny_model):
    batch = trl_batch(PAIRS)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    packed = pack(batch["input_ids"], batch["attention_mask"], batch["completion_mask"], labels, pad_id=2)
    prompt, chosen, rejected = PAIRS[0]
    row = prompt[:-1] + [prompt[-1]] + chosen + [prompt[-1]] + rejected
    assert packed.input_ids[0, :len(row)].tolist() == row
    start = len(prompt) - 1
    assert packed.position_ids[0, :len(row)].tolist() == \
        list(range(start)) + list(range(start, start + 1 + len(chosen))) + list(range(start, start + 1 + len(rejected)))
    allowed = packed.allowed[0, 0]
    first_rejected = len(prompt) + len(chosen)  # the rejected branch's copy of the last prompt token
    assert not allowed[first_rejected, start:first_rejected].any()  # sees no chosen token
    assert allowed[first_rejected, :start].all()  # sees the shared prompt
    tokens = sum(len(p) + len(c) + len(r) + 1 for p, c, r in PAIRS)
    assert tokens < 0.75 * int(batch["attention_mask"].sum())


def test_pairs_whose_prompts_differ_keep_trl_layout(tiny_model):
    model = fused_model(tiny_model, "sdpa")
    batch = trl_batch(PAIRS)
    batch["input_ids"][len(PAIRS), 1] = 77  # the first rejected row's prompt differs, e.g. after truncation
    expected = forward(model, batch)
    shared = SharedPromptForward(model, pad_id=2)
    with shared.batch(batch):
        got = forward(model, batch)
    assert shared.batches == {"packed": 0, "trl_layout": 1}
    assert torch.equal(got.log_probs, expected.log_probs)


def test_calls_outside_a_dpo_batch_are_untouched(tiny_model):
    model = fused_model(tiny_model, "sdpa")
    shared = SharedPromptForward(model, pad_id=2)
    batch = trl_batch(PAIRS)
    with shared.batch(batch):
        other = trl_batch(PAIRS)  # equal values, another tensor: e.g. the task check's generation
        forward(model, other)
        model(input_ids=other["input_ids"][:1, :4])  # a plain forward, logits
    assert shared.batches == {"packed": 0, "trl_layout": 0}


def test_a_dpo_batch_with_arguments_packing_does_not_know_keeps_trl_layout_and_is_counted(tiny_model):
    model = fused_model(tiny_model, "sdpa")
    shared = SharedPromptForward(model, pad_id=2)
    batch = trl_batch(PAIRS)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with shared.batch(batch):
        got = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    fused_lm_head=True, output_hidden_states=True)
    assert shared.batches == {"packed": 0, "trl_layout": 1}
    assert got.log_probs.shape == (len(batch["input_ids"]), batch["input_ids"].shape[1] - 1)
