"""Generation that computes what prompts share once (the ``fast_generation`` piece).

The prompts of one task share a long prefix (the system prompt and the task's rules). That prefix is
run through the model once; each batch starts from a copy of its KV cache and only the rest of every
prompt is computed. The padding then sits between the shared prefix and each prompt's own part
([prefix][pads][own part]); the attention mask hides it and position ids skip it, so every sequence
sees exactly the tokens it would see alone.

A batch is decoded together (generate.py's batches, so sampling draws the same random numbers as the
stock path), but its prompts' own parts (all but their last token) are computed a quarter of the batch
at a time, each chunk padded only to its own longest prompt; the chunks' keys and values are then
widened to the batch's length by zeros where the padding sits. When sampling k completions per prompt
(pair mining), each prompt is computed once and its keys and values are repeated k times. Decoding
writes into a preallocated (static) KV cache where the model allows it. On a CPU computing in bf16 the
model generates from a bf16 copy of its weights, attending with the grouped matmuls where the run uses
that piece.

With ``shared_trunk``, several models answering the same prompts (the SFT model and the DPO model
trained from it with adapters on its top layers only) run the lowest layers they hold alike once per
prompt chunk: the later models take the first model's hidden state where their own layers start to
differ, and its keys and values below that. Each model then decodes on its own, so every answer is
the one it gives alone.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from transformers import DynamicCache, StaticCache

from ..generate import PREFILL_CHUNKS, batch_seed, batches, cache_name, encode_prompts, left_pad, sampling_args
from ..progress import progress
from .attention import attend_grouped
from .shared_trunk import SharedTrunk, decoder_layers

MIN_SHARED_PREFIX = 16  # tokens; a shorter common prefix is not worth a cache copy per batch


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


def decoder(model):
    """The model's layers without its LM head: a prompt pass only fills the cache, its logits are never read."""
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


def prefilled(models: list, trunk: SharedTrunk | None, fill) -> list:
    """``fill(k, model)`` for each model, inside one trunk batch: the later models skip the shared layers,
    so their caches get the first model's keys and values for those layers (``fill`` returns a growing
    cache, a list of (keys, values) per layer, or None)."""
    with trunk.batch() if trunk is not None else contextlib.nullcontext():
        results = [fill(k, model) for k, model in enumerate(models)]
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


def generation_copy(model, compute):
    """``model`` in the compute format for generating: itself when it already is; else a copy, since the
    fp32 weights go on to the next stage (a CPU evaluating in bf16). A model in training (DPO's collapse
    guard answers prompts with it) leaves the trainers' forwards behind (accelerate's autocast, TRL's fused
    LM head): the copy computes in bf16 throughout, as a GPU's bf16 model does."""
    if compute.device != "cpu" or model.dtype != torch.float32 or compute.dtype == torch.float32:
        return model
    # each parameter is copied straight into the compute format (the deep copy finds it in the memo)
    converted = {id(p): torch.nn.Parameter(p.detach().to(compute.dtype), requires_grad=False)
                 for p in model.parameters()}
    copied = copy.deepcopy(model, converted)
    for module in copied.modules():
        for name in ("forward", "_original_forward"):
            module.__dict__.pop(name, None)
    if compute.uses("grouped_attention"):
        attend_grouped(copied)
    return copied.to(compute.dtype)  # the buffers


class Prompts:
    """Prompts made ready for several models to answer: each model's generation copy, the prompts encoded,
    their shared prefix run once per model (its KV cache; the layers the models share once for all), and the
    order by length, longest first. ``prefill`` computes a chunk of them on top of the prefix."""

    def __init__(self, models: list, tokenizer, prompts: list[list[dict]], compute):
        for model in models:
            model.eval()
        self.models = [generation_copy(model, compute) for model in models]
        self.device = next(self.models[0].parameters()).device
        self.pad_id = tokenizer.pad_token_id
        self.encoded = encode_prompts(tokenizer, prompts)  # whole prompts
        self.n_prefix = shared_prefix_length(self.encoded)
        self.prefix = self.encoded[0][:self.n_prefix]
        self.own = [seq[self.n_prefix:] for seq in self.encoded]  # each prompt after the shared prefix
        self.trunk = shared_trunk(self.models) if compute.uses("shared_trunk") else None
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
def generate_each(models: list, tokenizer, prompts: list[list[dict]], max_new_tokens: int, compute,
                  batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
                  seed: int = 0, desc: str | None = "generating") -> list[list[list[str]]]:
    """generate.generate_each's answers, computed as this module's docstring says."""
    ready = Prompts(models, tokenizer, prompts, compute)
    results: list[list[list[str]]] = [[[] for _ in prompts] for _ in models]
    kwargs = dict(sampling_args(tokenizer, max_new_tokens, do_sample, temperature),
                  disable_compile=True)  # batches differ in shape: compiling each would cost more
    # batch_size rows are decoded together (a decoding step reads every weight once whatever the rows);
    # their prompts are computed in smaller chunks, each padded only to its own longest prompt
    prompts_per_batch = max(1, batch_size // num_samples)
    prompts_per_chunk = max(1, batch_size // PREFILL_CHUNKS)
    with progress(enabled=desc is not None) as bar:
        task = bar.add_task(desc or "", total=len(prompts) * len(models), info="")
        for b, idx in enumerate(batches(ready.order, prompts_per_batch)):
            if do_sample:  # as generate.py seeds each batch
                torch.manual_seed(batch_seed(seed, b))
            chunks: list[list] = [[] for _ in models]  # per model, one prompts_cache per chunk of the batch
            for c in range(0, len(idx), prompts_per_chunk):
                for k, chunk in enumerate(ready.prefill(idx[c:c + prompts_per_chunk])[2]):
                    chunks[k].append(chunk)
            # each prompt repeated num_samples times (generate's num_return_sequences would not repeat the cache)
            input_ids, mask = ready.padded([ready.own[i] for i in idx for _ in range(num_samples)])
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
