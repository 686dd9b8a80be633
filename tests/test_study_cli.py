"""The whole study through the CLI on a tiny random model: results, report, resume, errors."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.tasks import TASK_NAMES

runner = CliRunner()


def run_cli(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_dir_of(config: Path) -> Path:
    return config.parent / "run"


def with_accel(config: Path, accel: str) -> Path:
    config.write_text(config.read_text() + f"accel: {accel}\n")
    return config


CORE = pytest.mark.parametrize("accel", ["auto", "off"])  # the stock path is the reference: both run


def study_in_a_fresh_process(config: Path) -> list[str]:
    """Runs the study as the medtune command would, in a process of its own; the medtune.accel modules it
    imported."""
    code = ("import sys; from medtune.cli import main; sys.argv = ['medtune', 'study', '--config', "
            f"{str(config)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(sorted(m for m in sys.modules if m.startswith('medtune.accel')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


@CORE
def test_full_five_task_study(tiny_config, accel):
    """With ``accel: off`` the study runs on stock TRL, PEFT and transformers code: its process imports
    nothing of the accel package."""
    with_accel(tiny_config, accel)
    if accel == "off":
        assert study_in_a_fresh_process(tiny_config) == []
    else:
        result = run_cli("study", "--config", tiny_config)
        assert result.exit_code == 0, result.output
    run = run_dir_of(tiny_config)
    results = json.loads((run / "results.json").read_text())
    assert results["schema_version"] == 4
    assert set(results["tasks"]) == set(TASK_NAMES)
    assert results["versions"]["trl"] and results["config"]["model"]
    for name, task in results["tasks"].items():
        for stage in ("base", "sft", "dpo"):
            metrics = task["stages"][stage]["metrics"]
            for metric in task["primary_metrics"]:
                m = metrics[metric]
                assert m["n"] == 10
                assert m["ci_low"] <= m["value"] <= m["ci_high"], (name, stage, metric, m)
            assert 0 <= metrics["parse_failure_rate"]["value"] <= 1
            assert (run / name / stage / "predictions.jsonl").is_file()
        for comparison in ("sft_vs_base", "dpo_vs_sft", "dpo_vs_base"):
            for metric in task["primary_metrics"]:
                c = task["comparisons"][comparison][metric]
                assert 0 <= c["p_value"] <= c["p_holm"] <= 1
                assert c["test"] in ("exact McNemar", "paired bootstrap", "Wilcoxon signed-rank")
        assert task["verdict"]["verdict"] in ("sft_sufficient", "dpo_helps", "no_gain", "inconclusive")
        assert task["verdict"]["reason"] and task["verdict"]["split"] == "test"
        assert all("finding" in c for comp in task["comparisons"].values() for c in comp.values())
        # every bundled task has a shifted split: each stage answered it too, on the same number of items
        shifted = task["shifted"]
        assert all(shifted["stages"][s]["metrics"][m]["n"] == 10 for s in ("base", "sft", "dpo")
                   for m in task["primary_metrics"])
        assert (run / name / "dpo" / "predictions_shifted.jsonl").is_file()
        assert shifted["verdict"]["verdict"] and set(shifted["comparisons"]) == set(task["comparisons"])
        assert task["pairs"]["pairs"] > 0
        pairs = [json.loads(line) for line in (run / name / "pairs" / "pairs.jsonl").open()]
        assert all(p["chosen"] != p["rejected"] and p["source"] in ("model_error", "label_swap") for p in pairs)
        assert (run / name / "sft" / "model" / "adapter_model.safetensors").is_file()
        assert (run / name / "dpo" / "model" / "adapter_model.safetensors").is_file()
        assert not (run / name / "sft" / "checkpoints").exists()
    report = (run / "report.md").read_text()
    for name in TASK_NAMES:
        assert f"## {name}" in report
    assert "**Verdict (in-distribution test split):" in report and "p=" in report
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "Summary" in html

    # a second run skips every finished stage and rebuilds the same results
    before = {p: p.stat().st_mtime_ns for p in run.rglob("metrics.json")}
    again = run_cli("study", "--config", tiny_config)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in run.rglob("metrics.json")} == before

    # the report rebuilds from the run directory alone
    (run / "report.md").unlink()
    rebuilt = run_cli("report", run)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (run / "report.md").read_text() == report  # same numbers, recomputed from saved predictions


@CORE
def test_study_resumes_after_sigkill(tiny_config, accel):
    """Kill the study hard in the middle of SFT training; the next run finishes it."""
    with_accel(tiny_config, accel)
    run = run_dir_of(tiny_config)
    text = tiny_config.read_text().replace("max_steps: 3, batch_size: 4", "max_steps: 40, batch_size: 4")
    tiny_config.write_text(text)
    cmd = [sys.executable, "-m", "medtune", "study", "--config", str(tiny_config), "--tasks", "numeric_classification"]
    env = {**os.environ, "MEDTUNE_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = run / "numeric_classification" / "sft" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))):
        assert proc.poll() is None, "the study ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "numeric_classification" / "base" / "metrics.json").is_file()
    assert not (run / "results.json").exists()
    base_mtime = (run / "numeric_classification" / "base" / "metrics.json").stat().st_mtime_ns

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    task = results["tasks"]["numeric_classification"]
    assert set(task["stages"]) == {"base", "sft", "dpo"}
    assert task["stages"]["sft"]["training"]["steps"] == 40  # resumed from the checkpoint, not restarted short
    assert (run / "numeric_classification" / "base" / "metrics.json").stat().st_mtime_ns == base_mtime
    assert not list(run.rglob("*.tmp"))


def test_tasks_command_lists_all_five():
    result = run_cli("tasks")
    assert result.exit_code == 0
    for name in TASK_NAMES:
        assert name in result.output


@pytest.mark.parametrize("args, expected", [
    (["eval", "--task", "radiology"], "unknown task"),
    (["eval", "--task", "triage", "--stage", "ppo"], "--stage must be one of"),
    (["study", "--config", "missing.yaml"], "not found"),
])
def test_user_errors_exit_2_without_traceback(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_stage_order_is_enforced(tiny_config):
    result = runner.invoke(app, ["dpo", "--task", "triage", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "run `medtune pairs` first" in result.output
    result = runner.invoke(app, ["eval", "--task", "triage", "--stage", "sft", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "has not been trained yet" in result.output


def test_run_dir_refuses_a_different_config(tiny_config):
    assert runner.invoke(app, ["eval", "--task", "triage", "--config", str(tiny_config)]).exit_code == 0
    tiny_config.write_text(tiny_config.read_text().replace("seed: 1", "seed: 2"))
    result = runner.invoke(app, ["eval", "--task", "triage", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "different configuration" in result.output and "seed" in result.output


@CORE
def test_stages_one_by_one(tiny_config, accel):
    """Each stage is usable alone, in order, through its own sub-command."""
    with_accel(tiny_config, accel)
    for cmd in ("sft", "pairs", "dpo"):
        result = runner.invoke(app, [cmd, "--task", "text_classification", "--config", str(tiny_config)])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "--task", "text_classification", "--stage", "dpo", "--config", str(tiny_config)])
    assert result.exit_code == 0 and "macro_f1" in result.output
    run = run_dir_of(tiny_config)
    assert (run / "text_classification" / "dpo" / "metrics.json").is_file()


def test_handing_models_on_gives_the_outputs_loading_them_gives(tiny_config):
    """A stage's model handed on in memory to the next stage (the ``trained_handoff`` piece for trained ones)
    gives every output that loading the saved model in each stage gives."""
    run = run_dir_of(tiny_config) / "text_classification"

    def outputs():
        return {p.relative_to(run): p.read_text() for p in sorted(run.rglob("*.jsonl"))}

    held = {}
    for pieces in ("[trained_handoff, shared_prompt]", "[shared_prompt]"):
        text = tiny_config.read_text().split("accel:")[0] + f"accel: {pieces}\n"
        tiny_config.write_text(text)
        result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "text_classification",
                                     "--restart"])
        assert result.exit_code == 0, result.output
        held[pieces] = outputs()
    assert {str(p) for p in held["[shared_prompt]"]} >= {"base/predictions.jsonl", "sft/predictions.jsonl",
                                                         "pairs/pairs.jsonl", "dpo/predictions.jsonl"}
    assert held["[trained_handoff, shared_prompt]"] == held["[shared_prompt]"]


def test_full_fine_tuning_saves_weights_and_dpo_uses_a_frozen_reference(tiny_config):
    text = tiny_config.read_text().replace("sft: {", "sft: {method: full, ")
    tiny_config.write_text(text)
    result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "numeric_classification"])
    assert result.exit_code == 0, result.output
    run = run_dir_of(tiny_config) / "numeric_classification"
    for stage in ("sft", "dpo"):
        info = json.loads((run / stage / "model" / "medtune_model.json").read_text())
        assert info["kind"] == "full"
        assert (run / stage / "model" / "model.safetensors").is_file()


def test_qlora_trains_adapters_on_4bit_weights_in_sft_and_dpo(tiny_config, monkeypatch):
    import medtune.train.dpo as dpo
    import medtune.train.sft as sft

    seen = {}

    def spy(name, train):
        def wrapped(model, *args, **kwargs):
            seen[name] = getattr(model, "is_loaded_in_4bit", False)
            return train(model, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(sft, "train_sft", spy("sft", sft.train_sft))
    monkeypatch.setattr(dpo, "train_dpo", spy("dpo", dpo.train_dpo))
    monkeypatch.setenv("MEDTUNE_QLORA_ON_CPU", "1")  # bitsandbytes' CPU path: the same code as on a GPU
    tiny_config.write_text(tiny_config.read_text().replace("sft: {", "sft: {method: qlora, "))
    result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "numeric_classification"])
    assert result.exit_code == 0, result.output
    assert seen == {"sft": True, "dpo": True}  # DPO's parent (SFT merged) was quantised again to train on
    run = run_dir_of(tiny_config) / "numeric_classification"
    for stage in ("sft", "dpo"):
        folder = run / stage / "model"
        assert json.loads((folder / "medtune_model.json").read_text())["kind"] == "qlora"
        assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
        assert not (run / stage / "scratch_model").exists()  # the merged copy quantised from is removed
        assert json.loads((run / stage / "metrics.json").read_text())["metrics"]["macro_f1"]["n"] == 10


def test_qlora_on_cpu_or_without_bitsandbytes_is_a_clear_error(tiny_config, monkeypatch):
    import importlib.util

    tiny_config.write_text(tiny_config.read_text().replace("sft: {", "sft: {method: qlora, ") + "device: cpu\n")
    result = runner.invoke(app, ["sft", "--task", "text_classification", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "qlora needs a CUDA GPU" in result.output and "use sft.method: lora" in result.output
    result = runner.invoke(app, ["study", "--config", str(tiny_config)])  # before the base model is evaluated
    assert result.exit_code == 2 and "qlora needs a CUDA GPU" in result.output
    assert not (run_dir_of(tiny_config) / "text_classification" / "base").exists()
    monkeypatch.setenv("MEDTUNE_QLORA_ON_CPU", "1")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a))
    result = runner.invoke(app, ["sft", "--task", "text_classification", "--config", str(tiny_config)])
    assert result.exit_code == 2 and "needs the bitsandbytes package" in result.output
    assert "Traceback" not in result.output
    assert not (run_dir_of(tiny_config) / "text_classification" / "sft" / "model").exists()


def test_triage_file_with_one_head_runs_the_whole_study(tiny_config, tmp_path):
    """A user's triage file with only `urgency`: every stage, the statistics and the report use that head."""
    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "src/medtune/data/bundled/triage/train.jsonl").open()]
    data = tmp_path / "urgency_only.csv"
    import csv
    with data.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["message", "urgency"])
        writer.writeheader()
        for r in rows[:60]:
            writer.writerow({"message": r["input"], "urgency": r["urgency"]})
    tiny_config.write_text(tiny_config.read_text().replace(
        "data: {", f"data: {{tasks: {{triage: {{train: {data}, map: {{input: message}}}}}}, "))
    result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "triage"])
    assert result.exit_code == 0, result.output
    results = json.loads((run_dir_of(tiny_config) / "results.json").read_text())
    triage = results["tasks"]["triage"]
    assert triage["primary_metrics"] == ["urgency_macro_f1"]
    assert set(triage["comparisons"]["dpo_vs_sft"]) == {"urgency_macro_f1", "urgency_accuracy"}
    assert "personnel_macro_f1" not in triage["stages"]["sft"]["metrics"]
    assert triage["verdict"]["verdict"] in ("sft_sufficient", "dpo_helps", "no_gain", "inconclusive")


def test_iterative_rounds_mine_from_the_previous_round(tiny_config):
    # the quick preset turns the task check off; on here, to see that the study hands DPO its examples
    tiny_config.write_text(tiny_config.read_text().replace("save_steps: 1,", "save_steps: 1, task_check_prompts: 64,"))
    result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "numeric_classification",
                                 "--rounds", "2", "--strategy", "label_swap"])
    assert result.exit_code == 0, result.output
    run = run_dir_of(tiny_config) / "numeric_classification"
    round2 = json.loads((run / "pairs" / "round_2" / "stats.json").read_text())
    assert round2["round"] == 2 and round2["mined_with"].endswith("dpo/round_1/model")
    final = json.loads((run / "dpo" / "model" / "medtune_model.json").read_text())
    assert final["parent"].endswith("round_1/model")
    assert (run / "dpo" / "metrics.json").is_file()
    log = json.loads((run / "dpo" / "train_log.json").read_text())
    assert log["heldout"] and "rewards/accuracies" in log["heldout"][-1]
    # the study hands DPO its training examples and the pairs name theirs; 12 examples leave too few
    # prompts outside the training pairs to check
    assert log["task_check"]["prompts"] >= 1
    assert log["task_check"]["active"] is False and "fewer than 16" in log["task_check"]["reason"]


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path):
    """A kill while Trainer writes checkpoint-4 leaves it without trainer_state.json: resume from checkpoint-2."""
    from medtune.train.common import last_checkpoint

    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"partial")
    assert last_checkpoint(tmp_path) == str(folder / "checkpoint-2")
    assert not (folder / "checkpoint-4").exists()
    assert last_checkpoint(tmp_path / "nothing") is None


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_trained_model_as_loaded_is_what_loading_its_folder_gives(tiny_model, tmp_path, method):
    """What the study hands on after training: the same logits as the saved stage loaded from disk, and none
    of the trainers' additions (instance forwards, gradient checkpointing, training mode)."""
    import torch

    from medtune.accel.handoff import as_loaded
    from medtune.config import load_config
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.models import Compute, load_model
    from medtune.tasks import get_task
    from medtune.train.sft import train_sft

    task = get_task("text_classification")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = load_config(overrides={"sft": {"max_steps": 2, "batch_size": 2, "max_length": 4096, "method": method,
                                              "learning_rate": 1e-2, "gradient_checkpointing": True}}).sft
    _, trained = train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:4],
                           settings, tmp_path / "sft", Compute(accel=frozenset({"shared_prompt"})), 0)
    handed = as_loaded(trained)
    loaded, _, _ = load_model(tmp_path / "sft" / "model", "cpu")
    assert "forward" not in vars(handed) and not handed.is_gradient_checkpointing and not handed.training
    ids = torch.tensor([tokenizer("Patient reports smoking two packs a day.")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(handed(input_ids=ids).logits, loaded(input_ids=ids).logits)
        base = load_model(tiny_model, "cpu")[0](input_ids=ids).logits
    assert not torch.equal(base, loaded(input_ids=ids).logits)  # training changed the model


def test_importing_medtune_changes_no_environment():
    """Only the medtune command sets the hub libraries' offline switches (network.py): a program that imports
    medtune, or runs a stage from Python, keeps its own environment and library settings."""
    keys = ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    code = ("import os, gc, medtune, medtune.study, medtune.cli, medtune.train.sft, medtune.train.dpo; "
            f"print(sorted(k for k in {keys!r} if k in os.environ), gc.isenabled(), gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True 0"


def test_study_evaluates_sft_beside_dpo_sharing_the_layers_below_dpos_adapters(tiny_config, tiny_model, monkeypatch):
    """With DPO's adapters on the top layer only, the study evaluates the SFT and DPO models together, their
    shared lower layer run once per prompt pass; each model's answers are the ones `medtune eval` gives alone."""
    import re

    from test_generate import prompt_sensitive_model

    import medtune.accel.generation as gen

    # the tiny model answers "" to every prompt; this one's answers depend on the prompt, and DPO's larger
    # steps make the DPO model's differ from the SFT model's
    folder = tiny_config.parent / "sensitive-model"
    model, tokenizer = prompt_sensitive_model(tiny_model, True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = re.sub(r"model: \S+", f"model: {folder}", tiny_config.read_text(), count=1)
    tiny_config.write_text(text.replace("dpo: {max_steps: 2, batch_size: 4, learning_rate: 0.001",
                                        "dpo: {lora_layers: 1, max_steps: 2, batch_size: 4, learning_rate: 0.05"))
    trunks, original = [], gen.shared_trunk
    monkeypatch.setattr(gen, "shared_trunk", lambda models: trunks.append(original(models)) or trunks[-1])
    result = runner.invoke(app, ["study", "--config", str(tiny_config), "--tasks", "triage"])
    assert result.exit_code == 0, result.output
    shared = [t for t in trunks if t is not None]
    assert len(shared) == 1 and len(shared[0].below) == 1 and shared[0].replayed > 0
    run = run_dir_of(tiny_config) / "triage"
    together = {}
    for stage, other in (("sft", "dpo"), ("dpo", "sft")):
        assert json.loads((run / stage / "metrics.json").read_text())["evaluated_with"] == [other]
        together[stage] = (run / stage / "predictions.jsonl").read_text()
    for stage in ("sft", "dpo"):
        result = runner.invoke(app, ["eval", "--config", str(tiny_config), "--task", "triage", "--stage", stage,
                                     "--force"])
        assert result.exit_code == 0, result.output
        assert "evaluated_with" not in json.loads((run / stage / "metrics.json").read_text())
        assert (run / stage / "predictions.jsonl").read_text() == together[stage]
    assert together["sft"] != together["dpo"]


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_config):
    result = run_cli("study", "--config", tiny_config, "--tasks", "triage,summarization", "--dry-run")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Estimated time: about" in out and "GFLOP/s" in out
    for stage in ("eval base", "SFT", "pairs", "DPO", "eval SFT + DPO"):
        assert stage in out
    # triage: 10 test and 10 shifted items, 3 SFT steps of 4 sequences
    assert "20 items" in out and "12 sequences" in out
    # the memory plan: the tiny model's own parameter count, and a row per method and stage
    from transformers import AutoModelForCausalLM

    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_config.read_text().split("model: ")[1]
                                                                         .split()[0]).parameters())
    assert f"memory per device, GB: {params / 1e6:,.0f}M parameters" in out
    for method in ("lora", "qlora", "full"):
        for stage in ("SFT", "DPO"):
            assert re.search(rf"│ {method}\s+│ {stage}\s+│\s+\d+\.\d", result.output), (method, stage)
    assert not run_dir_of(tiny_config).exists()


def test_eval_answers_both_test_splits(tiny_config):
    result = run_cli("eval", "--task", "triage", "--config", tiny_config)
    assert result.exit_code == 0, result.output
    assert "triage / base" in result.output and "triage / base, shifted test split" in result.output
    base = run_dir_of(tiny_config) / "triage" / "base"
    saved = json.loads((base / "metrics.json").read_text())
    assert saved["shifted"]["metrics"]["urgency_macro_f1"]["n"] == 10
    shifted_ids = [json.loads(line)["id"] for line in (base / "predictions_shifted.jsonl").open()]
    test_ids = [json.loads(line)["id"] for line in (base / "predictions.jsonl").open()]
    assert len(shifted_ids) == len(test_ids) == 10
    assert all(i.startswith("tr-shifted-") for i in shifted_ids) and all(i.startswith("tr-test-") for i in test_ids)
