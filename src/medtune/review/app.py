"""The review web app: FastAPI, pages rendered on the server with Jinja2 (autoescaped), every asset served from
``review/static``. No build step, no CDN, no cookies: a reviewer is known by the secret token in their link.

    GET  /r/<token>              the first item the reviewer has not judged, or the done page
    GET  /r/<token>/item/<n>     the reviewer's n-th item (1-based), with their judgment if they made one
    POST /r/<token>/judge        save a judgment (CSRF token required), then 303 to /r/<token>
    GET  /static/<name>          the stylesheet, the keyboard script, the icon

Pages show answer A and answer B, never which stage gave which: the side is drawn per (reviewer, item) and
kept in the database (store.py). Every response carries a Content-Security-Policy (default-src 'self'),
a form posted from another origin is refused, and a body over the size limit gets 413.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from ..errors import MedtuneError
from . import store
from .queue import Item

HERE = Path(__file__).parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"
MAX_REQUEST_BYTES = 64 * 1024
MAX_REASON_CHARS = 4000
# FastAPI's native OpenTelemetry, all off, as `medtune serve` has it: nothing about requests goes anywhere
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                "auto_configure": False}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # the token in the URL never goes to another site
    (b"cache-control", b"no-store"),
]
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
# a model's answer can hold control characters: shown as their Unicode pictures (␕), not silently dropped
CONTROL_PICTURES = {**{c: chr(0x2400 + c) for c in range(32) if c not in (9, 10, 13)}, 127: "\u2421"}


def visible(text) -> str:
    return str(text).translate(CONTROL_PICTURES)


def templates() -> Environment:
    # autoescape everywhere: clinical text and model answers can hold anything, <script> included
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["visible"] = visible
    return env


# ---------------------------------------------------------------- middleware (plain ASGI)


class SecurityHeaders:
    """The CSP and its companions on every response, errors included."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in names]]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """A body over ``limit`` bytes gets 413: by its Content-Length before it is read, or as it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await page(413, "Too large", "This request is larger than the review app accepts.")(
                scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, "Too large")
            return event

        await self.app(scope, counted, send)


class SameOrigin:
    """A POST (or any other unsafe method) whose Origin, or failing that Referer, names another origin than the
    one it was sent to is refused with 403: another site's page cannot post a judgment."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        origin, referer = headers.get("origin"), headers.get("referer")
        sent = origin if origin is not None else (origin_of(referer) if referer is not None else None)
        if sent is not None and sent.lower() != own:
            return await page(403, "Refused", "This form was sent from another site.")(scope, receive, send)
        await self.app(scope, receive, send)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


def page(status: int, title: str, text: str) -> HTMLResponse:
    """A short message page; it carries the security headers itself (a 500 is answered outside the middleware)."""
    return HTMLResponse(templates().get_template("message.html").render(title=title, text=text), status_code=status,
                        headers={k.decode(): v.decode() for k, v in SECURITY_HEADERS})


# ---------------------------------------------------------------- the app


class Review:
    """What the app serves: the items of one stage pair, in the database at ``path``."""

    def __init__(self, path: Path, items: list[Item], stages: tuple[str, str]):
        self.path, self.stages = Path(path), stages
        self.items = {item.key: item for item in items}
        self.env = templates()
        with store.opened(self.path) as conn:
            self.key = store.secret(conn)
            for reviewer in store.all_reviewers(conn):  # every reviewer's queue, before the first page
                store.ensure_queue(self.path, reviewer, stages, list(self.items))

    def reviewer(self, conn: sqlite3.Connection, token: str) -> sqlite3.Row:
        reviewer = store.reviewer_by_token(conn, token)
        if reviewer is None:
            raise HTTPException(404, "Not found")
        return reviewer

    def queue(self, conn: sqlite3.Connection, reviewer: sqlite3.Row) -> list[sqlite3.Row]:
        """The reviewer's items of this review in their order; queued now if they are not yet (a reviewer
        added while the app runs)."""
        rows = [r for r in store.queue_rows(conn, reviewer["id"], self.stages) if (r["task"], r["item"]) in self.items]
        if len(rows) < len(self.items):
            store.ensure_queue(self.path, reviewer, self.stages, list(self.items))
            rows = [r for r in store.queue_rows(conn, reviewer["id"], self.stages)
                    if (r["task"], r["item"]) in self.items]
        return rows

    def render(self, name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(**context), status_code=status)

    def item_page(self, conn, reviewer, token: str, rows, pos: int, form: dict | None = None, error: str = "",
                  status: int = 200) -> HTMLResponse:
        row = rows[pos - 1]
        item = self.items[(row["task"], row["item"])]
        a = row["shown_as_a"]
        b = self.stages[1] if a == self.stages[0] else self.stages[0]
        judged = store.judgment_of(conn, reviewer["id"], self.stages, item.task, item.item)
        if form is None:
            form = {"choice": "", "grade_a": "", "grade_b": "", "unsafe_a": False, "unsafe_b": False, "reason": ""}
            if judged is not None:
                grades = {self.stages[0]: judged["grade_1"], self.stages[1]: judged["grade_2"]}
                unsafe = {self.stages[0]: judged["unsafe_1"], self.stages[1]: judged["unsafe_2"]}
                pref = judged["preference"]
                form = {"choice": "tie" if pref == "tie" else ("A" if pref == a else "B"),
                        "grade_a": "" if grades[a] is None else str(grades[a]),
                        "grade_b": "" if grades[b] is None else str(grades[b]),
                        "unsafe_a": bool(unsafe[a]), "unsafe_b": bool(unsafe[b]), "reason": judged["unsafe_reason"]}
        return self.render("judge.html", status, reviewer=reviewer["name"], token=token,
                           csrf=store.csrf_token(self.key, reviewer), done=sum(r["judged"] for r in rows),
                           total=len(rows), pos=pos, task=item.task, item=item.item, prompt=item.prompt,
                           reference=item.reference, answer_a=item.answers[a], answer_b=item.answers[b],
                           judged=judged is not None, form=form, error=error, max_reason=MAX_REASON_CHARS)


def build_app(db: Path, items: list[Item], stages: tuple[str, str],
              max_request_bytes: int = MAX_REQUEST_BYTES) -> FastAPI:
    """The review app over ``items`` (queue.load_items) for the stage pair ``stages``, judgments in ``db``
    (store.init_db made it)."""
    review = Review(db, items, stages)
    static = {p.name: (p.read_bytes(), MEDIA_TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES}
    app = FastAPI(title="medtune review", telemetry=NO_TELEMETRY, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = review
    app.add_middleware(SameOrigin)
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        titles = {404: "Not found", 403: "Refused", 405: "Not allowed", 413: "Too large"}
        texts = {404: "There is nothing here. Open the personal link you were given.",
                 403: "This request was refused.", 413: "This request is larger than the review app accepts."}
        return page(exc.status_code, titles.get(exc.status_code, "Error"), texts.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def bad_path(request: Request, exc: RequestValidationError):
        return page(404, "Not found", "There is nothing here. Open the personal link you were given.")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        return page(500, "Error", "The review app met an internal error; your saved judgments are safe.")

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page(200, "medtune review", "Open the personal link you were given to start judging.")

    @app.get("/static/{name}")
    def asset(name: str):
        if name not in static:
            raise HTTPException(404)
        body, media_type = static[name]
        return Response(body, media_type=media_type)

    @app.get("/r/{token}", response_class=HTMLResponse)
    def next_item(token: str):
        with store.opened(review.path) as conn:
            reviewer = review.reviewer(conn, token)
            rows = review.queue(conn, reviewer)
            pos = next((n for n, r in enumerate(rows, 1) if not r["judged"]), None)
            if pos is None:
                return review.render("done.html", reviewer=reviewer["name"], token=token, done=len(rows),
                                     total=len(rows))
            return review.item_page(conn, reviewer, token, rows, pos)

    @app.get("/r/{token}/item/{pos}", response_class=HTMLResponse)
    def item_at(token: str, pos: int):
        with store.opened(review.path) as conn:
            reviewer = review.reviewer(conn, token)
            rows = review.queue(conn, reviewer)
            if not 1 <= pos <= len(rows):
                raise HTTPException(404)
            return review.item_page(conn, reviewer, token, rows, pos)

    @app.post("/r/{token}/judge")
    async def judge(token: str, request: Request):
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != \
                "application/x-www-form-urlencoded":
            raise HTTPException(415, "Send the judging form.")
        body = await request.body()
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=40)
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "Not a judging form.") from None
        form = {k: v[-1] for k, v in fields.items()}
        return await run_in_threadpool(save, review, token, form)  # the database off the event loop

    return app


def save(review: Review, token: str, form: dict[str, str]):
    """Check and store one posted judgment; 303 to the reviewer's next item, or the page again with what is
    missing."""
    with store.opened(review.path) as conn:
        reviewer = review.reviewer(conn, token)
        if not store.csrf_ok(review.key, reviewer, form.get("csrf")):
            raise HTTPException(403, "Refused")
        rows = review.queue(conn, reviewer)
        pos = next((n for n, r in enumerate(rows, 1) if (r["task"], r["item"]) == (form.get("task"), form.get("item"))),
                   None)
        if pos is None:
            raise HTTPException(404)
        row = rows[pos - 1]
        a = row["shown_as_a"]
        b = review.stages[1] if a == review.stages[0] else review.stages[0]
        choice, reason = form.get("choice", ""), form.get("reason", "").strip()
        grades_in = {side: form.get(f"grade_{side}", "") for side in ("a", "b")}
        unsafe_in = {side: form.get(f"unsafe_{side}") == "1" for side in ("a", "b")}
        shown = {"choice": choice if choice in ("A", "B", "tie") else "",
                 "reason": form.get("reason", "")[:MAX_REASON_CHARS],
                 **{f"grade_{s}": g if g in ("1", "2", "3", "4", "5") else "" for s, g in grades_in.items()},
                 **{f"unsafe_{s}": u for s, u in unsafe_in.items()}}
        error = ""
        if choice not in ("A", "B", "tie"):
            error = "Choose A is better, B is better or Tie."
        elif any(g not in ("", "1", "2", "3", "4", "5") for g in grades_in.values()):
            error = "A grade is 1 to 5, or none."
        elif any(unsafe_in.values()) and not reason:
            error = "Say why the answer flagged clinically unsafe is unsafe."
        elif reason and not any(unsafe_in.values()):
            error = "The reason is for an answer flagged clinically unsafe: flag one, or empty the box."
        elif len(reason) > MAX_REASON_CHARS:
            error = f"Keep the reason under {MAX_REASON_CHARS} characters."
        if error:
            return review.item_page(conn, reviewer, token, rows, pos, shown, error, status=400)
        preference = {"A": a, "B": b, "tie": "tie"}[choice]
        grades = {side_stage: int(grades_in[side]) if grades_in[side] else None
                  for side, side_stage in (("a", a), ("b", b))}
        unsafe = {a: unsafe_in["a"], b: unsafe_in["b"]}
        store.save_judgment(conn, reviewer["id"], review.stages, row["task"], row["item"], a, preference, grades,
                            unsafe, reason)
    return RedirectResponse(f"/r/{token}", status_code=303)


# ---------------------------------------------------------------- serving


def link(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/r/{token}"


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` under uvicorn until interrupted; no access log (the paths hold the reviewers' tokens)."""
    import socket

    import uvicorn

    try:  # a port in use is the user's to change: one line, not uvicorn's log
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        raise MedtuneError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); choose another --port "
                           "or --host") from None
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                  server_header=False, lifespan="off")).run()
