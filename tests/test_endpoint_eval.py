"""medtune eval --endpoint against medtune's own server: an exported stage, served, scores as that stage's
own evaluation did, answer for answer; the path from a study to a served model is the README's."""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.errors import MedtuneError
from medtune.evaluate.client import ChatClient
from medtune.evaluate.endpoint import served_model
from medtune.models import Compute, load_model
from medtune.serve.server import build_app
from servers import running

runner = CliRunner()
TASK = "text_classification"


def run_cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@contextmanager
def serving(folder: Path, name: str, **options):
    """The model in ``folder`` served on a free loopback port; yields the /v1 URL."""
    model, tokenizer, _ = load_model(folder, "cpu")
    with running(build_app(model, tokenizer, name, Compute(), **options)) as base:
        yield f"{base}/v1"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_endpoint_reproduces_the_stages_own_evaluation(tiny_study, tmp_path):
    exported = tmp_path / "sft"
    assert run_cli("export", tiny_study, "--task", TASK, "--stage", "sft", "--out", exported).exit_code == 0
    config = tiny_study.parent / "config.yaml"
    with serving(exported, "triage-sft") as url:
        result = run_cli("eval", "--task", TASK, "--endpoint", url, "--config", config, "--workers", 2)
    assert result.exit_code == 0, result.output
    stage, served = tiny_study / TASK / "sft", tiny_study / TASK / "endpoint-triage-sft"
    for name in ("predictions.jsonl", "predictions_shifted.jsonl"):
        want, got = rows(stage / name), rows(served / name)
        assert [r["output"] for r in got] == [r["output"] for r in want]
        assert any(r["output"] for r in got)  # real answers, not empty strings agreeing trivially
        assert got == want
    want, got = json.loads((stage / "metrics.json").read_text()), json.loads((served / "metrics.json").read_text())
    assert got["metrics"] == want["metrics"] and got["shifted"]["metrics"] == want["shifted"]["metrics"]
    assert got["model"] == "triage-sft" and got["endpoint"] == url
    assert "endpoint-triage-sft" not in json.loads((tiny_study / "results.json").read_text())["tasks"][TASK]["stages"]


def test_answers_are_cached_so_a_rerun_asks_nothing(tiny_study, tmp_path):
    config = tiny_study.parent / "config.yaml"
    with serving(tiny_study / TASK / "dpo" / "model", "dpo") as url:
        assert run_cli("eval", "--task", TASK, "--endpoint", url, "--config", config).exit_code == 0
    # the server is gone: the same evaluation still completes from the cache
    result = run_cli("eval", "--task", TASK, "--endpoint", url, "--served-model", "dpo", "--config", config)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tiny_study / TASK / "endpoint-dpo" / "metrics.json").read_text())
    assert metrics["requests"] == 0


def test_a_server_that_needs_a_key_gets_it_from_the_named_variable(tiny_study, monkeypatch):
    with serving(tiny_study / TASK / "sft" / "model", "keyed", api_key="sk-local") as url:
        with pytest.raises(MedtuneError, match=r"refused the request: HTTP 401.*MEDTUNE_API_KEY"):
            ChatClient(url, "MEDTUNE_API_KEY", max_retries=0).models()
        monkeypatch.setenv("MEDTUNE_API_KEY", "sk-local")
        assert served_model(ChatClient(url, "MEDTUNE_API_KEY", max_retries=0), None) == "keyed"


def test_an_unreachable_endpoint_is_a_clear_error(tiny_study):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = run_cli("eval", "--task", TASK, "--endpoint", f"http://127.0.0.1:{port}/v1", "--retries", 0,
                     "--config", tiny_study.parent / "config.yaml")
    assert result.exit_code == 2 and "unreachable" in result.output and "Traceback" not in result.output
