"""The LLM judge against a real HTTP server speaking the OpenAI chat-completions protocol.

The server runs in a thread of the test process (stdlib ``ThreadingHTTPServer`` on 127.0.0.1,
port 0) and answers like a rubric-following judge: the grade comes from the summary it is shown.
It can fail the first N requests (500, 429) and answer in several styles, and it counts requests.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medtune.config import load_config
from medtune.errors import MedtuneError
from medtune.evaluate.judge import Judge, parse_grade
from medtune.study import regrade_summaries
from medtune.tasks import get_task

NOTE = "Pt: 84F\nAdmission dx: AFib with RVR\nIV diltiazem.\nDischarge meds: apixaban 5 mg BID (NEW)\nDispo: Home"
REFERENCE = "84-year-old woman with atrial fibrillation treated with diltiazem; started apixaban. Discharged home."

STYLES = {
    "plain": "Grade: {g}",
    "chatter": "Sure! I read the note carefully. The summary states the diagnosis and treatment; it is concise "
               "and I found nothing unsupported.\n\n**Final grade: {g}/5**",
    "json": 'Here is my assessment: {{"grade": {g}, "reason": "see rubric"}}',
    "stars": "**{g}/5** - mostly complete.",
}


def rubric_grade(summary: str) -> int:
    """What the fake judge answers: 5 with both drugs, 3 with one, 2 with neither, 1 when empty."""
    if not summary.strip() or summary.strip() == "(empty)":
        return 1
    return {2: 5, 1: 3, 0: 2}[sum(drug in summary.lower() for drug in ("diltiazem", "apixaban"))]


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []  # (path, headers, body) of every request received
        self.failures: list[int] = []  # status codes to answer with before answering properly
        self.style = "plain"
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: JudgeServer

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            failure = self.server.failures.pop(0) if self.server.failures else None
        if self.path != "/v1/chat/completions":
            return self.send(404, {"error": {"message": f"no route {self.path}"}})
        if failure is not None:
            retry_after = {"Retry-After": "0"} if failure == 429 else {}
            return self.send(failure, {"error": {"message": "try again"}}, retry_after)
        if self.server.style == "unauthorized":
            return self.send(401, {"error": {"message": "invalid api key"}})
        user = body["messages"][-1]["content"]
        summary = user.split("SUMMARY TO GRADE:\n", 1)[1].rsplit("\n\nGrade the summary", 1)[0]
        content = STYLES[self.server.style].format(g=rubric_grade(summary))
        self.send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    def send(self, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = JudgeServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def make_judge(server, tmp_path, **kwargs) -> Judge:
    return Judge(server.base_url, "tiny-judge", cache_dir=tmp_path / "cache", backoff_s=0.01, timeout_s=5, **kwargs)


def test_judge_grades_over_the_real_protocol(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTUNE_JUDGE_API_KEY", "sk-test")
    judge = make_judge(server, tmp_path)
    assert judge.grade(NOTE, REFERENCE, REFERENCE) == {"grade": 5, "reply": "Grade: 5", "cached": False}
    assert judge.grade(NOTE, REFERENCE, "AF on diltiazem.")["grade"] == 3
    assert judge.grade(NOTE, REFERENCE, "")["grade"] == 1
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["headers"]["Authorization"] == "Bearer sk-test"
    body = first["body"]
    assert body["model"] == "tiny-judge" and body["temperature"] == 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "5 = every key fact" in body["messages"][0]["content"] and NOTE in body["messages"][1]["content"]


def test_no_key_sends_no_authorization(server, tmp_path, monkeypatch):
    monkeypatch.delenv("MEDTUNE_JUDGE_API_KEY", raising=False)
    make_judge(server, tmp_path).grade(NOTE, REFERENCE, REFERENCE)
    assert "Authorization" not in server.requests[0]["headers"]


@pytest.mark.parametrize("failures", [[500, 500], [429, 503], [502, 429, 500]])
def test_retries_with_backoff_on_5xx_and_429(server, tmp_path, failures):
    server.failures = list(failures)
    judge = make_judge(server, tmp_path, max_retries=3)
    assert judge.grade(NOTE, REFERENCE, REFERENCE)["grade"] == 5
    assert len(server.requests) == len(failures) + 1 == judge.requests


def test_gives_up_after_max_retries_with_a_clear_error(server, tmp_path):
    server.failures = [500, 500, 500]
    judge = make_judge(server, tmp_path, max_retries=2)
    with pytest.raises(MedtuneError, match=r"LLM judge at http://127\.0\.0\.1:\d+/v1/chat/completions is "
                                           r"unreachable after 3 attempt\(s\): HTTP 500"):
        judge.grade(NOTE, REFERENCE, REFERENCE)
    assert len(server.requests) == 3


def test_a_refusal_is_not_retried(server, tmp_path):
    server.style = "unauthorized"
    with pytest.raises(MedtuneError, match=r"refused the request: HTTP 401.*MEDTUNE_JUDGE_API_KEY"):
        make_judge(server, tmp_path).grade(NOTE, REFERENCE, REFERENCE)
    assert len(server.requests) == 1


def test_unreachable_endpoint_names_the_url(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = Judge(f"http://127.0.0.1:{port}/v1", "m", cache_dir=tmp_path, max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(MedtuneError, match=rf"LLM judge at http://127\.0\.0\.1:{port}/v1/chat/completions is "
                                           r"unreachable after 2 attempt\(s\).*base_url"):
        judge.grade(NOTE, REFERENCE, REFERENCE)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_grade_is_read_from_every_reply_style(server, tmp_path, style):
    server.style = style
    judge = make_judge(server, tmp_path)
    assert [judge.grade(NOTE, REFERENCE, s)["grade"] for s in (REFERENCE, "AF on diltiazem.", "Admitted.")] == [5, 3, 2]


@pytest.mark.parametrize("reply, grade", [
    ("Grade: 4", 4), ("**4/5**", 4), ('{"grade": 4}', 4), ('```json\n{"score": 3}\n```', 3),
    ("The summary misses the follow-up, so I would not give 5. Final grade: 4.", 4),
    ("I'd rate this 3 out of 5.", 3), ("2", 2), ("**Score:** 5", 5), ("Rating - 1 (empty summary)", 1),
    ("Grade: 4/5", 4), ('{"grade": "5"}', 5),
    ("", None), ("I cannot grade this.", None), ("Grade: 8/10", None), ("Either 3 or 4.", None),
])
def test_parse_grade(reply, grade):
    assert parse_grade(reply) == grade


def test_cache_prevents_a_second_request(server, tmp_path):
    judge = make_judge(server, tmp_path)
    assert judge.grade(NOTE, REFERENCE, REFERENCE)["cached"] is False
    assert judge.grade(NOTE, REFERENCE, REFERENCE) == {"grade": 5, "reply": "Grade: 5", "cached": True}
    again = make_judge(server, tmp_path)  # a re-run: new process, same cache folder
    assert again.grade(NOTE, REFERENCE, REFERENCE)["cached"] is True
    assert len(server.requests) == 1 and again.requests == 0
    other_model = Judge(server.base_url, "another-judge", cache_dir=tmp_path / "cache")
    assert other_model.grade(NOTE, REFERENCE, REFERENCE)["cached"] is False  # the key includes the model
    assert len(server.requests) == 2


def test_study_hook_regrades_summaries_with_the_judge(server, tmp_path):
    task = get_task("summarization")
    examples = [{"id": "a", "input": NOTE, "target": REFERENCE,
                 "facts": [["atrial fibrillation", "afib"], ["diltiazem"], ["home"], ["apixaban"]]}]
    examples.append({**examples[0], "id": "b"})
    outputs = {"a": REFERENCE, "b": "84-year-old woman with atrial fibrillation. Discharged home."}
    rows = [{"id": ex["id"], "output": outputs[ex["id"]], **get_task("summarization").score(ex, outputs[ex["id"]])}
            for ex in examples]
    assert [r["grade"] for r in rows] == [5, 3]

    builtin = load_config(None, {"run_dir": str(tmp_path / "run")})
    assert regrade_summaries(builtin, task, examples, rows) == (rows, {"grader": "builtin"})
    assert regrade_summaries(builtin, get_task("triage"), examples, rows) == (rows, {})

    cfg = load_config(None, {"run_dir": str(tmp_path / "run"),
                             "eval": {"grader": "llm", "judge": {"base_url": server.base_url, "model": "tiny-judge"}}})
    judged, info = regrade_summaries(cfg, task, examples, rows)
    assert [r["grade"] for r in judged] == [5, 2] and [r["builtin_grade"] for r in judged] == [5, 3]
    assert judged[1]["correct"] is False and judged[1]["coverage"] == 0.5 and judged[1]["grader"] == "llm"
    assert info == {"grader": "llm", "judge": {"base_url": server.base_url, "model": "tiny-judge",
                                               "answered_by": [f"{server.base_url}/chat/completions"],
                                               "parse_failures": 0, "requests": 2}}
    assert len(list((tmp_path / "run" / "judge_cache").glob("*.json"))) == 2  # cached under the run dir
    regrade_summaries(cfg, task, examples, rows)
    assert len(server.requests) == 2


def test_config_rejects_an_unknown_grader():
    with pytest.raises(MedtuneError, match=r"eval\.grader"):
        load_config(None, {"eval": {"grader": "gpt"}})
