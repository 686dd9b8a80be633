"""``medtune eval --endpoint URL``: a task's test items asked of a model someone already serves (medtune serve,
vLLM, llama.cpp, Ollama, a hosted API), scored with the same metrics and written as a stage's evaluation is:

    RUN/<task>/endpoint-<name>/{predictions.jsonl, predictions_shifted.jsonl, metrics.json}

Each item is one greedy request (temperature 0, the task's max_new_tokens) with the task's chat messages. Every
answer is cached in RUN/endpoint_cache, so an interrupted evaluation resumes without asking again.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import MedtuneError
from ..progress import progress
from ..tasks.common import Task
from .client import ChatClient
from .predict import score_row


def served_model(client: ChatClient, name: str | None) -> str:
    """``name``, or the one model the endpoint lists."""
    if name:
        return name
    listed = client.models()
    if len(listed) != 1:
        raise MedtuneError(f"{client.models_url} lists {len(listed)} models ({', '.join(listed) or 'none'}); "
                           "name the one to evaluate with --served-model")
    return listed[0]


def folder_name(model: str) -> str:
    return "endpoint-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model")


def request_body(task: Task, example: dict, model: str) -> dict:
    return {"model": model, "messages": task.messages(example), "temperature": 0, "max_tokens": task.max_new_tokens}


def ask_all(client: ChatClient, model: str, task: Task, examples: list[dict], cache_dir: Path, workers: int) -> list[str]:
    """Every example's answer, in order; ``workers`` requests in flight at once."""
    answers: list[str] = [""] * len(examples)
    with progress() as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        job = bar.add_task(f"{task.name}: asking {model}", total=len(examples), info="")
        futures = {pool.submit(client.ask, request_body(task, ex, model), cache_dir): i for i, ex in enumerate(examples)}
        for future, i in futures.items():
            answers[i] = future.result()["reply"].strip()  # as medtune's own generation strips
            bar.advance(job)
    return answers


def evaluate_endpoint(run, task: Task, client: ChatClient, model: str | None = None, workers: int = 4) -> tuple[Path, dict]:
    """The endpoint's answers to both test splits, scored and written; returns (folder, metrics.json)."""
    from ..study import stage_data, write_evaluation

    cfg = run.cfg.for_task(task.name)
    model = served_model(client, model)
    data = stage_data(run, task)
    examples = data["test"] + data["shifted"]
    started = time.perf_counter()
    answers = ask_all(client, model, task, examples, Path(cfg.run_dir) / "endpoint_cache", workers)
    rows = [score_row(task, ex, answer) for ex, answer in zip(examples, answers)]
    out = Path(cfg.run_dir) / task.name / folder_name(model)
    saved = write_evaluation(cfg, task, out, examples, rows, len(data["test"]),
                             {"endpoint": client.base_url, "model": model},
                             {"elapsed_s": time.perf_counter() - started, "requests": client.requests,
                              **({"label_answers": "generate"} if task.labels is not None else {})})
    return out, saved
