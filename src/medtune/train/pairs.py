"""Preference pairs for DPO. Every pair records where it came from (``source``).

* ``model_errors`` (default): sample k outputs from the model for each training
  prompt; every output the task's own scorer marks wrong becomes a ``rejected``
  against the reference ``chosen`` (what Savage et al. did by hand). Label tasks
  fall back to a wrong label (``label_swap``) for prompts the model always got
  right, unless ``label_swap_fallback`` is off.
* ``label_swap``: label tasks only, a wrong label as ``rejected``; no sampling.
* ``judge_ranked`` (tasks with a grade, i.e. summarization): sample k outputs,
  grade them, best vs worst when the grades differ by ``min_grade_gap``.
* ``human``: the user's own pairs (``pairs.human_file``), also added to the
  mined pairs of the other strategies when the file is given. Or, with
  ``medtune pairs --strategy human --from-review RUN``, pairs from the clinicians'
  judgments of RUN's test answers (``review/pairs.py``, docs/review.md).
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from ..errors import MedtuneError
from ..generate import generate
from ..models import Compute
from ..tasks.common import Task


def mine_pairs(model, tokenizer, task: Task, examples: list[dict], settings, batch_size: int,
               seed: int, compute: Compute = Compute()) -> tuple[list[dict], dict]:
    """Returns (pairs, statistics). ``model`` may be None for strategies that need no sampling."""
    rng = random.Random(seed)
    if settings.max_prompts and len(examples) > settings.max_prompts:
        examples = rng.sample(examples, settings.max_prompts)
    check_strategy(task, settings.strategy)
    pairs, no_pair, wrong_outputs, outputs_total = [], 0, 0, 0
    if needs_model(settings.strategy):
        samples = generate(model, tokenizer, [task.messages(ex) for ex in examples],
                           max_new_tokens=task.max_new_tokens, compute=compute, batch_size=batch_size,
                           do_sample=settings.temperature > 0, temperature=settings.temperature,
                           num_samples=settings.samples, seed=seed, desc=f"{task.name}: mining pairs")
    else:
        samples = [[] for _ in examples]
    if settings.strategy != "human":
        for ex, outputs in zip(examples, samples):
            scored = [(o, task.score(ex, o)) for o in outputs]
            outputs_total += len(outputs)
            wrong_outputs += sum(1 for _, s in scored if not s["correct"])
            found = strategy_pairs(task, ex, scored, settings, rng)
            no_pair += not found
            pairs.extend(found)
    if settings.human_file:
        pairs.extend(human_pairs(Path(settings.human_file), task))
    stats = {
        "strategy": settings.strategy,
        "prompts_tried": len(examples) if settings.strategy != "human" else 0,
        "samples_per_prompt": settings.samples if needs_model(settings.strategy) else 0,
        "temperature": settings.temperature,
        "outputs": outputs_total,
        "wrong_outputs": wrong_outputs,
        "sft_error_rate_on_train": wrong_outputs / outputs_total if outputs_total else None,
        "pairs": len(pairs),
        "pairs_per_source": dict(Counter(p["source"] for p in pairs)),
        "prompts_without_pair": no_pair,
    }
    return pairs, stats


def needs_model(strategy: str) -> bool:
    return strategy in ("model_errors", "judge_ranked")


def check_pair_settings(tasks: list[Task], settings) -> None:
    """The pair settings against the tasks, and the user's pairs file through the doctor, before any model
    loads: a mistake here would otherwise show only after SFT has trained."""
    for task in tasks:
        check_strategy(task, settings.strategy)
    if settings.strategy == "human" and not settings.human_file:
        raise MedtuneError("pairs.strategy human trains on your own pairs only: set pairs.human_file to a file of "
                           "prompt/chosen/rejected rows (or OpenAI preference JSONL)")
    if settings.human_file:
        human_pairs(Path(settings.human_file), tasks[0] if tasks else None)


def check_strategy(task: Task, strategy: str) -> None:
    if strategy == "label_swap" and not task.labels:
        raise MedtuneError(f"pairs.strategy label_swap needs a label task; {task.name} has open answers "
                           "(use model_errors or judge_ranked)")
    if strategy == "judge_ranked" and not task.graded:
        raise MedtuneError(f"pairs.strategy judge_ranked ranks graded answers; {task.name} has no grade "
                           "(use model_errors)")


def strategy_pairs(task: Task, example: dict, scored: list[tuple[str, dict]], settings, rng: random.Random) -> list[dict]:
    chosen = task.reference(example)
    if settings.strategy == "judge_ranked":
        return pairs_from_ranking(task, example, scored, settings.min_grade_gap)
    found = pairs_from_errors(task, example, scored, chosen) if settings.strategy == "model_errors" else []
    if not found and (settings.strategy == "label_swap" or settings.label_swap_fallback):
        found = pairs_from_label_swap(task, example, chosen, rng)
    return found


def same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def pairs_from_errors(task: Task, example: dict, scored: list[tuple[str, dict]], chosen: str) -> list[dict]:
    """One pair per distinct wrong output; outputs the scorer accepts never become ``rejected``."""
    pairs, seen = [], set()
    for output, score in scored:
        key = " ".join(output.split())
        if key in seen or same_text(output, chosen):
            continue  # a duplicate, or identical to the reference up to whitespace: no signal
        seen.add(key)
        if not score["correct"]:
            pairs.append(make_pair(task, example, chosen, output, "model_error", len(pairs)))
    return pairs


def pairs_from_label_swap(task: Task, example: dict, chosen: str, rng: random.Random) -> list[dict]:
    wrong = task.wrong_completions(example)
    if not wrong:
        return []
    return [make_pair(task, example, chosen, rng.choice(wrong), "label_swap", 0)]


def pairs_from_ranking(task: Task, example: dict, scored: list[tuple[str, dict]], min_gap: int) -> list[dict]:
    """Best vs worst graded sample (ties broken by fact coverage), when the grades differ enough."""
    graded = [(s["grade"], s.get("coverage", 0.0), o) for o, s in scored if o.strip()]
    if len(graded) < 2:
        return []
    best, worst = max(graded, key=lambda g: g[:2]), min(graded, key=lambda g: g[:2])
    if best[0] - worst[0] < min_gap or same_text(best[2], worst[2]):
        return []
    pair = make_pair(task, example, best[2], worst[2], "judge", 0)
    pair.update(chosen_grade=best[0], rejected_grade=worst[0])
    return [pair]


def human_pairs(path: Path, task: Task) -> list[dict]:
    """The user's pairs, checked by the doctor (errors stop the run)."""
    from ..data import raise_on_problems
    from ..data.doctor import check_pairs_file

    diag = check_pairs_file(path)
    raise_on_problems([diag], strict=False, stopped="DPO has not started")
    return [{"id": f"human-{r.get('id') or i}", "example_id": f"human-{r.get('id') or i}", "task": task and task.name,
             "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "source": "human"}
            for i, r in enumerate(diag.records)]


def make_pair(task: Task, example: dict, chosen: str, rejected: str, source: str, k: int) -> dict:
    return {"id": f"{example['id']}-{source}-{k}", "example_id": example["id"], "task": task.name,
            "prompt": task.build_prompt(example), "chosen": chosen, "rejected": rejected, "source": source}
