"""medtune serve: a real uvicorn on a free loopback port, spoken to with the real openai client.

The tiny random model at its usual scale repeats one whitespace token, which strips to nothing: its weights
are scaled up so that answers are real text that differs between prompts, and special tokens are suppressed
so no answer ends early."""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import uvicorn

from medtune.errors import MedtuneError
from medtune.generate import encode_prompts, generate
from medtune.models import Compute, load_model
from medtune.serve import server
from medtune.network import is_loopback
from medtune.serve.server import Cut, build_app, finish_reason, serve
from servers import running

KEY = "sk-test-key"
LIMIT = 64
MAX_BYTES = 20_000
CHEST = [{"role": "user", "content": "patient presents with chest pain"}]
PATIENT = [{"role": "user", "content": "patient"}]  # the raw answer starts with a space, which both ways strip


@pytest.fixture(scope="module")
def chatty(chatty_model):
    model, tokenizer, _ = load_model(chatty_model, "cpu")
    return model, tokenizer




@pytest.fixture(scope="module")
def app(chatty):
    model, tokenizer = chatty
    return build_app(model, tokenizer, "tiny", Compute(), max_request_bytes=MAX_BYTES, max_tokens_limit=LIMIT)


@pytest.fixture(scope="module")
def url(app):
    with running(app) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(chatty):
    model, tokenizer = chatty
    with running(build_app(model, tokenizer, "tiny", Compute(), api_key=KEY, max_tokens_limit=LIMIT)) as base:
        yield base


def client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


def post(base: str, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def evaluation_answer(chatty, messages, max_new_tokens) -> str:
    model, tokenizer = chatty
    return generate(model, tokenizer, [messages], max_new_tokens, Compute(), batch_size=1, desc=None)[0][0]


def prompt_length(tokenizer, messages) -> int:
    return len(encode_prompts(tokenizer, [messages])[0])


def test_models_lists_the_one_served_model(url):
    models = client(url).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert client(url).models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client(url).models.retrieve("other")


def test_health_answers(url):
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_a_greedy_answer_is_the_evaluations(url, chatty):
    expected = evaluation_answer(chatty, CHEST, 24)
    assert len(expected) > 10  # real text, so the comparison can fail
    reply = client(url).chat.completions.create(model="tiny", messages=CHEST, max_tokens=24)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == "length"  # special tokens are suppressed: no answer ends early
    assert reply.usage.completion_tokens == 24
    assert reply.usage.prompt_tokens == prompt_length(chatty[1], CHEST)
    other = client(url).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "sodium"}],
                                                max_tokens=24)
    assert other.choices[0].message.content != expected  # the answer depends on the messages


@pytest.mark.parametrize("messages", [CHEST, PATIENT], ids=["chest", "leading-space"])
def test_a_streamed_answer_is_the_same_text(url, chatty, messages):
    expected = evaluation_answer(chatty, messages, 24)
    chunks = list(client(url).chat.completions.create(model="tiny", messages=messages, max_tokens=24, stream=True,
                                                       stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed in pieces, not at once
    assert "".join(pieces) == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24


def test_text_parts_and_the_default_system_prompt(chatty):
    model, tokenizer = chatty
    app = build_app(model, tokenizer, "tiny", Compute(), max_tokens_limit=LIMIT, system_prompt="You are careful.")
    with running(app) as base:
        parts = [{"role": "user", "content": [{"type": "text", "text": "patient presents with chest pain"}]}]
        reply = client(base).chat.completions.create(model="tiny", messages=parts, max_tokens=12)
        with_system = [{"role": "system", "content": "You are careful."}, *CHEST]
        assert reply.choices[0].message.content == evaluation_answer(chatty, with_system, 12)
        assert reply.usage.prompt_tokens == prompt_length(tokenizer, with_system)
        own = [{"role": "system", "content": "Answer briefly."}, *CHEST]  # a request's own system message stays
        reply = client(base).chat.completions.create(model="tiny", messages=own, max_tokens=12)
        assert reply.choices[0].message.content == evaluation_answer(chatty, own, 12)


def test_stop_strings_cut_the_answer_whole_or_streamed(url, chatty):
    expected = evaluation_answer(chatty, CHEST, 24)
    stop = expected[8:11]
    cut = expected[:expected.index(stop)].rstrip()
    reply = client(url).chat.completions.create(model="tiny", messages=CHEST, max_tokens=24, stop=[stop, "zzzz"])
    assert reply.choices[0].message.content == cut
    assert reply.choices[0].finish_reason == "stop"
    chunks = list(client(url).chat.completions.create(model="tiny", messages=CHEST, max_tokens=24, stop=stop,
                                                       stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sampling_follows_the_seed(url):
    def sample(seed):
        return client(url).chat.completions.create(model="tiny", messages=CHEST, max_tokens=16, temperature=1.0,
                                                   top_p=0.9, seed=seed).choices[0].message.content

    first = sample(1)
    assert sample(1) == first
    assert len({first, sample(2), sample(3)}) > 1


@pytest.mark.parametrize("extra", [{"n": 2}, {"max_tokens": LIMIT + 1}, {"max_completion_tokens": LIMIT + 1},
                                   {"temperature": -1}, {"messages": [{"role": "user", "content": 5}]},
                                   {"messages": [{"role": "robot", "content": "hi"}]}, {"messages": []},
                                   {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                                   {"stream": "yes"}])
def test_a_bad_request_is_a_400(url, extra):
    body = {"model": "tiny", "messages": CHEST, **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(**body)
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b'{"model": "tiny"}', b'{"model": "tiny", "messages": [', b"[1, 2]", b""])
def test_missing_messages_or_malformed_json_is_a_400_in_openais_shape(url, body):
    status, answer = post(url, "/v1/chat/completions", body)
    assert status == 400
    assert set(answer["error"]) == {"message", "type", "param", "code"}


def test_an_unknown_model_is_a_404(url):
    with pytest.raises(openai.NotFoundError) as caught:
        client(url).chat.completions.create(model="gpt-9", messages=CHEST, max_tokens=4)
    assert caught.value.body["code"] == "model_not_found"


def test_a_body_too_large_is_a_413_with_or_without_content_length(url):
    big = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x" * MAX_BYTES}]}).encode()
    status, answer = post(url, "/v1/chat/completions", big)  # urllib sends Content-Length
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:  # chunked: no Content-Length, so the server must count what arrives
        connection.request("POST", "/v1/chat/completions", body=iter([big[:5000], big[5000:]]),
                           headers={"Content-Type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"]["code"] == "request_too_large"
    finally:
        connection.close()
    small = json.dumps({"model": "tiny", "messages": CHEST, "max_tokens": 2}).encode()
    assert post(url, "/v1/chat/completions", small)[0] == 200


def test_the_api_key_is_required_when_set(keyed_url):
    with pytest.raises(openai.AuthenticationError):
        client(keyed_url, "wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(keyed_url, "wrong").chat.completions.create(model="tiny", messages=CHEST, max_tokens=2)
    status, answer = post(keyed_url, "/v1/chat/completions", json.dumps({"messages": CHEST}).encode())  # no key
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert [m.id for m in client(keyed_url, KEY).models.list().data] == ["tiny"]
    reply = client(keyed_url, KEY).chat.completions.create(model="tiny", messages=CHEST, max_tokens=2)
    assert reply.usage.completion_tokens == 2


def test_health_answers_while_the_model_is_busy(app, url):
    """A request waits for the model (its lock, held here as a long generation would); /health still answers,
    and the request completes once the model is free."""
    replies = []
    with app.state.served.lock:
        worker = threading.Thread(target=lambda: replies.append(client(url).chat.completions.create(
            model="tiny", messages=CHEST, max_tokens=4)))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and not replies  # waiting for the model
        start = time.monotonic()
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - start < 2
    worker.join(30)
    assert replies and replies[0].usage.completion_tokens == 4


def test_a_client_that_leaves_mid_stream_stops_the_generation(monkeypatch, chatty):
    model, tokenizer = chatty
    answers = []

    class Seen(server.Answer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            answers.append(self)

    monkeypatch.setattr(server, "Answer", Seen)
    with running(build_app(model, tokenizer, "tiny", Compute(), max_tokens_limit=1500)) as base:
        stream = client(base).chat.completions.create(model="tiny", messages=CHEST, max_tokens=1500, stream=True)
        next(iter(stream)), next(iter(stream))
        stream.close()
        (seen,) = answers
        seen.thread.join(60)
        assert not seen.thread.is_alive() and 0 < len(seen.new_ids) < 1500
        assert client(base).chat.completions.create(model="tiny", messages=CHEST, max_tokens=2).choices  # model free


def test_no_docs_or_schema_are_served(url):
    for path in ("/docs", "/redoc", "/openapi.json"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url + path, timeout=5)
        assert caught.value.code == 404


class Loaded(Exception):
    """Raised in place of loading the model: serve got past the bind check."""


def refuse_loading(*args, **kwargs):
    raise Loaded


def test_a_non_loopback_bind_needs_a_key(monkeypatch, tiny_model):
    monkeypatch.delenv("MEDTUNE_API_KEY", raising=False)
    monkeypatch.setattr(server, "load_model", refuse_loading)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(MedtuneError, match="API key"):
            serve(tiny_model, host=host)  # refused before the model is loaded
    with pytest.raises(Loaded):
        serve(tiny_model, host="0.0.0.0", api_key=KEY)
    with pytest.raises(Loaded):
        serve(tiny_model, host="127.0.0.1")


def test_the_key_may_come_from_the_environment(monkeypatch, tiny_model):
    monkeypatch.setattr(server, "load_model", refuse_loading)
    monkeypatch.setenv("MEDTUNE_API_KEY", KEY)
    with pytest.raises(Loaded):
        serve(tiny_model, host="0.0.0.0")
    monkeypatch.setenv("MEDTUNE_API_KEY", "")  # set but empty is no key
    with pytest.raises(MedtuneError, match="API key"):
        serve(tiny_model, host="0.0.0.0")


def test_serve_loads_the_model_and_runs_uvicorn_with_it(monkeypatch, tiny_model):
    """serve's whole path but the blocking run: uvicorn's Server.run records what it was given."""
    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: ran.append(self.config))
    monkeypatch.delenv("MEDTUNE_API_KEY", raising=False)
    serve(tiny_model, port=8123, max_tokens_limit=16, system_prompt="Be brief.")
    (config,) = ran
    assert (config.host, config.port, config.server_header) == ("127.0.0.1", 8123, False)
    served = config.app.state.served
    assert served.model_name == tiny_model.name and served.max_tokens_limit == 16
    assert served.system_prompt == "Be brief." and served.compute.device in ("cpu", "cuda")


def test_the_default_name_of_a_stage_model_is_task_and_stage(tmp_path):
    stage_model = tmp_path / "run" / "triage" / "sft" / "model"
    stage_model.mkdir(parents=True)
    assert server.default_name(stage_model) == "triage/sft"
    assert server.default_name(tmp_path / "run") == "run"
    assert server.default_name("smollm2-135m") == "smollm2-135m"


def test_messages_the_chat_template_refuses_are_a_400(chatty):
    model, tokenizer = chatty
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}"
                            "{% endif %}" + tokenizer.chat_template)
    with running(build_app(model, strict, "tiny", Compute(), max_tokens_limit=LIMIT)) as base:
        with pytest.raises(openai.BadRequestError, match="no system role"):
            client(base).chat.completions.create(model="tiny", messages=[{"role": "system", "content": "x"}, *CHEST])
        with pytest.raises(openai.BadRequestError, match="no system role"):
            client(base).chat.completions.create(model="tiny", stream=True,
                                                 messages=[{"role": "developer", "content": "x"}, *CHEST])
        assert client(base).chat.completions.create(model="tiny", messages=CHEST, max_tokens=2).choices


def test_finish_reason_says_what_ended_the_answer():
    assert finish_reason([5, 6, 2], [2]) == "stop"
    assert finish_reason([5, 6, 7], [2]) == "length"
    assert finish_reason([], [2]) == "length"
    assert finish_reason([5, 6, 7], [2], stopped_by_string=True) == "stop"


@pytest.mark.parametrize("pieces, stops, expected", [
    (["  he", "llo ", " wor", "ld  \n"], (), "hello  world"),
    (["ab", "c<", "|en", "d|> more"], ("<|end|>",), "abc"),
    (["x a", "b"], ("ab",), "x"),  # the space before a stop string is not handed out
    (["x <", "y"], ("<|end|>",), "x <y"),  # a held-back partial match that did not become one
    (["foo\n", "\nbar"], ("\n\n",), "foo"),
])
def test_cut_strips_and_stops_like_the_whole_answer(pieces, stops, expected):
    cut = Cut(stops)
    out = [cut.feed(p) for p in pieces] + [cut.finish()]
    assert "".join(out) == expected
