"""What medtune guarantees when things go wrong (docs/reliability.md): a run directory it made is the only
one it deletes, one process at a time writes it, any kill leaves it resumable, the judge's key stays
with the judge, nothing reaches the network unless asked, and every bad input is one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from typer.testing import CliRunner

from medtune.cli import app

runner = CliRunner()
ROOT = Path(__file__).parents[1]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def run_dir_of(config: Path) -> Path:
    return config.parent / "run"


def with_settings(config: Path, section: str, text: str) -> Path:
    """The tiny config with ``text`` added to its one-line ``section: {...}`` mapping, over what it had."""
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{section}: {{"):
            lines[i] = line.rstrip()[:-1] + f", {text}}}"
    config.write_text("\n".join(lines) + "\n")
    return config


@contextmanager
def tmpfs(path: Path, options: str):
    """A small file system of its own at ``path`` (root only): full or read-only for real."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------ the run directory

def test_restart_refuses_a_folder_medtune_did_not_make(tiny_config, tmp_path):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("three years of work")
    result = invoke("study", "--config", tiny_config, "--run-dir", thesis, "--restart")
    assert result.exit_code == 2
    assert "not a medtune run directory" in result.output and "chapter1.tex" in result.output
    assert (thesis / "chapter1.tex").read_text() == "three years of work"
    # without --restart it is not written into either
    result = invoke("eval", "--task", "triage", "--config", tiny_config, "--run-dir", thesis)
    assert result.exit_code == 2 and sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_restart_checks_everything_before_it_deletes(tiny_config):
    run = run_dir_of(tiny_config)
    assert invoke("eval", "--task", "triage", "--config", tiny_config).exit_code == 0
    assert (run / ".medtune-run").is_file()
    kept = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = invoke("study", "--config", tiny_config, "--restart", "--loss", "bogus")
    assert result.exit_code == 2 and "loss_type" in result.output
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == kept
    with_settings(tiny_config, "sft", "lora_target_modules: [q_prj]")
    result = invoke("study", "--config", tiny_config, "--restart")
    assert result.exit_code == 2 and "q_prj" in result.output
    assert (run / "triage" / "base" / "metrics.json").is_file()


def test_restart_empties_a_medtune_run(tiny_config):
    run = run_dir_of(tiny_config)
    assert invoke("eval", "--task", "triage", "--config", tiny_config).exit_code == 0
    (run / "notes.txt").write_text("written by hand into the run")
    result = invoke("study", "--config", tiny_config, "--tasks", "numeric_classification", "--restart")
    assert result.exit_code == 0, result.output
    assert not (run / "notes.txt").exists() and not (run / "triage").exists()
    assert (run / "numeric_classification" / "dpo" / "metrics.json").is_file()


def test_a_run_made_before_the_marker_is_still_a_run(tiny_config):
    run = run_dir_of(tiny_config)
    assert invoke("eval", "--task", "triage", "--config", tiny_config).exit_code == 0
    (run / ".medtune-run").unlink()
    assert invoke("eval", "--task", "triage", "--config", tiny_config).exit_code == 0
    assert (run / ".medtune-run").is_file()


def test_a_second_process_is_told_the_run_is_in_use(tiny_config):
    run = run_dir_of(tiny_config)
    code = textwrap.dedent(f"""
        import sys, time
        from medtune.rundir import open_run
        with open_run({str(run)!r}):
            print("holding", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = invoke("eval", "--task", "triage", "--config", tiny_config)
        assert result.exit_code == 2
        assert f"in use by another medtune process (PID {holder.pid})" in result.output
        assert not (run / "triage").exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder, even killed
    assert invoke("eval", "--task", "triage", "--config", tiny_config).exit_code == 0


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_a_kill_between_the_model_and_the_commit_resumes(tiny_config, monkeypatch, stage):
    """The window the probe found: the stage's model folder written, its train_log.json not yet. The stage is
    not done, so the next run trains it again (from its last checkpoint) instead of failing for ever."""
    import medtune.train.dpo as dpo
    import medtune.train.sft as sft

    module = {"sft": sft, "dpo": dpo}[stage]
    original = module.write_json

    class Killed(BaseException):
        pass

    def write_json(path, data):
        if Path(path).name == "train_log.json":
            raise Killed()
        return original(path, data)

    if stage == "dpo":
        for cmd in ("sft", "pairs"):
            assert invoke(cmd, "--task", "numeric_classification", "--config", tiny_config).exit_code == 0
    monkeypatch.setattr(module, "write_json", write_json)
    with pytest.raises(Killed):
        runner.invoke(app, [stage, "--task", "numeric_classification", "--config", str(tiny_config)])
    folder = run_dir_of(tiny_config) / "numeric_classification" / stage
    assert (folder / "model" / "medtune_model.json").is_file() and not (folder / "train_log.json").exists()
    monkeypatch.setattr(module, "write_json", original)
    result = invoke(stage, "--task", "numeric_classification", "--config", tiny_config)
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "train_log.json").read_text())["steps"] > 0
    assert invoke("eval", "--task", "numeric_classification", "--stage", stage, "--config", tiny_config).exit_code == 0


def test_what_a_kill_leaves_is_cleared_when_the_run_opens_again(tiny_config):
    run = run_dir_of(tiny_config)
    assert invoke("sft", "--task", "triage", "--config", tiny_config).exit_code == 0
    sft = run / "triage" / "sft"
    (sft / ".metrics.json.abc123.tmp").write_text("{half")
    (sft / ".model.xyz.tmp").mkdir()
    (sft / ".model.xyz.tmp" / "adapter_model.safetensors").write_bytes(b"partial")
    (sft / "checkpoints" / "checkpoint-2").mkdir(parents=True)  # committed training: its checkpoints are spent
    assert invoke("eval", "--task", "triage", "--stage", "sft", "--config", tiny_config).exit_code == 0
    assert not list(run.rglob("*.tmp")) and not (sft / "checkpoints").exists()
    assert (sft / "model" / "adapter_model.safetensors").is_file()


def test_a_run_dir_that_is_a_file_or_read_only(tiny_config, tmp_path):
    a_file = tmp_path / "results.csv"
    a_file.write_text("mine")
    result = invoke("eval", "--task", "triage", "--config", tiny_config, "--run-dir", a_file)
    assert result.exit_code == 2 and "is not a folder" in result.output and a_file.read_text() == "mine"
    with tmpfs(tmp_path / "ro", "ro,size=1m") as read_only:
        result = invoke("eval", "--task", "triage", "--config", tiny_config, "--run-dir", read_only)
        assert result.exit_code == 2 and "cannot write into the run directory" in result.output
        assert "Read-only" in result.output


def test_a_full_disk_is_one_line_naming_the_file(tiny_config, tmp_path):
    with tmpfs(tmp_path / "full", "size=64k") as small:
        run = small / "run"
        result = invoke("sft", "--task", "triage", "--config", tiny_config, "--run-dir", run)
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.output and str(small) in result.output
        assert not (run / "triage" / "sft" / "train_log.json").exists()
        assert not list(run.rglob("*.tmp"))


def test_a_full_disk_while_writing_a_stage_is_one_line(tiny_config, monkeypatch):
    """Where no small file system can be mounted: the same refusal, raised by the first atomic write."""
    import errno

    import medtune.io as io

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_text", full)
    result = invoke("eval", "--task", "triage", "--config", tiny_config)
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert str(run_dir_of(tiny_config)) in result.output


# ------------------------------------------------------------------ the judge's credentials

class Answering(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        redirect = self.server.redirect
        if redirect and self.path == "/v1/chat/completions":
            self.send_response(redirect[0])
            self.send_header("Location", redirect[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps({"choices": [{"message": {"content": "Grade: 2"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def server(redirect=None):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    httpd.seen, httpd.redirect = [], redirect
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("code", [302, 307])
def test_the_judge_never_sends_its_key_to_another_host(monkeypatch, code):
    from medtune.errors import MedtuneError
    from medtune.evaluate.judge import Judge

    monkeypatch.setenv("MEDTUNE_JUDGE_API_KEY", "sk-secret")
    with server() as (elsewhere, other_url):
        # "localhost" and "127.0.0.1" are two origins, as two hosts would be
        other = other_url.replace("127.0.0.1", "localhost")
        with server((code, f"{other}/v1/chat/completions")) as (judge_server, url):
            judge = Judge(f"{url}/v1", "judge", max_retries=0)
            with pytest.raises(MedtuneError, match="another host"):
                judge.grade("note", "reference", "summary")
            assert judge_server.seen[0]["auth"] == "Bearer sk-secret"
        assert elsewhere.seen == []


def test_the_judge_follows_a_redirect_within_its_origin_and_records_who_answered(monkeypatch):
    from medtune.evaluate.judge import Judge

    monkeypatch.setenv("MEDTUNE_JUDGE_API_KEY", "sk-secret")
    with server((307, "/v2/chat/completions")) as (httpd, url):
        judge = Judge(f"{url}/v1", "judge", max_retries=0)
        graded = judge.grade("note", "reference", "summary")
        assert graded["grade"] == 2
        assert [s["path"] for s in httpd.seen] == ["/v1/chat/completions", "/v2/chat/completions"]
        assert httpd.seen[1]["auth"] == "Bearer sk-secret" and httpd.seen[1]["body"] == httpd.seen[0]["body"]
        assert judge.answered_by == {f"{url}/v2/chat/completions"}


# ------------------------------------------------------------------ nothing phones home

HOOK = textwrap.dedent("""
    import json, socket, sys
    attempts = []
    def refuse(what, where):
        attempts.append([what, str(where)])
        raise OSError("network blocked by the test")
    def getaddrinfo(host, *args, **kwargs):
        if host in ("localhost", "127.0.0.1", "::1"):
            return real_getaddrinfo(host, *args, **kwargs)
        refuse("resolve", host)
    def connect(self, address):
        if self.family == socket.AF_UNIX or (isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1")):
            return real_connect(self, address)
        refuse("connect", address)
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    socket.create_connection = lambda address, *a, **k: refuse("connect", address)
    import atexit
    log = sys.argv[1]
    atexit.register(lambda: open(log, "w").write(json.dumps(attempts)))
    sys.argv = sys.argv[2:]
""")


def hub_free_env() -> dict:
    """The environment without any offline switch (in-process CLI tests set them in this process)."""
    drop = {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "CI"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def attempts_of(tmp_path: Path, *code_and_args: str, env: dict | None = None) -> list:
    """Network attempts of a Python process run with the socket hook (in ``env``; default hub_free_env())."""
    log = tmp_path / f"attempts-{time.monotonic_ns()}.json"
    done = subprocess.run([sys.executable, "-c", HOOK + code_and_args[0], str(log), *code_and_args[1:]],
                          env=env or hub_free_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(log.read_text())


def test_a_default_study_makes_no_network_connection(tiny_config, tmp_path):
    # the hook must see a hub request when one is made, or an empty list below would prove nothing
    # (a positive control that does not depend on which packages happen to phone home on this host)
    probe = "from huggingface_hub import HfApi\ntry: HfApi().model_info('gpt2')\nexcept Exception: pass"
    assert any("huggingface" in where for _, where in attempts_of(tmp_path, probe))
    attempts = attempts_of(tmp_path, "from medtune.cli import main; main()", "medtune", "study", "--config",
                           str(tiny_config), "--tasks", "text_classification")
    assert attempts == []
    assert (run_dir_of(tiny_config) / "results.json").is_file()


def test_a_hub_model_id_is_the_one_case_medtune_goes_online():
    from medtune.network import is_hub_id

    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct") and is_hub_id("gpt2")
    assert not is_hub_id("embedded") and not is_hub_id("./models/mine") and not is_hub_id("/abs/path")
    assert not is_hub_id(str(ROOT))  # an existing folder


# ------------------------------------------------------------------ every bad input answered

@pytest.mark.parametrize("section, setting, expected", [
    ("sft", "max_steps: 0", "0 steps would train nothing"),
    ("dpo", "max_steps: 0", "0 steps would train nothing"),
    ("sft", "lora_target_modules: [q_proj, gate_prj]", "'gate_prj' matches no module"),
    ("sft", "lora_target_modules: 'q_proj['", "not a valid regular expression"),
    ("pairs", "strategy: human", "set pairs.human_file"),
    ("pairs", "human_file: nowhere.jsonl", "nowhere.jsonl: file not found"),
    ("pairs", "strategy: label_swap", "label_swap needs a label task"),
])
def test_late_failing_settings_fail_before_any_model_loads(tiny_config, section, setting, expected):
    with_settings(tiny_config, section, setting)
    result = invoke("study", "--config", tiny_config)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not any(run_dir_of(tiny_config).glob("*/base"))  # nothing was evaluated, let alone trained


def test_a_seed_out_of_range_and_an_empty_task_list(tiny_config):
    tiny_config.write_text(tiny_config.read_text().replace("seed: 1", f"seed: {2 ** 40}"))
    result = invoke("study", "--config", tiny_config)
    assert result.exit_code == 2 and "seed" in result.output and "4294967295" in result.output
    tiny_config.write_text(tiny_config.read_text().replace(f"seed: {2 ** 40}", "seed: 1"))
    result = invoke("study", "--config", tiny_config, "--tasks", "")
    assert result.exit_code == 2 and "names no task" in result.output
    assert not run_dir_of(tiny_config).exists()


def broken_copy(tiny_model: Path, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_model, folder)
    return folder


def test_broken_model_folders_are_named(tiny_model, tiny_config, tmp_path):
    no_tokenizer = broken_copy(tiny_model, tmp_path, "no-tokenizer")
    for path in no_tokenizer.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            path.unlink()
    truncated = broken_copy(tiny_model, tmp_path, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    custom = broken_copy(tiny_model, tmp_path, "custom-code")
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="my-own-llm", auto_map={"AutoModelForCausalLM": "modeling_mine.MyModel"})
    (custom / "config.json").write_text(json.dumps(config))
    for folder, expected in ((no_tokenizer, "cannot load a tokenizer"), (truncated, "cannot load the model"),
                             (custom, "declares custom code")):
        result = invoke("eval", "--task", "triage", "--config", tiny_config, "--model", folder,
                        "--run-dir", tmp_path / f"run-{folder.name}")
        assert result.exit_code == 2 and expected in result.output and str(folder) in result.output, result.output


def test_a_checkpoint_that_names_itself_as_its_parent(tiny_config):
    assert invoke("sft", "--task", "triage", "--config", tiny_config).exit_code == 0
    model = run_dir_of(tiny_config) / "triage" / "sft" / "model"
    info = json.loads((model / "medtune_model.json").read_text())
    info.update(parent=".", parent_is_stage=True)
    (model / "medtune_model.json").write_text(json.dumps(info))
    result = invoke("eval", "--task", "triage", "--config", tiny_config, "--checkpoint", model)
    assert result.exit_code == 2 and "is the model itself" in result.output


def test_import_refuses_a_bad_fraction_and_a_file_as_its_folder(tmp_path):
    data = ROOT / "src/medtune/data/bundled/numeric_classification/train.jsonl"
    result = invoke("data", "import", data, "--task", "numeric_classification", "--test-fraction", "1.5",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2 and "--test-fraction" in result.output and not (tmp_path / "out").exists()
    a_file = tmp_path / "out.txt"
    a_file.write_text("mine")
    result = invoke("data", "import", data, "--task", "numeric_classification", "--out", a_file)
    assert result.exit_code == 2 and "must be a folder" in result.output and a_file.read_text() == "mine"
    result = invoke("data", "import", data, "--task", "numeric_classification", "--seed", "-1",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2 and "seed" in result.output and not (tmp_path / "out").exists()


def test_import_writes_all_its_files_or_none(tmp_path, monkeypatch):
    import medtune.io as io

    data = ROOT / "src/medtune/data/bundled/numeric_classification/train.jsonl"
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("the previous import\n")
    real_replace, moved = os.replace, []

    def replace(src, dst):  # the disk fills after the first file is in place
        if moved:
            raise OSError(28, "No space left on device", str(dst))
        moved.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    result = invoke("data", "import", data, "--task", "numeric_classification", "--out", out)
    assert result.exit_code == 2 and "No space left" in result.output
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(io.os, "replace", real_replace)
    result = invoke("data", "import", data, "--task", "numeric_classification", "--out", out)
    assert result.exit_code == 0
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "test.jsonl", "import.json"}


# ------------------------------------------------------------------ duplicate ids

def test_duplicate_test_ids_are_an_error_not_wrong_statistics(tiny_config, tmp_path):
    rows = [json.loads(line) for line in
            (ROOT / "src/medtune/data/bundled/numeric_classification/test.jsonl").open()][:20]
    for row in rows[10:]:
        row["id"] = rows[0]["id"]  # ten rows share one id
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("data", "check", test_file, "--task", "numeric_classification")
    assert result.exit_code == 2
    assert f"id {rows[0]['id']!r} is on 11 rows" in result.output and "rows 1, 11, 12, 13, 14 and 6 more" in result.output
    train = ROOT / "src/medtune/data/bundled/numeric_classification/train.jsonl"
    tiny_config.write_text(tiny_config.read_text().replace(
        "data: {", f"data: {{tasks: {{numeric_classification: {{train: {train}, test: {test_file}}}}}, "))
    result = invoke("eval", "--task", "numeric_classification", "--config", tiny_config)
    assert result.exit_code == 2 and "ids must be unique" in result.output


def test_paired_statistics_refuse_repeated_ids():
    from medtune.errors import MedtuneError
    from medtune.evaluate.stats import align

    rows = [{"id": "a", "correct": True}, {"id": "a", "correct": False}]
    with pytest.raises(MedtuneError, match="repeat the test item id"):
        align(rows, rows)


# ------------------------------------------------------------------ the report

def test_report_md_escapes_what_users_supply():
    from medtune.report.markdown import cell, escape

    hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **loud** a|b"
    text = escape(hostile)
    assert "<img" not in text and "[click]" not in text and "**loud**" not in text
    assert escape("# not a heading").startswith("\\#") and escape("1. not a list").startswith("1\\.")
    assert "|" not in cell(hostile).replace("\\|", "")
