"""medtune chat: a scripted conversation with the tiny model (scaled up to say real text, as in test_serve.py),
written to a rich console in memory."""

from __future__ import annotations

import copy
import threading
from io import StringIO

import pytest
from rich.console import Console

from medtune.generate import generate
from medtune.models import Compute, load_model
from medtune.serve.chat import chat, printable

TOKENS = 12
FIRST, SECOND = "patient presents with chest pain", "sodium"


@pytest.fixture(scope="module")
def chatty(chatty_model):
    model, tokenizer, _ = load_model(chatty_model, "cpu")
    return model, tokenizer


def scripted(*lines):
    """An ``input_fn`` that types ``lines``, then Ctrl-D; it records each prompt it was called with."""
    pending, prompts = list(lines), []

    def read(prompt=""):
        prompts.append(prompt)
        if not pending:
            raise EOFError
        line = pending.pop(0)
        if isinstance(line, BaseException):
            raise line
        return line

    read.prompts = prompts
    return read


def run(chatty, *lines, system_prompt=None, console=None, tokens=TOKENS):
    model, tokenizer = chatty
    console = console or Console(file=StringIO(), width=200)
    read = scripted(*lines)
    chat(model, tokenizer, Compute(), system_prompt, max_new_tokens=tokens, input_fn=read, console=console)
    return console.file.getvalue(), read.prompts


def answer(chatty, messages) -> str:
    model, tokenizer = chatty
    return generate(model, tokenizer, [messages], TOKENS, Compute(), batch_size=1, desc=None)[0][0]


def user(text):
    return {"role": "user", "content": text}


def test_answers_follow_the_conversation_and_reset_forgets_it(chatty):
    first = answer(chatty, [user(FIRST)])
    second = answer(chatty, [user(FIRST), {"role": "assistant", "content": first}, user(SECOND)])
    fresh = answer(chatty, [user(SECOND)])
    assert second != fresh and first  # the history changes the answer, so the test can tell
    out, prompts = run(chatty, FIRST, "  ", SECOND, "/reset", SECOND)  # a blank line is not a message
    assert len(prompts) == 6  # five lines, then the end of input
    at = [out.index(printable(text)) for text in (first, second, fresh)]
    assert at == sorted(at) and "forgotten" in out[at[1]:at[2]]


def test_the_system_prompt_comes_first(chatty):
    system = "You are a careful clinical assistant."
    out, _ = run(chatty, FIRST, system_prompt=system)
    assert printable(answer(chatty, [{"role": "system", "content": system}, user(FIRST)])) in out
    assert printable(answer(chatty, [user(FIRST)])) not in out


@pytest.mark.parametrize("ending", ["/exit", EOFError(), KeyboardInterrupt()], ids=["exit", "eof", "ctrl-c"])
def test_the_chat_ends_cleanly(chatty, ending):
    out, prompts = run(chatty, FIRST, ending, SECOND)
    assert len(prompts) == 2  # nothing read after the ending
    assert printable(answer(chatty, [user(FIRST)])) in out
    assert printable(answer(chatty, [user(SECOND)])) not in out


def test_ctrl_c_while_answering_ends_the_chat_and_its_generation(chatty):
    class Interrupted(Console):
        def out(self, *args, **kwargs):
            raise KeyboardInterrupt

    console = Interrupted(file=StringIO(), width=200)
    _, prompts = run(chatty, FIRST, SECOND, console=console, tokens=2000)  # long enough to be still going
    assert len(prompts) == 1
    assert not any(t.name == "medtune-generate" for t in threading.enumerate())


def test_control_characters_never_reach_the_terminal():
    assert printable("a\x1b[31mb\rc\td\n") == "a[31mbc\td\n"


def test_a_conversation_the_template_refuses_is_reported_and_forgotten(chatty):
    model, tokenizer = chatty
    strict = copy.deepcopy(tokenizer)
    refuse = "{% for m in messages %}{% if 'refuse' in m['content'] %}{{ raise_exception('no refusals here') }}" \
             "{% endif %}{% endfor %}"
    strict.chat_template = refuse + tokenizer.chat_template
    out, prompts = run((model, strict), "please refuse", FIRST)
    assert "no refusals here" in out and len(prompts) == 3
    assert printable(answer(chatty, [user(FIRST)])) in out  # the refused message is not in the history
