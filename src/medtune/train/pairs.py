"""Preference pairs for DPO: chosen = the reference answer, rejected = a wrong answer.

``model_errors``: sample outputs from the SFT model on training prompts; every
output the task's own scorer marks wrong becomes a ``rejected`` (what Savage et
al. did by hand). Label tasks fall back to a wrong label (``label_swap``) for
prompts the model always got right, so DPO still sees every training prompt.
"""

from __future__ import annotations

import random
from collections import Counter

from ..generate import generate
from ..tasks.common import Task


def mine_pairs(model, tokenizer, task: Task, examples: list[dict], settings, batch_size: int,
               seed: int) -> tuple[list[dict], dict]:
    """Returns (pairs, statistics)."""
    rng = random.Random(seed)
    if settings.max_prompts and len(examples) > settings.max_prompts:
        examples = rng.sample(examples, settings.max_prompts)
    samples = generate(model, tokenizer, [task.messages(ex) for ex in examples], max_new_tokens=task.max_new_tokens,
                       batch_size=batch_size, do_sample=settings.temperature > 0, temperature=settings.temperature,
                       num_samples=settings.samples, seed=seed, desc=f"{task.name}: mining pairs")
    pairs, wrong_outputs, no_pair = [], 0, 0
    for ex, outputs in zip(examples, samples):
        chosen = task.reference(ex)
        found = pairs_from_errors(task, ex, outputs, chosen)
        wrong_outputs += sum(1 for o in outputs if not task.score(ex, o)["correct"])
        if not found and settings.label_swap_fallback:
            found = pairs_from_label_swap(task, ex, chosen, rng)
        if not found:
            no_pair += 1
        pairs.extend(found)
    stats = {
        "strategy": settings.strategy,
        "prompts_tried": len(examples),
        "samples_per_prompt": settings.samples,
        "temperature": settings.temperature,
        "outputs": len(examples) * settings.samples,
        "wrong_outputs": wrong_outputs,
        "sft_error_rate_on_train": wrong_outputs / max(1, len(examples) * settings.samples),
        "pairs": len(pairs),
        "pairs_per_source": dict(Counter(p["source"] for p in pairs)),
        "prompts_without_pair": no_pair,
    }
    return pairs, stats


def pairs_from_errors(task: Task, example: dict, outputs: list[str], chosen: str) -> list[dict]:
    pairs, seen = [], set()
    for output in outputs:
        key = " ".join(output.split())
        if key in seen or key == " ".join(chosen.split()):
            continue  # a duplicate, or identical to the reference up to whitespace: no signal
        seen.add(key)
        if not task.score(example, output)["correct"]:
            pairs.append(make_pair(task, example, chosen, output, "model_error", len(pairs)))
    return pairs


def pairs_from_label_swap(task: Task, example: dict, chosen: str, rng: random.Random) -> list[dict]:
    wrong = task.wrong_completions(example)
    if not wrong:
        return []
    return [make_pair(task, example, chosen, rng.choice(wrong), "label_swap", 0)]


def make_pair(task: Task, example: dict, chosen: str, rejected: str, source: str, k: int) -> dict:
    return {"id": f"{example['id']}-{source}-{k}", "example_id": example["id"], "task": task.name,
            "prompt": task.build_prompt(example), "chosen": chosen, "rejected": rejected, "source": source}
