"""Answering a label task by choosing among its well-formed answers (``eval.label_answers: choose``).

Generation decodes a label task's answer token by token until the model stops, and a model that
chatters runs to ``max_new_tokens``; each decoding step reads every weight. Here an item's well-formed
answers (each label, or each personnel and urgency pair for triage) form a token tree under its prompt,
and the answer is the one greedy decoding would follow if it could only write well-formed answers: from
the first token on, the highest-scoring token among those the remaining answers continue with, then the
stop token. Only the tokens up to each choice are computed, in one or two forward rounds for the label
tasks (``choose_chunk``).

So wherever greedy generation writes a well-formed answer, the choice is that answer (at each step the
token generation picked is among the allowed ones, so it is also their best). Where generation would
chatter or misspell, the choice is still a label: a parse failure becomes a guess, which scores higher
than generation does for a model that does not follow the format.

With the ``fast_generation`` speed piece the prompts go through the same shared-prefix and chunked-prefill
path as generation (accel/generation.py); without it each prompt is computed whole.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..generate import (PREFILL_CHUNKS, autocast, cache_name, encode_prompts, left_pad, longest_first, prompt_text,
                        stop_token_ids)
from ..distributed import gather, my_share
from ..models import Compute
from ..progress import progress


class PlainPrompts:
    """The prompts for choosing, each computed whole: prefill gives every prompt but its last token as
    (keys, values) per layer (None for one-token prompts), one entry per model."""

    def __init__(self, models: list, tokenizer, prompts: list[list[dict]], compute: Compute):
        for model in models:
            model.eval()
        self.models, self.compute = models, compute
        self.device = next(models[0].parameters()).device
        self.pad_id = tokenizer.pad_token_id
        self.encoded = encode_prompts(tokenizer, prompts)
        self.order = longest_first(self.encoded)

    def prefill(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, list]:
        ids, mask = left_pad([self.encoded[i] for i in idx], self.pad_id)
        return ids, mask, [self.cache(model, ids, mask) for model in self.models]

    def cache(self, model, ids: torch.Tensor, mask: torch.Tensor):
        if ids.shape[1] < 2:
            return None
        grown = DynamicCache(config=model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate numbers them: padding is skipped
        layers = model.get_decoder()
        with autocast(model, self.compute):
            layers(input_ids=ids[:, :-1].to(self.device), attention_mask=mask[:, :-1].to(self.device),
                   position_ids=positions[:, :-1].to(self.device), use_cache=True, **{cache_name(layers): grown})
        return [(layer.keys, layer.values) for layer in grown.layers]


@torch.inference_mode()
def choose_each(models: list, tokenizer, prompts: list[list[dict]], answers: list[list[str]],
                compute: Compute = Compute(), batch_size: int = 32, desc: str | None = "choosing") -> list[list[str]]:
    """Each model's choice among ``answers[i]`` for prompt ``i``, [model][prompt]."""
    if not prompts:
        return [[] for _ in models]
    if compute.uses("fast_generation"):
        from ..accel.generation import Prompts

        ready = Prompts(models, tokenizer, prompts, compute)
    else:
        ready = PlainPrompts(models, tokenizer, prompts, compute)
    options = [answer_tokens(tokenizer, prompt, ids, texts)
               for prompt, ids, texts in zip(prompts, ready.encoded, answers)]
    stops = stop_token_ids(tokenizer)
    chunk_size = max(1, batch_size // PREFILL_CHUNKS)  # prompts computed together, as generation's chunks
    # under several processes each takes every N-th chunk (distributed.py): a chunk is computed alike anywhere
    share = my_share([ready.order[start:start + chunk_size] for start in range(0, len(ready.order), chunk_size)],
                     models)
    results: dict[int, list[str]] = {}  # prompt -> each model's choice
    with progress(enabled=desc is not None) as bar:
        task = bar.add_task(desc or "", total=sum(map(len, share)) * len(models), info="")
        for idx in share:
            ids, mask, computed = ready.prefill(idx)
            trees = [Tree(int(ids[j, -1]), options[i]) for j, i in enumerate(idx)]
            for i in idx:
                results[i] = []
            for k, model in enumerate(ready.models):
                with autocast(model, compute):
                    chosen = choose_chunk(model, computed[k], ids, mask, trees, stops, ready.device)
                for j, answer in enumerate(chosen):
                    results[idx[j]].append(answers[idx[j]][answer])
                bar.advance(task, len(idx))
    results = gather(results)
    return [[results[i][k] for i in range(len(prompts))] for k in range(len(models))]


def answer_tokens(tokenizer, messages: list[dict], prompt_ids: list[int], texts: list[str]) -> list[list[int]]:
    """Each answer's tokens as they follow the generation prompt: the prompt and the answer encoded together,
    the prompt's tokens taken off (a tokenizer may encode the start of a text differently on its own, e.g.
    SentencePiece's leading space); on its own where the prompt's tokens do not come first."""
    text = prompt_text(tokenizer, messages)
    out = []
    encoded = tokenizer([text + answer for answer in texts], add_special_tokens=False)["input_ids"]
    for answer, together in zip(texts, encoded):
        fits = together[:len(prompt_ids)] == prompt_ids and len(together) > len(prompt_ids)
        out.append(together[len(prompt_ids):] if fits else tokenizer(answer, add_special_tokens=False)["input_ids"])
    return out


def choose_chunk(model, cache, ids: torch.Tensor, mask: torch.Tensor, trees: list[Tree], stops: list[int],
                 device) -> list[int]:
    """Each prompt's chosen answer (an index into its tree's answers), decoding greedily inside the trees: each
    round feeds every undecided prompt's tokens from where it stands down to its next choice (the prompt's last
    token first; a run no answer branches from is fed whole), and takes the best-scoring option there. Rows
    that feed less are padded on the right and the padding hidden for the rounds after, as generation hides
    the padding inside its prompts. Label answers take one or two rounds."""
    seen = mask[:, :-1]  # the cached part of each prompt, padding after the shared prefix hidden
    grown = DynamicCache(config=model.config)
    for layer, (keys, values) in enumerate(cache or []):
        grown.update(keys, values, layer)
    at = [0] * len(trees)  # the node each prompt stands at, not fed yet
    chosen: list[int | None] = [None] * len(trees)
    while True:
        runs = []
        for j, tree in enumerate(trees):
            run, answer = tree.forced_run(at[j]) if chosen[j] is None else ([], chosen[j])
            chosen[j] = answer
            runs.append(run if answer is None else [])
        width = max(len(run) for run in runs)
        if width == 0:
            return chosen
        new_ids = torch.zeros((len(trees), width), dtype=torch.long)
        new_mask = torch.zeros((len(trees), width), dtype=torch.long)
        for j, run in enumerate(runs):
            new_ids[j, :len(run)] = torch.tensor([trees[j].tokens[node] for node in run], dtype=torch.long)
            new_mask[j, :len(run)] = 1
        positions = seen.sum(-1, keepdim=True) + torch.arange(width)  # numbered on, as generation does
        seen = torch.cat([seen, new_mask], 1)
        logits = model(input_ids=new_ids.to(device), attention_mask=seen.to(device), position_ids=positions.to(device),
                       use_cache=True, **{cache_name(model): grown}).logits
        for j, run in enumerate(runs):
            if run:
                at[j], chosen[j] = trees[j].best_option(run[-1], logits[j, len(run) - 1].float(), stops)


STOP = -1  # the end of an answer: scored as the best of the tokenizer's stop tokens


class Tree:
    """One prompt's well-formed answers as a token tree: node 0 is the prompt's last token, each other node
    a token that continues its parent; ``ends[node]`` is the answer that ends there."""

    def __init__(self, root_token: int, options: list[list[int]]):
        self.tokens = [root_token]
        self.children: list[dict[int, int]] = [{}]
        self.ends: dict[int, int] = {}
        for answer, tokens in enumerate(options):
            node = 0
            for token in tokens:
                if token not in self.children[node]:
                    self.children[node][token] = len(self.tokens)
                    self.tokens.append(token)
                    self.children.append({})
                node = self.children[node][token]
            self.ends.setdefault(node, answer)  # two answers with the same tokens: the first

    def options(self, node: int) -> dict[int, int | None]:
        """The tokens that may follow ``node`` (STOP where an answer ends there) and the nodes they lead to."""
        return {**self.children[node], **({STOP: None} if node in self.ends else {})}

    def forced_run(self, node: int) -> tuple[list[int], int | None]:
        """From ``node`` down the only way on: the nodes up to the next choice, or the answer when none is left."""
        run = [node]
        while len(options := self.options(run[-1])) == 1:
            if STOP in options:
                return [], self.ends[run[-1]]
            run.append(next(iter(options.values())))
        return run, None

    def best_option(self, node: int, scores: torch.Tensor, stops: list[int]) -> tuple[int, int | None]:
        """(the next node, None), or (node, the answer) where the stop scores best."""
        options = self.options(node)
        best = max(sorted(options), key=lambda token: scores[stops].max() if token == STOP else scores[token])
        return (node, self.ends[node]) if best == STOP else (options[best], None)
