"""The README's path from a finished study to a served model, as a user types it: export, serve (a real
`medtune serve` process), ask it with the openai client; and `medtune chat` on the exported folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import openai
from typer.testing import CliRunner

from medtune.cli import app
from medtune.generate import generate
from medtune.models import Compute, load_model

runner = CliRunner()
TASK = "text_classification"


def run_cli(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def test_export_then_serve_then_ask(tiny_study, tmp_path):
    from medtune.tasks import get_task

    exported = tmp_path / "model"
    result = run_cli("export", tiny_study, "--task", TASK, "--out", exported)  # --stage best
    assert result.exit_code == 0, result.output
    info = json.loads((exported / "medtune_export.json").read_text())
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "medtune", "serve", str(exported), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "MEDTUNE_API_KEY": ""})
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == [f"{TASK}-{info['stage']}"]
        user = {"role": "user", "content": "Note: ex-smoker, quit 2015."}
        reply = client.chat.completions.create(model=f"{TASK}-{info['stage']}", messages=[user], temperature=0)
    finally:
        process.terminate()
        process.wait(30)
    # no system message sent: the server put the task's first, as the study's prompts have it
    task = get_task(TASK)
    model, tokenizer, _ = load_model(exported, "cpu")
    want = generate(model, tokenizer, [[{"role": "system", "content": task.system_prompt}, user]],
                    reply.usage.completion_tokens, Compute(), batch_size=1, desc=None)[0][0]
    assert reply.choices[0].message.content == want and want


def test_serve_refuses_the_network_without_a_key(tiny_study):
    result = run_cli("serve", tiny_study / TASK / "sft" / "model", "--host", "0.0.0.0", env={"MEDTUNE_API_KEY": ""})
    assert result.exit_code == 2 and "without an API key" in result.output


def test_chat_on_an_exported_folder(tiny_study, tmp_path):
    exported = tmp_path / "chat"
    assert run_cli("export", tiny_study, "--task", TASK, "--stage", "sft", "--out", exported).exit_code == 0
    result = run_cli("chat", exported, input="never smoked\n/reset\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "conversation forgotten" in result.output
    from medtune.tasks import get_task

    model, tokenizer, _ = load_model(exported, "cpu")
    task = get_task(TASK)
    want = generate(model, tokenizer, [[{"role": "system", "content": task.system_prompt},
                                        {"role": "user", "content": "never smoked"}]],
                    task.max_new_tokens, Compute(), batch_size=1, desc=None)[0][0]
    printable = "".join(ch for ch in want if ch.isprintable() or ch in "\t\n")
    assert printable.strip() and printable.strip()[:8] in result.output
