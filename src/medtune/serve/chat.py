"""A terminal chat with one model: each answer is streamed as it is generated (the server's ``Answer``), and
the conversation is kept until ``/reset``. ``/exit``, Ctrl-D or Ctrl-C ends it."""

from __future__ import annotations

import re

from jinja2 import TemplateError
from rich.console import Console
from rich.markup import escape

from ..models import Compute
from .server import Answer, Sampling

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all control characters but tab and newline
HELP = "Type a message; /reset forgets the conversation, /exit (or Ctrl-D) ends the chat."


def chat(model, tokenizer, compute: Compute, system_prompt: str | None, max_new_tokens: int = 256,
         input_fn=input, console: Console | None = None) -> None:
    """Chat on the terminal until /exit, end of input or Ctrl-C. ``input_fn(prompt)`` reads a line (tests
    script it); answers are greedy, as the evaluation's, and written to ``console``."""
    console = console or Console()
    model.eval()
    history: list[dict] = []
    console.print(f"[dim]{HELP}[/dim]")
    while True:
        try:
            line = input_fn("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if line == "/exit":
            return
        if line == "/reset":
            history.clear()
            console.print("[dim]conversation forgotten[/dim]")
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        try:
            text = reply(model, tokenizer, compute, system + history, max_new_tokens, console)
        except KeyboardInterrupt:
            console.print()
            return
        except TemplateError as exc:  # e.g. a template without system messages: say so, forget the message
            console.print(f"[red]the model's chat template refuses this conversation: {escape(str(exc))}[/red]")
            history.pop()
            continue
        history.append({"role": "assistant", "content": text})


def reply(model, tokenizer, compute: Compute, messages: list[dict], max_new_tokens: int, console: Console) -> str:
    """Stream one answer to the console; returns its text."""
    answer = Answer(model, tokenizer, compute, messages, Sampling(max_new_tokens))
    console.print("[bold]model>[/bold] ", end="")
    try:
        for piece in answer:
            console.out(printable(piece), end="", highlight=False)  # out: no markup, no wrapping
    finally:
        answer.close()  # on Ctrl-C the generation thread stops at its next token
    console.print()
    return answer.completion.text


def printable(text: str) -> str:
    """``text`` without control characters: a model's escape sequence must not drive the terminal."""
    return CONTROL.sub("", text)
