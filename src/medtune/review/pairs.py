"""Preference pairs from the clinicians' judgments (``medtune pairs --strategy human --from-review RUN``).

One pair per test item and stage pair, from the item's majority preference, the same pooling as the
review's sign test (review/stats.py): the answer more reviewers preferred is ``chosen``, the other
``rejected``. Before the vote, a judgment is left out where its reviewer flagged the answer they
preferred as unsafe (both answers flagged included); a tie counts for neither side. No pair is made
where the vote ties, where any reviewer flagged the winning answer unsafe (DPO never learns toward an
answer a clinician called unsafe), or where both answers are the same text. The answers are the ones
the reviewed run saved (RUN/<task>/<stage>/predictions*.jsonl), the prompt the one the model saw.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from ..io import read_jsonl
from ..tasks.common import Task
from .stats import latest, majority, ordered, outcome, pair_name

SKIPPED = ("tied", "chosen_flagged_unsafe", "no_answer", "same_answer")


def read_answers(run_dir: Path, task_name: str, stages) -> dict[str, dict[str, str]]:
    """stage -> item id -> the answer that stage saved, on both test splits."""
    answers = {}
    for stage in stages:
        by_id = {}
        for name in ("predictions.jsonl", "predictions_shifted.jsonl"):
            path = Path(run_dir) / task_name / stage / name
            if path.is_file():
                by_id.update({r["id"]: r.get("output", "") for r in read_jsonl(path)})
        answers[stage] = by_id
    return answers


def counts_for(judgment: dict) -> bool:
    """Whether a judgment votes: not where its reviewer flagged the answer they preferred as unsafe."""
    preferred = judgment["preference"]
    return preferred == "tie" or not (judgment.get("unsafe") or {}).get(preferred)


def pairs_from_judgments(task: Task, judgments: list[dict], examples: dict[str, dict],
                         answers: dict[str, dict[str, str]]) -> tuple[list[dict], dict]:
    """(pairs, statistics) for ``task`` from its judgments; ``examples``: item id -> test example;
    ``answers``: stage -> item id -> answer."""
    from ..train.pairs import make_pair

    groups = defaultdict(list)
    for j in latest([j for j in judgments if j["task"] == task.name]):
        groups[(j["item"], pair_name(j["stages"]))].append(j)
    pairs, skipped, left_out = [], Counter(), 0
    for (item, _), group in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        voting = [j for j in group if counts_for(j)]
        left_out += len(group) - len(voting)
        first, second = ordered(group[0]["stages"])
        result = majority([outcome(j) for j in voting])
        if result == "tie":
            skipped["tied"] += 1
            continue
        chosen, rejected = (second, first) if result == "win" else (first, second)
        if any((j.get("unsafe") or {}).get(chosen) for j in group):
            skipped["chosen_flagged_unsafe"] += 1
            continue
        example, texts = examples.get(item), [answers.get(s, {}).get(item) for s in (chosen, rejected)]
        if example is None or None in texts:
            skipped["no_answer"] += 1
            continue
        if " ".join(texts[0].split()) == " ".join(texts[1].split()):
            skipped["same_answer"] += 1
            continue
        won = [j for j in voting if j["preference"] == chosen]
        pair = make_pair(task, example, texts[0], texts[1], "human", sum(p["example_id"] == item for p in pairs))
        pair.update(item=item, stages=[first, second], chosen_stage=chosen, rejected_stage=rejected,
                    reviewers=sorted(j["reviewer"] for j in won), time=max(str(j.get("time") or "") for j in won),
                    votes={s: sum(j["preference"] == s for j in voting) for s in (first, second, "tie")})
        pairs.append(pair)
    stats = {"judgments": sum(len(g) for g in groups.values()), "judgments_left_out_unsafe": left_out,
             "items": len({item for item, _ in groups}), "judged_pairs": len(groups), "pairs": len(pairs),
             "skipped": {k: skipped[k] for k in SKIPPED}}
    return pairs, stats
