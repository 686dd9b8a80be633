"""Shared prompts computed once (DPO pairs, SFT batches): the same per-token outputs and gradients as TRL's layout."""

from __future__ import annotations

import pytest
import torch

from medtune.accel.shared_prompt import (SharedPromptForward, cheapest, cost, example_trees, key_cost, layout, pack,
                                         pair_trees)
from medtune.models import Compute, load_model

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


def fixed(size: int, trees=pair_trees):
    """A planner that always packs ``size`` pairs (or examples) per row."""
    return lambda inputs, labels: {size: trees(inputs, labels)[size]}


def assert_packing_matches_trl_layout(model, batch: dict, run, plan) -> None:
    """The packed forward (rows by ``plan``) gives TRL's layout's per-token outputs and gradients."""
    model.zero_grad()
    expected = run(model, batch)
    expected.log_probs.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]

    shared = SharedPromptForward(model, pad_id=2, plan=plan)
    model.zero_grad()
    with shared.batch(batch):
        got = run(model, batch)
    got.log_probs.sum().backward()
    assert shared.batches == {"packed": 1, "trl_layout": 0}
    assert got.log_probs.shape == expected.log_probs.shape
    assert torch.equal(got.label_mask, expected.label_mask)
    assert expected.log_probs[expected.label_mask].abs().min() > 0  # the comparison below is not of zeros
    for name in FIELDS:
        assert torch.allclose(getattr(got, name).float(), getattr(expected, name).float(), atol=1e-5), name
    for p, g in zip(model.parameters(), expected_grads):
        assert torch.allclose(p.grad, g, atol=1e-5)


@pytest.mark.parametrize("attention,size", [("sdpa", 1), ("eager", 1), ("sdpa", 2), ("sdpa", 3), ("eager", 3)])
def test_packed_pairs_give_trl_layouts_outputs_and_gradients(tiny_model, attention, size):
    assert_packing_matches_trl_layout(fused_model(tiny_model, attention), trl_batch(PAIRS), forward, fixed(size))


def labels_of(batch: dict):
    return batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)


def test_one_row_per_pair_holds_its_prompt_once(tiny_model):
    batch = trl_batch(PAIRS)
    labels = labels_of(batch)
    packed = layout(pair_trees(batch, labels)[1], labels, 2, (6, batch["input_ids"].shape[1] - 1), "cpu")
    order = sorted(range(3), key=lambda i: sum(map(len, PAIRS[i])))  # rows are sorted by length
    prompt, chosen, rejected = PAIRS[order[0]]
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


def test_pairs_in_one_row_share_their_common_prefix_and_see_nothing_of_each_other(tiny_model):
    batch = trl_batch(PAIRS)
    labels = labels_of(batch)
    packed = layout(pair_trees(batch, labels)[3], labels, 2, (6, batch["input_ids"].shape[1] - 1), "cpu")
    ids = packed.input_ids[0].tolist()
    assert ids.count(5) == 1  # the prompts' common first token, once for the three pairs
    assert packed.input_ids.shape[0] == 1
    allowed = packed.allowed[0, 0]
    second_pair = ids.index(17) if ids.index(17) > ids.index(19) else ids.index(19)  # whichever pair comes later
    assert allowed[second_pair, 0]  # sees the common prefix
    assert not allowed[second_pair, 1:second_pair].any()  # and nothing of the pair before it
    assert packed.position_ids[0, second_pair] == 1  # its prompt continues at the prefix's end


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


# ---------------------------------------------------------------- SFT: a batch's common prefix once

EXAMPLES = [  # (prompt, completion): a common prefix [5, 6, 7], own parts of different lengths
    ([5, 6, 7, 17, 40, 41, 9], [30, 31, 2]),
    ([5, 6, 7, 18, 60, 61, 62, 63, 64, 9], [34, 2]),
    ([5, 6, 7, 19, 9], [38, 39, 50, 2]),
    ([5, 6, 7, 20, 70, 9], [44, 2]),
]


def sft_batch(examples: list[tuple[list[int], list[int]]], pad_id: int = 2) -> dict:
    """TRL's SFT collator layout: prompt + completion, right-padded, labels on the completion only."""
    width = max(len(p) + len(c) for p, c in examples)
    ids = torch.full((len(examples), width), pad_id)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    for i, (p, c) in enumerate(examples):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        attention[i, :len(p) + len(c)] = 1
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def sft_forward(model, batch: dict):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                 labels=batch["labels"], fused_lm_head=True)


@pytest.mark.parametrize("attention,size", [("sdpa", 2), ("sdpa", 4), ("eager", 3), ("eager", 4)])
def test_packed_examples_give_trl_layouts_outputs_and_gradients(tiny_model, attention, size):
    assert_packing_matches_trl_layout(fused_model(tiny_model, attention), sft_batch(EXAMPLES), sft_forward,
                                      fixed(size, example_trees))


def test_a_packed_sft_row_holds_the_common_prefix_once():
    batch = sft_batch(EXAMPLES)
    trees = example_trees(batch, batch["labels"])
    packed = layout(trees[4], batch["labels"], 2, (4, batch["input_ids"].shape[1] - 1), "cpu")
    ids = packed.input_ids[0].tolist()
    assert ids[:3] == [5, 6, 7] and ids.count(5) == 1
    assert len(ids) == 3 + sum(len(p) + len(c) - 3 for p, c in EXAMPLES)
    second = 3 + min(len(p) + len(c) - 3 for p, c in EXAMPLES)  # the examples are sorted by length
    assert packed.position_ids[0, second] == 3  # each own part continues at the prefix's end
    allowed = packed.allowed[0, 0]
    assert allowed[second, :3].all() and not allowed[second, 3:second].any()


def test_a_scored_token_never_opens_a_node():
    # the whole prompt is common: the prefix stops one token short so that the first answer token's
    # predictor (the prompt's last token) sits in the example's own part
    batch = sft_batch([([5, 6, 7], [30, 2]), ([5, 6, 7], [31, 32, 2])])
    rows = example_trees(batch, batch["labels"])[2]
    assert rows[0][0].tokens == [5, 6]


class EmbeddedLike:  # the embedded model's shape (SmolLM2-135M-like): what the cost estimate reads
    hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size = 576, 9, 3, 64, 1536


def test_packing_is_chosen_only_where_it_costs_less():
    per_key = key_cost(EmbeddedLike())
    # triage-like: a long common prefix (177 tokens), short own parts: one packed row
    long_prefix = [(list(range(100, 277)) + list(range(300 + 100 * i, 390 + 100 * i)), [30, 2]) for i in range(4)]
    batch = sft_batch(long_prefix)
    packed = pack(example_trees(batch, batch["labels"]), batch["labels"], 2, per_key)
    assert packed is not None and packed.input_ids.shape == (1, 177 + 4 * 92)
    # summarization-like: a short prefix (28 tokens), long notes: one row of 4 notes would cost more attention
    # than the prefix saves, so TRL's rows stay
    long_own = [(list(range(100, 128)) + list(range(1000 + 500 * i, 1400 + 500 * i)), list(range(40, 80)))
                for i in range(4)]
    batch = sft_batch(long_own)
    assert pack(example_trees(batch, batch["labels"]), batch["labels"], 2, per_key) is None
    trees = example_trees(batch, batch["labels"])
    assert cheapest(trees, 4, batch["input_ids"].shape[1], 0.0) is not None  # attention for free: it would pack
    assert cost(4, 468, per_key) < cost(1, 28 + 4 * 440, per_key)


def test_sft_with_a_shared_prefix_trains_as_trl_layout_does(tiny_model, tmp_path, monkeypatch):
    from medtune.config import load_config
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.tasks import get_task
    from medtune.accel import shared_prompt
    from medtune.train.sft import train_sft

    # the tiny tokenizer spells a prompt in ~10x the embedded model's tokens: let attention cost nothing, so
    # the planner packs these batches as it packs the embedded model's label tasks
    monkeypatch.setattr(shared_prompt, "key_cost", lambda config: 0.0)
    task = get_task("triage")
    runs = {}
    for share in (True, False):
        model, tokenizer, _ = load_model(tiny_model, "cpu")
        settings = load_config(overrides={"sft": {"max_steps": 3, "batch_size": 4, "max_length": 4096}}).sft
        compute = Compute(accel=frozenset({"shared_prompt"} if share else set()))
        runs[share] = train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:12],
                                settings, tmp_path / str(share), compute, 0)[0]
    assert runs[True]["shared_prefix_batches"] == {"packed": 3, "trl_layout": 0}
    assert runs[False]["shared_prefix_batches"] is None
    logged = {share: [v for h in run["log_history"] for k, v in sorted(h.items()) if k in ("loss", "grad_norm")]
              for share, run in runs.items()}
    assert len(logged[True]) >= 2 and logged[True][0] > 0
    assert logged[True] == pytest.approx(logged[False], rel=1e-4)


def test_sharing_gives_each_model_its_own_forward_back(tiny_model):
    from medtune.accel.shared_prompt import Sharing

    model = fused_model(tiny_model, "sdpa")
    trls = model.forward
    sharing = Sharing([model], pad_id=2, plan=pair_trees)
    assert model.forward != trls
    sharing.unwrap()
    assert model.forward == trls
