"""A client for OpenAI-compatible chat-completions endpoints (vLLM, llama.cpp's server, Ollama, TGI, hosted APIs,
``medtune serve``), shared by the LLM judge and ``medtune eval --endpoint``.

* ``POST {base_url}/chat/completions``; the API key comes from the environment variable *named* by
  ``api_key_env``; without it no ``Authorization`` header is sent, which is what local servers expect.
* Connection errors, timeouts, 429 and 5xx are retried ``max_retries`` times with exponential back-off
  (``backoff_s * 2**attempt``, or the server's ``Retry-After``, at most ``MAX_WAIT_S``); other HTTP errors fail
  at once. Either way the failure is a :class:`MedtuneError` naming the URL.
* The standard library's ``urllib``, no SDK, no telemetry; loopback endpoints bypass any HTTP proxy.
* The API key goes to the configured origin only: a redirect is followed only to the same scheme, host and
  port, and only when it keeps the request a POST (307, 308). ``answered_url`` records who answered.
* ``ask`` caches each answer on disk, one JSON file per sha256 of (base_url, request body), so a re-run
  never asks again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import MedtuneError
from ..io import read_json, write_json

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_WAIT_S = 30.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the endpoint's origin, as the same POST; never hand the key elsewhere."""

    def __init__(self, who: str, setting: str):
        self.who, self.setting = who, setting

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urljoin(req.full_url, newurl)
        if origin(target) != origin(req.full_url):
            raise MedtuneError(f"{self.who} at {req.full_url} redirected to {target}, another host; medtune does not "
                               f"send the API key to another address. Set {self.setting} to the address that "
                               "should answer")
        if code not in (307, 308):
            raise MedtuneError(f"{self.who} at {req.full_url} answered HTTP {code}, a redirect to {target} that would "
                               f"drop the request's body; set {self.setting} to that address")
        return urllib.request.Request(target, data=req.data, headers=dict(req.header_items()), method=req.get_method())


class ChatClient:
    """``who`` and ``setting`` name the endpoint in errors: what it is, and the setting that points at it."""

    def __init__(self, base_url: str, api_key_env: str | None = None, timeout_s: float = 60.0, max_retries: int = 4,
                 backoff_s: float = 1.0, who: str = "endpoint", setting: str = "--endpoint"):
        self.base_url = base_url.rstrip("/")
        root = self.base_url.removesuffix("/chat/completions")
        self.url, self.models_url = root + "/chat/completions", root + "/models"
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.who, self.setting = who, setting
        self.requests = 0  # HTTP requests actually sent (retries included)
        self.answered_url: str | None = None  # the address the last answer came from
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if not urllib.parse.urlsplit(self.url).scheme.startswith("http") or not host:
            raise MedtuneError(f"{who} base_url {base_url!r} is not an http(s) URL")
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self.opener = urllib.request.build_opener(*handlers, SameOriginRedirects(who, setting))

    def headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def ask(self, body: dict, cache_dir: Path | None) -> dict:
        """``complete(body)``, from the disk cache where it was answered before: {reply, answered_url, cached}."""
        key = hashlib.sha256(json.dumps([self.base_url, body], sort_keys=True).encode("utf-8")).hexdigest()
        path = Path(cache_dir) / f"{key}.json" if cache_dir else None
        if path is not None and path.is_file():
            try:
                cached = read_json(path)
                return {"reply": cached["reply"], "answered_url": cached.get("answered_url") or self.url,
                        "cached": True}
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged cache entry is asked again
        reply = self.complete(body)
        if path is not None:
            write_json(path, {"model": body.get("model"), "base_url": self.base_url,
                              "answered_url": self.answered_url, "reply": reply})
        return {"reply": reply, "answered_url": self.answered_url, "cached": False}

    def complete(self, body: dict) -> str:
        """The reply's text to one chat-completions request."""
        return reply_text(self.exchange(self.url, json.dumps(body).encode("utf-8")), self.answered_url, self.who)

    def models(self) -> list[str]:
        """The model ids ``GET {base_url}/models`` lists."""
        payload = self.exchange(self.models_url, None)
        try:
            return [m["id"] for m in payload["data"]]
        except (KeyError, TypeError):
            raise MedtuneError(f"{self.who} at {self.models_url} answered without a list of models: "
                               f"{json.dumps(payload)[:300]}") from None

    def exchange(self, url: str, data: bytes | None) -> dict:
        """One JSON request (POST with ``data``, else GET), retried as the module says."""
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2 ** attempt
            try:
                self.requests += 1
                request = urllib.request.Request(url, data=data, headers=self.headers(),
                                                 method="POST" if data is not None else "GET")
                with self.opener.open(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                    self.answered_url = response.geturl()
                return payload
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300] if exc.fp else ""
                last = f"HTTP {exc.code} {exc.reason} {detail}".strip()
                if exc.code not in RETRY_STATUS:
                    hint = f" (is ${self.api_key_env} set?)" if exc.code in (401, 403) and self.api_key_env else ""
                    raise MedtuneError(f"{self.who} at {url} refused the request: {last}{hint}") from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.strip().replace(".", "", 1).isdigit():
                    wait = float(retry_after)
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                last = f"{getattr(exc, 'reason', exc)}"
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MedtuneError(f"{self.who} at {url} did not answer with JSON ({exc})") from None
            if attempt < self.max_retries:
                time.sleep(min(wait, MAX_WAIT_S))
        raise MedtuneError(f"{self.who} at {url} is unreachable after {self.max_retries + 1} attempt(s): {last}. "
                           f"Check {self.setting} and that the server is running.")


def reply_text(payload: dict, url: str | None, who: str = "endpoint") -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise MedtuneError(f"{who} at {url} answered without choices[0].message.content: "
                           f"{json.dumps(payload)[:300]}") from None
    return content or ""
