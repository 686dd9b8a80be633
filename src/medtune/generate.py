"""Batched generation with transformers' ``generate``: chat prompts in, completions out.

Prompts are sorted by length so a batch pads little, padded on the left so every sequence ends where
generation starts, and decoded without special tokens. Results come back in the caller's order. A
batch's rows are its prompts, each repeated once per sample (pair mining draws several per prompt).

Several models can answer the same prompts (``generate_each``); each answers as it would alone. With
the ``fast_generation`` speed piece the same answers come from medtune/accel/generation.py, which
computes the prompts' shared prefix once; it uses this module's batches, so sampling draws the same
random numbers in the same order.

Each batch samples from a seed of its own (``batch_seed``). Under several processes each computes every
N-th batch and the answers are gathered (distributed.py): a batch is the same batch, drawing the same
random numbers, whichever process computes it, so the answers do not depend on N.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from .distributed import gather, my_share
from .models import Compute
from .progress import progress

PREFILL_CHUNKS = 4  # a batch's tail of at most 1/PREFILL_CHUNKS of its size joins the batch before


def prompt_text(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    return [tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"] for messages in prompts]


def stop_token_ids(tokenizer) -> list[int]:
    """The tokens an answer ends with: end of sequence, and a chat template's end of turn."""
    stop_ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in stop_ids and im_end != tokenizer.unk_token_id:
        stop_ids.append(im_end)
    return stop_ids


def left_pad(batch: list[list[int]], pad_id: int, prefix: list[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """``prefix`` + padding + each sequence; the mask is 0 on the padding only."""
    width = max(len(x) for x in batch)
    input_ids = torch.full((len(batch), len(prefix) + width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), len(prefix) + width), dtype=torch.long)
    input_ids[:, :len(prefix)] = torch.tensor(list(prefix), dtype=torch.long)
    mask[:, :len(prefix)] = 1
    for i, seq in enumerate(batch):
        input_ids[i, input_ids.shape[1] - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[i, input_ids.shape[1] - len(seq):] = 1
    return input_ids, mask


def batches(order: list[int], size: int) -> list[list[int]]:
    """``order`` in batches of ``size``; a last batch of at most a quarter of ``size`` joins the one before:
    a decoding step reads every weight whatever the number of rows, so a short tail costs nearly a full
    batch's steps."""
    out = [order[start:start + size] for start in range(0, len(order), size)]
    if len(out) > 1 and len(out[-1]) <= size // PREFILL_CHUNKS:
        out[-2].extend(out.pop())
    return out


def longest_first(encoded: list[list[int]]) -> list[int]:
    return sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))


def sampling_args(tokenizer, max_new_tokens: int, do_sample: bool, temperature: float) -> dict:
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_token_ids(tokenizer),
                  pad_token_id=tokenizer.pad_token_id)
    if do_sample:
        kwargs.update(do_sample=True, temperature=max(temperature, 1e-5), top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def cache_name(model) -> str:
    """The KV cache's argument and output name: ``cache`` since transformers 5.24, which deprecates
    ``past_key_values`` (a FutureWarning on every call; removed in 5.40 and 6.0), before it the old one.
    A PEFT model (DPO's collapse guard generates with the model in training) hands its calls to the base model."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def autocast(model, compute: Compute):
    """bf16 on a CPU computes under autocast over the fp32 weights a CPU holds (models.Compute.weights)."""
    if compute.dtype != torch.float32 and next(model.parameters()).dtype == torch.float32:
        return torch.autocast(compute.device, dtype=compute.dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, compute: Compute = Compute(),
             batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
             seed: int = 0, desc: str | None = "generating") -> list[list[str]]:
    """``num_samples`` completions for each prompt (greedy when ``do_sample`` is False); no bar when ``desc`` is None."""
    return generate_each([model], tokenizer, prompts, max_new_tokens, compute, batch_size, do_sample, temperature,
                         num_samples, seed, desc)[0]


@torch.inference_mode()
def generate_each(models: list, tokenizer, prompts: list[list[dict]], max_new_tokens: int,
                  compute: Compute = Compute(), batch_size: int = 16, do_sample: bool = False,
                  temperature: float = 1.0, num_samples: int = 1, seed: int = 0,
                  desc: str | None = "generating") -> list[list[list[str]]]:
    """Each model's completions of the same prompts, [model][prompt][sample], each as ``generate`` gives it
    alone. Several models answer greedily only: sampling would draw from one random stream in another order."""
    if len(models) > 1 and do_sample:
        raise ValueError("generate_each samples with one model at a time")
    if not prompts:
        return [[] for _ in models]
    if compute.uses("fast_generation"):
        from .accel.generation import generate_each as fast

        return fast(models, tokenizer, prompts, max_new_tokens, compute, batch_size, do_sample, temperature,
                    num_samples, seed, desc)
    encoded = encode_prompts(tokenizer, prompts)
    answers: dict[int, list[list[str]]] = {}  # prompt -> each model's completions
    kwargs = sampling_args(tokenizer, max_new_tokens, do_sample, temperature)
    for model in models:
        model.eval()
    share = my_share(list(enumerate(batches(longest_first(encoded), max(1, batch_size // num_samples)))), models)
    with progress(enabled=desc is not None) as bar:
        task = bar.add_task(desc or "", total=sum(len(idx) for _, idx in share) * len(models), info="")
        for b, idx in share:
            input_ids, mask = left_pad([encoded[i] for i in idx for _ in range(num_samples)], tokenizer.pad_token_id)
            for i in idx:
                answers[i] = []
            for model in models:
                if do_sample:
                    torch.manual_seed(batch_seed(seed, b))
                device = next(model.parameters()).device
                with autocast(model, compute):
                    out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
                texts = tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
                for j, i in enumerate(idx):
                    answers[i].append([t.strip() for t in texts[j * num_samples:(j + 1) * num_samples]])
                bar.advance(task, len(idx))
    answers = gather(answers)
    return [[answers[i][k] for i in range(len(prompts))] for k in range(len(models))]


def batch_seed(seed: int, batch: int) -> int:
    """The seed a batch samples with: its own, so its samples are the same whichever process draws them, and
    whatever was drawn before it."""
    return (seed * 1_000_003 + batch) % 2 ** 63
