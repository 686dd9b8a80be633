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

Several models can answer the same prompts in one call (``generate_each``).
Where their lowest layers hold the same weights (the SFT model and the DPO
model trained from it with adapters on its top layers only), those layers run
once per prompt chunk: the later models take the first model's hidden state
where their own layers start to differ, and its keys and values below that.
Each model then decodes on its own, so every answer is the one it gives alone.
"""

from __future__ import annotations

import contextlib
import copy
import inspect

import torch
from transformers import DynamicCache, StaticCache

from .models import generation_copy
from .progress import progress
from .train.shared_trunk import SharedTrunk, decoder_layers


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


def cache_name(model) -> str:
    """The KV cache's argument and output name: ``cache`` since transformers 5.24, which deprecates
    ``past_key_values`` (a FutureWarning on every call; removed in 5.40 and 6.0), before it the old one.
    A PEFT model (DPO's collapse guard generates with the model in training) hands its calls to the base model."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def decoder(model):
    """The model's layers without its LM head. A prompt pass only fills the cache; its logits are never read.
    (Through the whole model, ``logits_to_keep=1`` still sent each chunk's last rows through the head. In bf16
    on a CPU, torch ran that as a batched matmul over 8 copies of the 49152 x 576 head: 0.2-0.3 s a chunk.)"""
    return model.get_decoder()


def prefix_cache(model, prefix: list[int], device):
    """The KV cache of ``prefix`` (batch 1), computed once per generate() call."""
    if not prefix:
        return None
    layers = decoder(model)
    return layers(input_ids=torch.tensor([prefix], device=device), use_cache=True)[cache_name(layers)]


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
        layers = decoder(model)
        layers(input_ids=input_ids[:, n_prefix:-1].to(device), attention_mask=mask[:, :-1].to(device),
               position_ids=positions[:, n_prefix:-1].to(device), use_cache=True, **{cache_name(layers): grown})
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


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)


def shared_layers(models: list) -> int:
    """How many of the lowest decoder layers every model holds with the first model's weights; 0 unless
    their input embeddings are the same too (so each lowest layer gets the same input)."""
    stacks = [decoder_layers(m) for m in models]
    if len(models) < 2 or any(layers is None for layers in stacks):
        return 0
    if not all(same_weights(m.get_input_embeddings(), models[0].get_input_embeddings()) for m in models[1:]):
        return 0
    n = 0
    for layers in zip(*stacks):
        if not all(type(layer) is type(layers[0]) and same_weights(layer, layers[0]) for layer in layers[1:]):
            break
        n += 1
    return n


def shared_trunk(models: list) -> SharedTrunk | None:
    """A trunk over the layers the models share: the later models are given the first one's modules for them
    (the same weights), so the first model's pass keeps what those layers output and the later passes of the
    same input replay it. None when they share nothing."""
    n = shared_layers(models)
    if n == 0:
        return None
    first = decoder_layers(models[0])
    for model in models[1:]:
        layers = decoder_layers(model)
        for i in range(n):
            layers[i] = first[i]
    return SharedTrunk(models[0], below=n)


def prefilled(models: list, trunk: SharedTrunk | None, compute) -> list:
    """``compute(k, model)`` for each model, inside one trunk batch: the later models skip the shared layers,
    so their caches get the first model's keys and values for those layers (``compute`` returns a growing
    cache, a list of (keys, values) per layer, or None)."""
    with trunk.batch() if trunk is not None else contextlib.nullcontext():
        results = [compute(k, model) for k, model in enumerate(models)]
    first = results[0]
    if trunk is None or first is None:
        return results
    for result in results[1:]:
        for i in range(len(trunk.below)):
            if isinstance(result, list):
                result[i] = first[i]
            else:
                result.layers[i].reset()
                result.update(first.layers[i].keys, first.layers[i].values, i)
    return results


class Prompts:
    """Prompts made ready for several models to answer: each model's generation copy, the prompts encoded,
    their shared prefix run once per model (its KV cache; the layers the models share once for all), and the
    order by length, longest first. ``prefill`` computes a chunk of them on top of the prefix."""

    def __init__(self, models: list, tokenizer, prompts: list[list[dict]]):
        for model in models:
            model.eval()
        self.models = [generation_copy(model) for model in models]
        self.device = next(self.models[0].parameters()).device
        self.pad_id = tokenizer.pad_token_id
        self.encoded = encode_prompts(tokenizer, prompts)  # whole prompts
        self.n_prefix = shared_prefix_length(self.encoded)
        self.prefix = self.encoded[0][:self.n_prefix]
        self.own = [seq[self.n_prefix:] for seq in self.encoded]  # each prompt after the shared prefix
        self.trunk = shared_trunk(self.models)
        self.caches = prefilled(self.models, self.trunk, lambda k, model: prefix_cache(model, self.prefix, self.device))
        self.order = sorted(range(len(self.own)), key=lambda i: -len(self.own[i]))

    def padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix, then ``rows`` (prompts' own parts) left-padded, and the mask."""
        return left_pad(rows, self.pad_id, self.prefix)

    def prefill(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Prompts ``idx`` padded (ids, mask) and each model's ``prompts_cache`` of them."""
        ids, mask = self.padded([self.own[i] for i in idx])
        computed = prefilled(self.models, self.trunk,
                             lambda k, model: prompts_cache(model, self.caches[k], ids, mask, self.n_prefix))
        return ids, mask, computed


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
             seed: int = 0, desc: str | None = "generating") -> list[list[str]]:
    """``num_samples`` completions for each prompt (greedy when ``do_sample`` is False); no bar when ``desc`` is None."""
    return generate_each([model], tokenizer, prompts, max_new_tokens, batch_size, do_sample, temperature,
                         num_samples, seed, desc)[0]


@torch.inference_mode()
def generate_each(models: list, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 16,
                  do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
                  seed: int = 0, desc: str | None = "generating") -> list[list[list[str]]]:
    """Each model's completions of the same prompts, [model][prompt][sample], each as ``generate`` gives it
    alone. Several models answer greedily only: sampling would draw from one random stream in another order."""
    if len(models) > 1 and do_sample:
        raise ValueError("generate_each samples with one model at a time")
    if not prompts:
        return [[] for _ in models]
    ready = Prompts(models, tokenizer, prompts)
    results: list[list[list[str]]] = [[[] for _ in prompts] for _ in models]
    stop_ids = stop_token_ids(tokenizer)
    if do_sample:
        torch.manual_seed(seed)
    # batch_size rows are decoded together (a decoding step reads every weight once whatever the rows);
    # their prompts are computed in smaller chunks, each padded only to its own longest prompt
    prompts_per_batch = max(1, batch_size // num_samples)
    prompts_per_chunk = max(1, batch_size // PREFILL_CHUNKS)
    with progress(enabled=desc is not None) as bar:
        task = bar.add_task(desc or "", total=len(prompts) * len(models), info="")
        for idx in batches(ready.order, prompts_per_batch):
            chunks: list[list] = [[] for _ in models]  # per model, one prompts_cache per chunk of the batch
            for c in range(0, len(idx), prompts_per_chunk):
                for k, chunk in enumerate(ready.prefill(idx[c:c + prompts_per_chunk])[2]):
                    chunks[k].append(chunk)
            # each prompt repeated num_samples times (generate's num_return_sequences would not repeat the cache)
            input_ids, mask = ready.padded([ready.own[i] for i in idx for _ in range(num_samples)])
            kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                          disable_compile=True)  # batches differ in shape: compiling each would cost more
            if do_sample:
                kwargs.update(do_sample=True, temperature=max(temperature, 1e-5), top_k=0, top_p=1.0)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            for k, model in enumerate(ready.models):  # one model's batch cache at a time
                past = batch_cache(model, chunks[k], ready.n_prefix, num_samples, input_ids.shape[1] + max_new_tokens)
                out = model.generate(input_ids=input_ids.to(ready.device), attention_mask=mask.to(ready.device),
                                     **{cache_name(model): past}, **kwargs)
                texts = tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
                for j, i in enumerate(idx):
                    results[k][i] = [t.strip() for t in texts[j * num_samples:(j + 1) * num_samples]]
                del past, out
                bar.advance(task, len(idx))
    return results
