"""``medtune serve`` (an OpenAI-compatible HTTP server) and ``medtune chat`` (a terminal chat) for one model."""

from .chat import chat
from .server import build_app, serve

__all__ = ["build_app", "chat", "serve"]
