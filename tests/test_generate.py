"""Generation: transformers' generate in batches (stock), and the ``fast_generation`` piece, which must give
the same answers: each prompt's answer is what it gives alone."""

from __future__ import annotations

import copy

import pytest
import torch

import medtune.accel.generation as fast
import medtune.generate as gen
from medtune.data import bundled_path
from medtune.io import read_jsonl
from medtune.models import Compute, load_model
from medtune.tasks import get_task

FAST = Compute(accel=frozenset({"fast_generation"}))
FAST_TRUNK = Compute(accel=frozenset({"fast_generation", "shared_trunk"}))
PATHS = pytest.mark.parametrize("compute", [Compute(), FAST], ids=["stock", "fast"])


def prompts_of(task_name: str, n: int) -> list:
    task = get_task(task_name)
    return [task.messages(ex) for ex in read_jsonl(bundled_path(task, "test"))[:n]]


def test_shared_prefix_length_leaves_every_prompt_a_token_of_its_own(monkeypatch):
    monkeypatch.setattr(fast, "MIN_SHARED_PREFIX", 2)
    assert fast.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 3, 4, 5]]) == 3
    assert fast.shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts keep their last token
    assert fast.shared_prefix_length([[1, 2, 3], [7, 2, 3]]) == 0
    assert fast.shared_prefix_length([[1, 2, 3, 4]]) == 0  # one prompt: nothing to share
    assert fast.shared_prefix_length([]) == 0
    monkeypatch.setattr(fast, "MIN_SHARED_PREFIX", 16)
    assert fast.shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9]]) == 0  # too short to be worth a cache


def test_left_pad_puts_padding_between_prefix_and_each_prompt():
    ids, mask = gen.left_pad([[5, 6, 7], [8]], pad_id=0, prefix=[1, 2])
    assert ids.tolist() == [[1, 2, 5, 6, 7], [1, 2, 0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]


def test_a_small_last_batch_joins_the_one_before():
    assert gen.batches(list(range(40)), 32) == [list(range(40))]  # a tail of 8 = 32 // 4 joins
    assert [len(b) for b in gen.batches(list(range(41)), 32)] == [32, 9]  # a tail of 9 stays alone
    assert [len(b) for b in gen.batches(list(range(72)), 32)] == [32, 40]
    assert gen.batches([3, 1, 2], 32) == [[3, 1, 2]]
    assert gen.batches([0, 1], 1) == [[0], [1]]  # nothing is a quarter of one row


def prompt_sensitive_model(tiny_model, static: bool = True):
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
def test_batched_answers_are_each_prompts_own(tiny_model, task_name, static):
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = prompts_of(task_name, 6)
    assert fast.shared_prefix_length(gen.encode_prompts(tokenizer, prompts)) >= fast.MIN_SHARED_PREFIX
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in prompts]  # no padding
    for compute in (Compute(), FAST):
        assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, compute=compute, batch_size=4) == alone
    assert all(out[0] for out in alone) and len({out[0] for out in alone}) > 1  # real, differing text


@PATHS
def test_sampling_gives_k_seeded_samples_per_prompt(tiny_model, compute):
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    prompts = prompts_of("triage", 3)
    first = gen.generate(model, tokenizer, prompts, 8, compute, batch_size=4, do_sample=True, num_samples=3, seed=5)
    again = gen.generate(model, tokenizer, prompts, 8, compute, batch_size=4, do_sample=True, num_samples=3, seed=5)
    assert [len(s) for s in first] == [3, 3, 3]
    assert first == again  # seeded
    assert len({s for samples in first for s in samples}) > 1  # samples differ


def test_fast_sampling_draws_what_stock_sampling_draws(tiny_model):
    """Pair mining samples: the fast path decodes the same batches in the same order, so the same seed gives
    the same samples (the logits agree to fp32's rounding)."""
    model, tokenizer = prompt_sensitive_model(tiny_model)
    prompts = prompts_of("text_classification", 5)
    stock = gen.generate(model, tokenizer, prompts, 8, Compute(), batch_size=6, do_sample=True, num_samples=3, seed=2)
    assert gen.generate(model, tokenizer, prompts, 8, FAST, batch_size=6, do_sample=True, num_samples=3, seed=2) == stock


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_k_greedy_samples_per_prompt_answer_as_the_prompt_alone(tiny_model, static):
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = prompts_of("triage", 5)
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0][0] for p in prompts]
    for compute in (Compute(), FAST):
        samples = gen.generate(model, tokenizer, prompts, max_new_tokens=8, compute=compute, batch_size=6,
                               num_samples=3)
        assert samples == [[answer] * 3 for answer in alone]
    assert len(set(alone)) > 1


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
@pytest.mark.parametrize("n", [7, 10], ids=["chunks-of-different-lengths", "a-joined-tail"])
def test_prefill_chunks_decode_together_as_each_prompt_alone(tiny_model, static, n):
    """8 prompts to a batch, prefilled 2 at a time; 10 prompts decode as one batch (a tail of 2 joins)."""
    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = prompts_of("text_classification", n)
    alone = [gen.generate(model, tokenizer, [p], max_new_tokens=8)[0] for p in prompts]
    assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, compute=FAST, batch_size=8) == alone


def twin_models(tiny_model, static: bool = True):
    """The prompt-sensitive tiny model and a copy whose top layer differs: as an SFT model and the DPO model
    trained from it with adapters on the top layer only."""
    first, tokenizer = prompt_sensitive_model(tiny_model, static)
    second = copy.deepcopy(first)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in second.model.layers[-1].parameters():
            if param.dim() > 1:
                param.add_(torch.randn_like(param) * 0.3)
    return first, second, tokenizer


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_models_sharing_lower_layers_answer_as_each_alone(tiny_model, static):
    first, second, tokenizer = twin_models(tiny_model, static)
    prompts = prompts_of("text_classification", 7)
    alone = [gen.generate(copy.deepcopy(m), tokenizer, prompts, max_new_tokens=8, batch_size=4) for m in (first, second)]
    assert alone[0] != alone[1]  # the top layer changes the answers
    assert fast.shared_layers([first, second]) == len(first.model.layers) - 1
    assert gen.generate_each([first, second], tokenizer, prompts, 8, FAST_TRUNK, batch_size=4) == alone
    assert second.model.layers[0] is first.model.layers[0]  # the trunk was shared
    assert gen.generate_each([first, second], tokenizer, prompts, 8, Compute(), batch_size=4) == alone


def test_models_that_differ_from_the_lowest_layer_share_nothing(tiny_model):
    first, second, tokenizer = twin_models(tiny_model)
    with torch.no_grad():
        second.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    prompts = prompts_of("text_classification", 3)
    assert fast.shared_layers([first, second]) == 0 and fast.shared_trunk([first, second]) is None
    together = gen.generate_each([first, second], tokenizer, prompts, 8, FAST_TRUNK, batch_size=4)
    assert together == [gen.generate(m, tokenizer, prompts, max_new_tokens=8, batch_size=4) for m in (first, second)]
    with pytest.raises(ValueError, match="one model at a time"):
        gen.generate_each([first, second], tokenizer, prompts, max_new_tokens=8, do_sample=True)


@PATHS
@pytest.mark.parametrize("wrapped", [False, True], ids=["model", "peft-model"])
def test_generation_passes_the_cache_by_the_installed_transformers_name(tiny_model, wrapped, compute):
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` and warns at every call that uses the old name
    (a user's terminal filled with FutureWarnings). A PEFT model (DPO's collapse guard generates with one)
    takes the name its base model takes."""
    import warnings

    from peft import LoraConfig, get_peft_model

    model, tokenizer = prompt_sensitive_model(tiny_model)
    if wrapped:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        answers = gen.generate(model, tokenizer, prompts_of("text_classification", 5), 4, compute, batch_size=4)
    assert all(a[0] for a in answers)


@pytest.mark.parametrize("static", [True, False], ids=["static-cache", "growing-cache"])
def test_grouped_attention_answers_as_sdpa_with_prefix_padding_and_chunks(tiny_model, static):
    """What a CPU's bf16 generation copy attends with (accel/attention.py), checked in fp32 where the two must
    agree."""
    from medtune.accel.attention import GROUPED

    model, tokenizer = prompt_sensitive_model(tiny_model, static)
    prompts = prompts_of("text_classification", 7)
    with_sdpa = gen.generate(model, tokenizer, prompts, max_new_tokens=8, compute=FAST, batch_size=8)
    model.set_attn_implementation(GROUPED)
    assert gen.generate(model, tokenizer, prompts, max_new_tokens=8, compute=FAST, batch_size=8) == with_sdpa
    assert len({out[0] for out in with_sdpa}) > 1
