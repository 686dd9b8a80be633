"""Batched generation: chat prompts in, completions out.

Prompts are sorted by length so a batch pads little, padded on the left so
every sequence ends where generation starts, and decoded without special
tokens. Results come back in the caller's order.

The prompts of one task share a long prefix (the system prompt and the task's
rules: 50-70% of a label-task prompt). That prefix is run through the model
once; each batch starts from a copy of its KV cache and only the rest of every
prompt is computed. The padding then sits between the shared prefix and each
prompt's own part ([prefix][pads][own part]); the attention mask hides it and
position ids skip it, so every sequence sees exactly the tokens it would see
alone.

A batch of batch_size rows is decoded together, but its prompts' own parts
(all but their last token) are computed a quarter of the batch at a time, each
chunk padded only to its own longest prompt. A decoding step reads every weight
once whatever the number of rows (on a 2-core CPU, 32 rows cost about 1.4x the
step of 16), while prefilling 32 prompts at once would pad the shorter ones to
the longest. The chunks' keys and values are then widened to the batch's length
by zeros where the padding sits. When sampling k completions per prompt (pair
mining), each prompt is computed once and its keys and values are repeated k
times.

Decoding writes into a preallocated (static) KV cache where the model allows
it: a growing cache is re-concatenated at every new token (7% of the wall time
of 400-token summarization prompts on a CPU, docs/performance.md).
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache, StaticCache

from .progress import progress


def encode_prompts(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    ids = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


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


MIN_SHARED_PREFIX = 16  # tokens; a shorter common prefix is not worth a cache copy per batch
PREFILL_CHUNKS = 4  # a decoding batch's prompts are computed this many chunks at a time


def batches(order: list[int], size: int) -> list[list[int]]:
    """``order`` in batches of ``size``; a last batch of at most a quarter of ``size`` joins the one before.
    Such a tail would cost nearly a full batch's decoding steps (a step reads every weight whatever the
    rows): 40 summaries decode as one batch of 40, not 32 then 8 (43-46 s vs 52-56 s on a 2-core CPU)."""
    out = [order[start:start + size] for start in range(0, len(order), size)]
    if len(out) > 1 and len(out[-1]) <= size // PREFILL_CHUNKS:
        out[-2].extend(out.pop())
    return out


def shared_prefix_length(encoded: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own."""
    if len(encoded) < 2:
        return 0
    first = encoded[0]
    n = min(len(x) for x in encoded) - 1
    for seq in encoded[1:]:
        k = 0
        while k < n and seq[k] == first[k]:
            k += 1
        n = k
    return n if n >= MIN_SHARED_PREFIX else 0


def prefix_cache(model, prefix: list[int], device):
    """The KV cache of ``prefix`` (batch 1), computed once per generate() call."""
    if not prefix:
        return None
    return model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=1).past_key_values


def repeated(cache, repeats: int):
    """A growing cache's copy with each row repeated ``repeats`` times."""
    copied = copy.deepcopy(cache)
    copied.batch_repeat_interleave(repeats)
    return copied


def prompts_cache(model, cache, input_ids: torch.Tensor, mask: torch.Tensor, n_prefix: int):
    """``cache`` (the shared prefix) extended by every prompt but its last token, one row per prompt,
    as (keys, values) per layer; None when there is nothing to hold (no prefix, one-token prompts)."""
    device = next(model.parameters()).device
    if input_ids.shape[1] - n_prefix > 1:
        grown = repeated(cache, input_ids.shape[0]) if cache is not None else DynamicCache(config=model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers them: padding is skipped
        model(input_ids=input_ids[:, n_prefix:-1].to(device), attention_mask=mask[:, :-1].to(device),
              position_ids=positions[:, n_prefix:-1].to(device), past_key_values=grown, use_cache=True,
              logits_to_keep=1)
    elif cache is not None:
        grown = repeated(cache, input_ids.shape[0])
    else:
        return None
    return [(layer.keys, layer.values) for layer in grown.layers]


def padded(tensor: torch.Tensor, n_prefix: int, length: int) -> torch.Tensor:
    """Keys or values (rows, heads, tokens, dim) widened to ``length`` tokens by zeros inserted after
    the shared prefix: where the wider chunk's padding sits (the attention mask hides it)."""
    gap = length - tensor.shape[2]
    if gap == 0:
        return tensor
    zeros = tensor.new_zeros(tensor.shape[0], tensor.shape[1], gap, tensor.shape[3])
    return torch.cat([tensor[:, :, :n_prefix], zeros, tensor[:, :, n_prefix:]], dim=2)


def batch_cache(model, chunks: list, n_prefix: int, repeats: int, max_length: int):
    """One decoding batch's cache from the prefilled chunks (``prompts_cache`` results), each row
    repeated ``repeats`` times (samples of one prompt); static where the model allows it. None (generate
    then computes every prompt whole) when a chunk holds nothing: no shared prefix and one-token prompts.
    Consumes ``chunks`` layer by layer, so the keys and values are held about once, not twice."""
    if any(chunk is None for chunk in chunks):
        return None
    length = max(chunk[0][0].shape[2] for chunk in chunks)  # the longest chunk's tokens, all layers alike
    static = getattr(model, "_can_compile_fullgraph", False)  # the model supports static caches
    merged = StaticCache(config=model.config, max_cache_len=max_length) if static else DynamicCache(config=model.config)
    for i in range(len(chunks[0])):
        keys = torch.cat([padded(chunk[i][0], n_prefix, length) for chunk in chunks]).repeat_interleave(repeats, 0)
        values = torch.cat([padded(chunk[i][1], n_prefix, length) for chunk in chunks]).repeat_interleave(repeats, 0)
        merged.update(keys, values, i)
        for chunk in chunks:
            chunk[i] = None
    return merged


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
             seed: int = 0, desc: str | None = "generating") -> list[list[str]]:
    """``num_samples`` completions for each prompt (greedy when ``do_sample`` is False); no bar when ``desc`` is None."""
    if not prompts:
        return []
    model.eval()
    device = next(model.parameters()).device
    encoded = encode_prompts(tokenizer, prompts)
    n_prefix = shared_prefix_length(encoded)
    prefix, encoded = encoded[0][:n_prefix], [seq[n_prefix:] for seq in encoded]
    cache = prefix_cache(model, prefix, device)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    stop_ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in stop_ids and im_end != tokenizer.unk_token_id:
        stop_ids.append(im_end)
    if do_sample:
        torch.manual_seed(seed)
    # batch_size rows are decoded together (a decoding step reads every weight once whatever the rows);
    # their prompts are computed in smaller chunks, each padded only to its own longest prompt
    prompts_per_batch = max(1, batch_size // num_samples)
    prompts_per_chunk = max(1, batch_size // PREFILL_CHUNKS)
    with progress(enabled=desc is not None) as bar:
        task = bar.add_task(desc or "", total=len(prompts), info="")
        for idx in batches(order, prompts_per_batch):
            parts = [idx[c:c + prompts_per_chunk] for c in range(0, len(idx), prompts_per_chunk)]
            chunks = [prompts_cache(model, cache, *left_pad([encoded[i] for i in part], tokenizer.pad_token_id, prefix),
                                    n_prefix) for part in parts]
            # each prompt repeated num_samples times (generate's num_return_sequences would not repeat the cache)
            rows = [encoded[i] for i in idx for _ in range(num_samples)]
            input_ids, mask = left_pad(rows, tokenizer.pad_token_id, prefix)
            past = batch_cache(model, chunks, n_prefix, num_samples, input_ids.shape[1] + max_new_tokens)
            kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                          past_key_values=past,
                          disable_compile=True)  # batches differ in shape: compiling each would cost more
            if do_sample:
                kwargs.update(do_sample=True, temperature=max(temperature, 1e-5), top_k=0, top_p=1.0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
            new_tokens = out[:, input_ids.shape[1]:]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for j, i in enumerate(idx):
                results[i] = [t.strip() for t in texts[j * num_samples:(j + 1) * num_samples]]
            bar.advance(task, len(idx))
    return results
