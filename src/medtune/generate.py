"""Batched generation: chat prompts in, completions out.

Prompts are sorted by length so a batch pads little, padded on the left so
every sequence ends where generation starts, and decoded without special
tokens. Results come back in the caller's order.
"""

from __future__ import annotations

import torch

from .progress import progress


def encode_prompts(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    ids = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


def left_pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, seq in enumerate(batch):
        input_ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq):] = 1
    return input_ids, mask


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 1.0, num_samples: int = 1,
             seed: int = 0, desc: str = "generating") -> list[list[str]]:
    """``num_samples`` completions for each prompt (greedy when ``do_sample`` is False)."""
    model.eval()
    device = next(model.parameters()).device
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    stop_ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end not in stop_ids and im_end != tokenizer.unk_token_id:
        stop_ids.append(im_end)
    if do_sample:
        torch.manual_seed(seed)
    # keep the number of sequences per forward pass near batch_size when sampling
    prompts_per_batch = max(1, batch_size // num_samples)
    with progress() as bar:
        task = bar.add_task(desc, total=len(prompts), info="")
        for start in range(0, len(order), prompts_per_batch):
            idx = order[start:start + prompts_per_batch]
            input_ids, mask = left_pad([encoded[i] for i in idx], tokenizer.pad_token_id)
            kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                          num_return_sequences=num_samples)
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
