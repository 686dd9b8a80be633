"""Batched generation with a shared-prefix KV cache gives what each prompt gives alone."""

from __future__ import annotations

import pytest
import torch

import medtune.generate as gen
from transformers import StaticCache
from medtune.data import bundled_path
from medtune.io import read_jsonl
from medtune.models import load_model
from medtune.tasks import get_task


original = gen.batch_cache


def test_shared_prefix_length_leaves_every_prompt_a_token_of_its_own(monkeypatch):
    monkeypatch.setattr(gen, "MIN_SHARED_PREFIX", 2)
    assert gen.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 3, 4, 5]]) == 3
    assert gen.shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts keep their last token
    assert gen.shared_prefix_length([[1, 2, 3], [7, 2, 3]]) == 0
    assert gen.shared_prefix_length([[1, 2, 3, 4]]) == 0  # one prompt: nothing to share
    assert gen.shared_prefix_length([]) == 0
    monkeypatch.setattr(gen, "MIN_SHARED_PREFIX", 16)
    assert gen.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9]]) == 0  # too short to be worth a cache


def test_left_pad_puts_padding_between_prefix_and_each_prompt():
    ids, mask = gen.left_pad([[5, 6, 7], [8]], pad_id=0, prefix=[1, 2])
    assert ids.tolist() == [[1, 2, 5, 6, 7], [1, 2, 0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]


def prompt_sensitive_model(tiny_model, static: bool):
    """The tiny model, with or without static-cache support, made to answer each prompt differently."""
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    model._can_compile_fullgraph = static  # False: a model without static-cache support
    # the random model at its usual scale repeats one whitespace token whatever the prompt: larger
    # weights make its answers depend on the prompt, and no special token ends them early
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.3)
    model.generation_config.suppress_tokens = tokenizer.all_special_ids
    return model, tokenizer


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
@pytest.mark.parametrize("task_name", ["triage", "text_classification"])
def test_prefix_cache_gives_the_same_greedy_answers_as_each_prompt_alone(tiny_model, monkeypatch, task_name, static):
    task = get_task(task_name)
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    built = []
    monkeypatch.setattr(gen, "batch_cache", lambda *a: built.append(original(*a)) or built[-1])
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:6]]
    encoded = gen.encode_prompts(tokenizer, prompts)
    assert gen.shared_prefix_length(encoded) >= gen.MIN_SHARED_PREFIX  # the cache is really used here
    cached = gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=4)
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in prompts]  # no prefix, no padding
    assert cached == alone
    assert all(out[0] for out in cached) and len({out[0] for out in cached}) > 1  # real, differing text
    assert isinstance(built[0], StaticCache) is static


def test_sampling_with_the_cache_gives_k_samples_per_prompt(tiny_model):
    task = get_task("triage")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:3]]
    first = gen.generate(model, tokenizer, prompts, 8, batch_size=4, do_sample=True, num_samples=3, seed=5)
    again = gen.generate(model, tokenizer, prompts, 8, batch_size=4, do_sample=True, num_samples=3, seed=5)
    assert [len(s) for s in first] == [3, 3, 3]
    assert first == again  # seeded
    assert len({s for samples in first for s in samples}) > 1  # samples differ


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_k_samples_per_prompt_compute_the_prompt_once_and_answer_as_one(tiny_model, monkeypatch, static):
    # greedy decoding makes every sample of a prompt the single answer; the distinct prompts run once,
    # and every one of their k repeated rows must answer as the prompt alone does
    task = get_task("triage")
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:5]]
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0][0] for p in prompts]
    distinct_rows, cached = [], []
    monkeypatch.setattr(gen, "prompts_cache", lambda m, c, ids, *a: distinct_rows.append(len(ids)) or
                        original_prompts_cache(m, c, ids, *a))
    monkeypatch.setattr(gen, "batch_cache", lambda *a: cached.append(int((c := original(*a)).get_seq_length())) or c)
    samples = gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=6, num_samples=3)
    assert samples == [[answer] * 3 for answer in alone]
    # decoding batches of 6 rows (2 prompts x 3 samples), each prompt computed once (chunks of 6 // 4 prompts)
    assert distinct_rows == [1, 1, 1, 1, 1]
    # what decoding starts from: every batch's prompts up to their last token, not only the shared prefix
    encoded = gen.encode_prompts(tokenizer, prompts)
    longest_first = sorted(len(e) for e in encoded)[::-1]
    n_prefix = gen.shared_prefix_length(encoded)
    assert cached == [longest_first[i] - 1 for i in (0, 2, 4)] and min(cached) > n_prefix
    assert len(set(alone)) > 1


original_prompts_cache = gen.prompts_cache


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_prefill_chunks_of_different_lengths_decode_together_as_each_prompt_alone(tiny_model, monkeypatch, static):
    task = get_task("text_classification")
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:7]]
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in prompts]
    widened, rows = [], []
    original_padded = gen.padded
    monkeypatch.setattr(gen, "padded", lambda t, n, length: widened.append(length - t.shape[2]) or
                        original_padded(t, n, length))
    monkeypatch.setattr(gen, "batch_cache", lambda m, chunks, *a: rows.append([c[0][0].shape[0] for c in chunks])
                        or original(m, chunks, *a))
    assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=8) == alone
    assert rows == [[2, 2, 2, 1]]  # one decoding batch of up to 8 rows, its prompts computed 8 // 4 at a time
    assert max(widened) > 0  # a shorter chunk's keys and values really were widened to the batch's length


def test_a_small_last_batch_joins_the_one_before():
    assert gen.batches(list(range(40)), 32) == [list(range(40))]  # a tail of 8 = 32 // 4 joins
    assert [len(b) for b in gen.batches(list(range(41)), 32)] == [32, 9]  # a tail of 9 stays alone
    assert [len(b) for b in gen.batches(list(range(72)), 32)] == [32, 40]
    assert gen.batches([3, 1, 2], 32) == [[3, 1, 2]]
    assert gen.batches([0, 1], 1) == [[0], [1]]  # nothing is a quarter of one row


def test_a_joined_tail_decodes_with_its_batch_as_each_prompt_alone(tiny_model, monkeypatch):
    task = get_task("text_classification")
    model, tokenizer = prompt_sensitive_model(tiny_model, True)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:10]]
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in prompts]
    rows = []
    monkeypatch.setattr(gen, "batch_cache", lambda m, chunks, *a: rows.append([c[0][0].shape[0] for c in chunks])
                        or original(m, chunks, *a))
    assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=8) == alone
    assert rows == [[2, 2, 2, 2, 2]]  # 8 + a tail of 2 decoded as one batch of 10


def twin_models(tiny_model, static: bool):
    """The prompt-sensitive tiny model and a copy whose top layer differs: as an SFT model and the DPO model
    trained from it with adapters on the top layer only."""
    import copy

    first, tokenizer = prompt_sensitive_model(tiny_model, static)
    second = copy.deepcopy(first)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in second.model.layers[-1].parameters():
            if param.dim() > 1:
                param.add_(torch.randn_like(param) * 0.3)
    return first, second, tokenizer


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_models_sharing_lower_layers_compute_them_once_and_answer_as_each_alone(tiny_model, monkeypatch, static):
    import copy

    task = get_task("text_classification")
    first, second, tokenizer = twin_models(tiny_model, static)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:7]]
    alone = [gen.generate(copy.deepcopy(m), tokenizer, prompts, max_new_tokens=8, batch_size=4) for m in (first, second)]
    assert alone[0] != alone[1]  # the top layer changes the answers
    assert gen.shared_layers([first, second]) == len(first.model.layers) - 1
    trunks = []
    monkeypatch.setattr(gen, "shared_trunk", lambda models: trunks.append(original_shared_trunk(models)) or trunks[-1])
    together = gen.generate_each([first, second], tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert together == alone
    # the second model skipped the shared layers in every prompt pass: the prefix, then 7 chunks of 4 // 4 prompts
    assert second.model.layers[0] is first.model.layers[0] and trunks[0].replayed == 1 + 7


original_shared_trunk = gen.shared_trunk


def test_models_that_differ_from_the_lowest_layer_share_nothing(tiny_model):
    task = get_task("text_classification")
    first, second, tokenizer = twin_models(tiny_model, True)
    with torch.no_grad():
        second.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:3]]
    assert gen.shared_layers([first, second]) == 0 and gen.shared_trunk([first, second]) is None
    together = gen.generate_each([first, second], tokenizer, prompts, max_new_tokens=8, batch_size=4)
    assert together == [gen.generate(m, tokenizer, prompts, max_new_tokens=8, batch_size=4) for m in (first, second)]
    with pytest.raises(ValueError, match="one model at a time"):
        gen.generate_each([first, second], tokenizer, prompts, max_new_tokens=8, do_sample=True)


@pytest.mark.parametrize("wrapped", [False, True], ids=["model", "peft-model"])
def test_generation_passes_the_cache_by_the_installed_transformers_name(tiny_model, wrapped):
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` and warns at every call that uses the old name
    (a user's terminal filled with FutureWarnings); older versions know only the old name. A PEFT model
    (DPO's collapse guard generates with one) takes the name its base model takes."""
    import warnings

    from peft import LoraConfig, get_peft_model

    task = get_task("text_classification")
    model, tokenizer = prompt_sensitive_model(tiny_model, True)
    if wrapped:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:5]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        answers = gen.generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=4)
    assert all(a[0] for a in answers)


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_grouped_attention_answers_as_sdpa_with_prefix_padding_and_chunks(tiny_model, static):
    """What a CPU's bf16 generation copy runs (``attention.py``), checked in fp32 where the two must agree."""
    from medtune.attention import GROUPED

    task = get_task("text_classification")
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:7]]
    with_sdpa = gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=8)
    model.set_attn_implementation(GROUPED)
    assert model.config._attn_implementation == GROUPED
    assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=8) == with_sdpa
    assert len({out[0] for out in with_sdpa}) > 1
