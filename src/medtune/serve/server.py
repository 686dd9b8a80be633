"""An OpenAI-compatible HTTP server for one model: ``GET /v1/models``, ``POST /v1/chat/completions`` (whole or
streamed as Server-Sent Events) and ``GET /health``.

A greedy answer is the one medtune's evaluation gives for the same messages: the whole answer comes from
``generate.generate``, and a streamed one from transformers' ``TextIteratorStreamer`` over the same prompt, stop
tokens and greedy settings, stripped the same way. One model answers one request at a time (a lock); generation
runs in worker threads, so the server answers /health while it generates.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, format_sse_event
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from ..errors import MedtuneError
from ..network import is_loopback
from ..generate import autocast, encode_prompts, generate, sampling_args, stop_token_ids
from ..models import Compute, load_model, resolve_compute

log = logging.getLogger("medtune.serve")
MAX_STOP_STRINGS = 4  # OpenAI's own limit
# FastAPI's native OpenTelemetry, all off: nothing about requests is recorded or sent anywhere
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                "auto_configure": False}


# ---------------------------------------------------------------- the request


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)  # a wrong type is a 400, not silently coerced


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]  # developer: newer clients' name for system
    content: str | list[TextPart]
    name: str | None = None  # accepted, not used


class StreamOptions(Strict):
    include_usage: bool = False


class ChatRequest(Strict):
    messages: list[Message] = Field(min_length=1)
    model: str | None = None  # absent: the served model
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class Sampling:
    """How to generate one answer. Temperature 0 is greedy, as the evaluation generates."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def generation_args(self, tokenizer) -> dict:
        kwargs = sampling_args(tokenizer, self.max_new_tokens, not self.greedy, self.temperature)
        if not self.greedy and self.top_p is not None:
            kwargs["top_p"] = self.top_p
        return kwargs


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (a stop token or string) or "length" (max_new_tokens reached)
    prompt_tokens: int
    completion_tokens: int


def finish_reason(new_ids: list[int], stop_ids: list[int], stopped_by_string: bool = False) -> str:
    return "stop" if stopped_by_string or (new_ids and new_ids[-1] in stop_ids) else "length"


class Cut:
    """Turns decoded pieces into the answer's pieces: stripped as ``generate`` strips a whole answer, and cut
    before the first stop string. Holds back trailing whitespace and what may be the start of a stop string
    until later text settles it; what it has handed out is never taken back."""

    def __init__(self, stops: tuple[str, ...] = ()):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0  # characters of the stripped text handed out
        self.stopped = False

    def feed(self, piece: str) -> str:
        self.text += piece
        text = self.text.lstrip()
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self.hand_out(text[:min(hits)].rstrip())
        ready = text.rstrip()
        held = max((n for s in self.stops for n in range(1, len(s)) if ready.endswith(s[:n])), default=0)
        return self.hand_out(ready[:len(ready) - held].rstrip())

    def finish(self) -> str:
        return "" if self.stopped else self.hand_out(self.text.strip())

    def hand_out(self, ready: str) -> str:
        out = ready[self.sent:]
        self.sent = max(self.sent, len(ready))
        return out


class Cancelled:
    """A stopping criterion: ends generation once ``event`` is set (a stop string seen, the client gone)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class Answer:
    """One answer, generated in its own thread while it is read. Iterating gives the text in pieces (their
    concatenation is what ``generate`` gives greedily); afterwards ``completion`` holds the whole of it.
    ``close()`` ends generation early (a client that left, Ctrl-C) and waits for the thread."""

    def __init__(self, model, tokenizer, compute: Compute, messages: list[dict], sampling: Sampling, lock=None):
        from transformers import TextIteratorStreamer

        self.model, self.tokenizer, self.compute, self.sampling = model, tokenizer, compute, sampling
        self.lock = lock or nullcontext()
        self.prompt_ids = encode_prompts(tokenizer, [messages])[0]
        self.streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="medtune-generate")
        self.new_ids: list[int] = []
        self.error: BaseException | None = None
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        self.thread.start()
        cut, parts = Cut(self.sampling.stop), []
        for piece in self.streamer:
            text = cut.feed(piece)
            if text:
                parts.append(text)
                yield text
            if cut.stopped:
                self.cancelled.set()
                break
        self.thread.join()
        if self.error is not None:
            raise self.error
        if rest := cut.finish():
            parts.append(rest)
            yield rest
        self.completion = Completion("".join(parts), finish_reason(self.new_ids, stop_token_ids(self.tokenizer),
                                                                    cut.stopped),
                                     len(self.prompt_ids), len(self.new_ids))

    def run(self) -> None:
        try:
            with self.lock:
                if not self.cancelled.is_set():  # the reader may have left while this waited for the model
                    self.new_ids = self.generate()
                    return
        except Exception as exc:  # handed to the reader, which raises it
            self.error = exc
        self.streamer.end()  # generate ends the stream itself when it runs

    @torch.inference_mode()
    def generate(self) -> list[int]:
        from transformers import StoppingCriteriaList

        if self.sampling.seed is not None:
            torch.manual_seed(self.sampling.seed)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=device)
        with autocast(self.model, self.compute):
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      streamer=self.streamer,
                                      stopping_criteria=StoppingCriteriaList([Cancelled(self.cancelled)]),
                                      **self.sampling.generation_args(self.tokenizer))
        return out[0, input_ids.shape[1]:].tolist()

    def close(self) -> None:
        self.cancelled.set()
        if self.thread.is_alive():
            self.thread.join()


class Recorder:
    """The model, keeping the ids its ``generate`` returns: ``generate.generate`` hands back text only, and a
    response's finish_reason and token counts need the ids."""

    def __init__(self, model):
        self.model = model
        self.new_ids: list[list[int]] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, input_ids, **kwargs):
        out = self.model.generate(input_ids=input_ids, **kwargs)
        self.new_ids.extend(out[:, input_ids.shape[1]:].tolist())
        return out


def complete(model, tokenizer, compute: Compute, messages: list[dict], sampling: Sampling, lock=None) -> Completion:
    """The whole answer. Greedy without stop strings it is exactly the evaluation's (``generate.generate``);
    otherwise the streamed answer, collected."""
    if not sampling.greedy or sampling.stop:
        answer = Answer(model, tokenizer, compute, messages, sampling, lock)
        for _ in answer:
            pass
        return answer.completion
    # one prompt has no shared prefix for fast_generation to save, and the stock path shows the Recorder the ids
    stock = dataclasses.replace(compute, accel=compute.accel - {"fast_generation"})
    recorder = Recorder(model)
    with lock or nullcontext():
        text = generate(recorder, tokenizer, [messages], sampling.max_new_tokens, stock, batch_size=1, desc=None)[0][0]
    new_ids = recorder.new_ids[0]
    return Completion(text, finish_reason(new_ids, stop_token_ids(tokenizer)),
                      len(encode_prompts(tokenizer, [messages])[0]), len(new_ids))


# ---------------------------------------------------------------- the app


@dataclass
class Served:
    """What the app serves, on ``app.state.served``."""

    model: object
    tokenizer: object
    model_name: str
    compute: Compute
    max_tokens_limit: int
    system_prompt: str | None
    lock: threading.Lock
    created: int


def message_text(content: str | list[TextPart]) -> str:
    return content if isinstance(content, str) else "\n".join(part.text for part in content)


def conversation(request: ChatRequest, system_prompt: str | None) -> list[dict]:
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": message_text(m.content)}
                for m in request.messages]
    if system_prompt is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def sampling_of(request: ChatRequest, limit: int) -> Sampling:
    if request.n != 1:
        raise APIError(400, "n: only n=1 is supported", "n")
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    max_tokens = request.max_completion_tokens or request.max_tokens or limit
    if max_tokens > limit:
        raise APIError(400, f"{param}: {max_tokens} is above this server's limit of {limit}", param)
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    if len(stop) > MAX_STOP_STRINGS:
        raise APIError(400, f"stop: at most {MAX_STOP_STRINGS} stop strings", "stop")
    return Sampling(max_tokens, request.temperature or 0.0, request.top_p, request.seed, stop)


def check_template(tokenizer, messages: list[dict]) -> None:
    try:
        encode_prompts(tokenizer, [messages])
    except TemplateError as exc:  # e.g. a template that refuses system messages or unordered roles
        raise APIError(400, f"messages: the model's chat template refuses them: {exc}", "messages") from None


def model_card(served: Served) -> dict:
    return {"id": served.model_name, "object": "model", "created": served.created, "owned_by": "medtune"}


def completion_body(served: Served, completion: Completion) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                         "logprobs": None, "finish_reason": completion.finish_reason}],
            "usage": usage(completion)}


def usage(completion: Completion) -> dict:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


async def stream_events(served: Served, answer: Answer, include_usage: bool):
    """The answer as OpenAI's ``chat.completion.chunk`` events: the role, the text pieces, the finish_reason,
    the usage when asked for, then ``[DONE]``."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": served.model_name}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return format_sse_event(data_str=json.dumps({**head, "choices": [choice]}))

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in iterate_in_threadpool(iter(answer)):
            yield chunk({"content": piece})
        yield chunk({}, answer.completion.finish_reason)
        if include_usage:
            yield format_sse_event(data_str=json.dumps({**head, "choices": [], "usage": usage(answer.completion)}))
        yield format_sse_event(data_str="[DONE]")
    except Exception as exc:  # the 200 is sent already: the error goes in the stream, as OpenAI's does
        log.exception("generation failed")
        error = {"message": f"generation failed: {exc}", "type": "server_error", "param": None, "code": None}
        yield format_sse_event(data_str=json.dumps({"error": error}))
    finally:
        answer.cancelled.set()  # a client that left stops the generation at its next token


def key_check(api_key: str | None):
    """A dependency: with ``api_key`` set, requests must carry it as a Bearer token."""
    bearer = HTTPBearer(auto_error=False)

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):  # constant time: no timing oracle
            raise APIError(401, "missing or incorrect API key (send it as 'Authorization: Bearer KEY')",
                           code="invalid_api_key")

    return check


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets a 413 in OpenAI's shape, by its Content-Length before it
    is read, or as it arrives (a chunked body has none). FastAPI's own ``max_body_size`` answers a too-large
    Content-Length in plain text, whatever the app answers."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is over this server's limit of {self.limit} bytes"
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await error_response(413, message, code="request_too_large")(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.limit:  # an HTTPException passes through FastAPI's body reading to the handler
                raise HTTPException(413, message)
            return event

        await self.app(scope, counted, send)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.param, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # OpenAI answers a malformed request with 400 where FastAPI would answer 422
        first = exc.errors()[0]
        loc = [str(part) for part in first.get("loc", ())[1:]]  # without the leading "body"
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            param, message = None, f"the body is not valid JSON ({first.get('ctx', {}).get('error', '')})"
        return error_response(400, f"{param}: {message}" if param else message, param)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown route, wrong method, body too large
        code = "request_too_large" if exc.status_code == 413 else None
        return error_response(exc.status_code, str(exc.detail), code=code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}")


def build_app(model, tokenizer, model_name: str, compute: Compute, api_key: str | None = None,
              max_request_bytes: int = 1_000_000, max_tokens_limit: int = 2048,
              system_prompt: str | None = None) -> FastAPI:
    """The server's app for an already-loaded model. ``api_key``: required as a Bearer token on /v1 routes
    (/health stays open); ``max_request_bytes``: larger bodies get 413; ``max_tokens_limit``: the most tokens
    a request may ask for, and what it gets when it asks for none; ``system_prompt``: put first when a request
    has no system message."""
    model.eval()
    # no docs pages or schema: the server answers its API and nothing else
    app = FastAPI(title="medtune", telemetry=NO_TELEMETRY, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served = Served(model, tokenizer, model_name, compute, max_tokens_limit, system_prompt,
                                       threading.Lock(), int(time.time()))
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    add_error_handlers(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(key_check(api_key))])

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @v1.get("/models")
    async def list_models():
        return {"object": "list", "data": [model_card(served)]}

    @v1.get("/models/{name:path}")
    async def get_model(name: str):
        if name != served.model_name:
            raise APIError(404, f"model {name!r} is not served here (this server serves {served.model_name!r})",
                           "model", "model_not_found")
        return model_card(served)

    @v1.post("/chat/completions")
    async def chat_completions(request: ChatRequest):
        if request.model is not None and request.model != served.model_name:
            raise APIError(404, f"model {request.model!r} is not served here (this server serves "
                                f"{served.model_name!r})", "model", "model_not_found")
        sampling = sampling_of(request, served.max_tokens_limit)
        messages = conversation(request, served.system_prompt)
        check_template(tokenizer, messages)
        if request.stream:
            answer = Answer(model, tokenizer, compute, messages, sampling, served.lock)
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return EventSourceResponse(stream_events(served, answer, include_usage))
        completion = await run_in_threadpool(complete, model, tokenizer, compute, messages, sampling, served.lock)
        return completion_body(served, completion)

    app.include_router(v1)
    return app


# ---------------------------------------------------------------- serving


def check_bind(host: str, api_key: str | None) -> None:
    if not api_key and not is_loopback(host):
        raise MedtuneError(f"serve: binding to {host} would open the model to the network without an API key; "
                           "give one (--api-key or the MEDTUNE_API_KEY environment variable), or bind to "
                           "127.0.0.1")


def default_name(model_ref: str | Path) -> str:
    """The name clients ask for: a stage's ``RUN/<task>/<stage>/model`` is ``<task>/<stage>``, a folder its
    name, a base model its name."""
    path = Path(model_ref)
    if path.is_dir():
        path = path.resolve()
        return "/".join(path.parts[-3:-1]) if path.name == "model" else path.name
    return str(model_ref)


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_name: str | None = None, device: str = "auto", precision: str = "auto",
          max_request_bytes: int = 1_000_000, max_tokens_limit: int = 2048, system_prompt: str | None = None,
          log_level: str = "info") -> None:
    """Load ``model_dir`` (an exported folder, a stage's ``model/``, or a base model name) and serve it until
    interrupted.

    ``api_key``, or else the ``MEDTUNE_API_KEY`` environment variable: clients must send it as
    ``Authorization: Bearer KEY``. Without one the server binds to a loopback address only (127.0.0.1, ::1,
    localhost); any other ``host`` is refused with a MedtuneError, checked before the model is loaded."""
    api_key = api_key or os.environ.get("MEDTUNE_API_KEY") or None
    check_bind(host, api_key)
    compute = resolve_compute(device, precision, "off")
    model, tokenizer, _ = load_model(model_dir, compute.device, compute.weights)
    app = build_app(model, tokenizer, model_name or default_name(model_dir), compute, api_key, max_request_bytes,
                    max_tokens_limit, system_prompt)
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False)).run()
