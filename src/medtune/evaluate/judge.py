"""The LLM judge: grade summaries 1-5 with any OpenAI-compatible chat-completions endpoint.

Same rubric as the built-in grader (``grader.RUBRIC``, ``docs/grading.md``), asked of a model:

    judge = Judge(base_url="http://127.0.0.1:8000/v1", model="qwen2.5-7b-instruct")
    judge.grade(note, reference, summary)  # -> {"grade": 4, "reply": "Grade: 4", "cached": False}

* The request is ``POST {base_url}/chat/completions`` (the OpenAI protocol that vLLM, llama.cpp's
  server, Ollama, TGI and hosted APIs all speak) with ``temperature: 0``. The API key is read
  from the environment variable *named* by ``api_key_env`` (default ``MEDTUNE_JUDGE_API_KEY``);
  without it no ``Authorization`` header is sent, which is what local servers expect.
* Connection errors, timeouts, 429 and 5xx are retried ``max_retries`` times with exponential
  back-off (``backoff_s * 2**attempt``, or the server's ``Retry-After`` when it sends one, at most
  ``MAX_WAIT_S``); other HTTP errors (401, 404, ...) fail at once. Either way the failure is a
  :class:`MedtuneError` naming the URL.
* Every answered prompt is cached on disk, one JSON file per sha256 of (base_url, model,
  messages, sampling settings), so a re-run never asks again.
* Only the request itself leaves the machine: the standard library's ``urllib``, no SDK, no
  telemetry; loopback endpoints bypass any configured HTTP proxy.
* The API key goes to the configured origin only: a redirect is followed only to the same scheme,
  host and port, and only when it keeps the request a POST (307, 308); any other redirect is an
  error naming where it pointed. ``answered_url`` records the address that answered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .client import ChatClient
from .grader import RUBRIC

def system_prompt(rubric: str = RUBRIC) -> str:
    """The judge's instructions around a rubric: the built-in one, or a task spec's own."""
    return ("You are a meticulous attending physician grading summaries of clinical notes written by a "
            "junior colleague. Apply the rubric exactly.\n\n" + rubric + "\n\n"
            "Answer with one line of reasoning at most, then a final line of the form 'Grade: N' "
            "where N is 1, 2, 3, 4 or 5.")


SYSTEM_PROMPT = system_prompt()



def judge_messages(note: str, reference: str, summary: str, rubric: str | None = None) -> list[dict]:
    user = (f"NOTE:\n{note}\n\nREFERENCE SUMMARY (written by a clinician from the note):\n{reference}\n\n"
            f"SUMMARY TO GRADE:\n{summary if summary.strip() else '(empty)'}\n\n"
            "Grade the summary to grade on the 1-5 rubric.")
    system = SYSTEM_PROMPT if rubric is None else system_prompt(rubric)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- reading the grade

_JSON = re.compile(r"\{[^{}]*\}")
_LABELLED = re.compile(r"\b(?:final\s+)?(?:grade|score|rating|likert)\b[^0-9\n]{0,20}?\b([1-5])(?:\.0+)?\b"
                       r"(?!\s*(?:/|out\s+of)\s*(?:10|100)\b)", re.I)
_OUT_OF_5 = re.compile(r"\b([1-5])(?:\.0+)?\s*(?:/|out\s+of)\s*5\b", re.I)
_LONE = re.compile(r"(?<![\d.\-/])\b([1-5])\b(?![\d%]|\.\d|\s*(?:/|out\s+of)\s*\d)")


def parse_grade(reply: str) -> int | None:
    """The 1-5 grade a judge's reply commits to, or None.

    In order: a JSON object with ``grade``/``score``/``rating``; the last labelled grade
    ("Grade: 4", "**Score:** 4", "final grade is 4"); the last "N/5" or "N out of 5"; a
    lone digit 1-5 when it is the only one in the reply. Chatter around it is fine.
    """
    if not reply or not reply.strip():
        return None
    text = reply.replace("*", "").replace("`", "")
    for blob in _JSON.findall(text):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        for key in ("grade", "score", "rating"):
            value = data.get(key) if isinstance(data, dict) else None
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if value.is_integer() and 1 <= value <= 5:
                return int(value)
    for pattern in (_LABELLED, _OUT_OF_5):
        found = pattern.findall(text)
        if found:
            return int(found[-1])
    lone = set(_LONE.findall(text))
    return int(lone.pop()) if len(lone) == 1 else None


# ---------------------------------------------------------------- the client

class Judge(ChatClient):
    def __init__(self, base_url: str, model: str, api_key_env: str = "MEDTUNE_JUDGE_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 4, cache_dir: Path | str | None = None,
                 backoff_s: float = 1.0, max_tokens: int = 200, rubric: str | None = None):
        super().__init__(base_url, api_key_env, timeout_s, max_retries, backoff_s, who="LLM judge",
                         setting="eval.judge.base_url")
        self.model = model
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.max_tokens = max_tokens
        self.rubric = rubric  # a task's own rubric; None: the built-in one
        self.answered_by: set[str] = set()  # every address the grades came from, cached ones included

    @classmethod
    def from_settings(cls, settings, run_dir: Path | None = None, rubric: str | None = None) -> "Judge":
        """From ``config.JudgeSettings``; the cache defaults to ``RUN/judge_cache``."""
        cache = settings.cache_dir or (Path(run_dir) / "judge_cache" if run_dir else None)
        return cls(settings.base_url, settings.model, settings.api_key_env, settings.timeout_s,
                   settings.max_retries, cache, settings.backoff_s, rubric=rubric)

    # -- one grade

    def grade(self, note: str, reference: str, summary: str) -> dict:
        messages = judge_messages(note, reference, summary, self.rubric)
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        answer = self.ask(body, self.cache_dir)
        self.answered_by.add(answer["answered_url"])
        return {"grade": parse_grade(answer["reply"]), "reply": answer["reply"], "cached": answer["cached"]}


# ---------------------------------------------------------------- the study's hook

def regrade_rows(judge: Judge, examples: list[dict], rows: list[dict], reference=None) -> list[dict]:
    """A graded task's rows re-graded by the judge: ``grade`` and ``correct`` come from the judge,
    the built-in grade stays as ``builtin_grade``; a reply without a grade keeps the built-in
    grade and is flagged ``judge_parse_failed``. ``reference``: example -> the reference answer
    (default: its ``target``)."""
    by_id = {ex["id"]: ex for ex in examples}
    out = []
    for row in rows:
        ex = by_id[row["id"]]
        judged = judge.grade(ex["input"], reference(ex) if reference else ex["target"], row["output"])
        new = {**row, "builtin_grade": row["grade"], "judge_reply": judged["reply"],
               "judge_parse_failed": judged["grade"] is None, "grader": "llm"}
        if judged["grade"] is not None:
            new["grade"] = judged["grade"]
            new["correct"] = judged["grade"] >= 4
        out.append(new)
    return out
