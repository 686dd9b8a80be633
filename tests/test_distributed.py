"""The study under several processes: ``accelerate launch --multi_gpu --num_processes 2 -m medtune ...`` on the
CPU, two processes over gloo, against one process on the same configuration.

Two processes must train the same steps (each computes half of a step's batch), mine the same pairs and
write byte for byte the same predictions as one (docs/scale.md). Evaluation batches hold 4 prompts here:
each process computes whole batches, the same ones one process would, so batch size does not matter.
LoRA dropout is off (the quick preset's), so the losses are deterministic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.errors import MedtuneError

TASK = "text_classification"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
# --multi_gpu starts the processes with torchrun, GPUs or not; medtune joins them over gloo on a CPU
# (--cpu --num_processes 2 starts one process: accelerate's multi-CPU launcher is mpirun)
LAUNCH = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", "-m", "medtune"]
ENV = {**os.environ, "MEDTUNE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
LOSS_TOLERANCE = 1e-5  # relative; measured: equal to the last digit


def write_config(folder: Path, model: Path, name: str, sft: str = "max_steps: 3", evaluation: str = "batch_size: 4",
                 accel: str = "off") -> Path:
    """A one-task study: SFT steps of 2 x 2 sequences and DPO steps of 2 x 2 pairs (accumulation 2: two
    processes take one micro-batch each), held-out evaluations at every DPO step with the task check on,
    so the reference log-probs are precomputed and the guard generates during training."""
    path = folder / f"{name}.yaml"
    path.write_text(f"""
model: {model}
run_dir: {folder / name}
tasks: [{TASK}]
preset: quick
seed: 1
accel: {accel}
data: {{train_limit: 24, test_limit: 10}}
sft: {{{sft}, batch_size: 2, grad_accum: 2, learning_rate: 0.001, save_steps: 3, max_length: 2048}}
pairs: {{samples: 2, max_prompts: 6}}
dpo: {{max_steps: 2, batch_size: 4, learning_rate: 0.001, save_steps: 1, max_length: 2048, eval_steps: 1,
       task_check_prompts: 16}}
eval: {{{evaluation}}}
stats: {{bootstrap_samples: 200}}
""")
    return path


def one_process(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def two_processes(*args, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*LAUNCH, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout)


def read(path: Path):
    return json.loads(path.read_text())


def losses(log: dict) -> list[tuple[int, float]]:
    return [(h["step"], h["loss"]) for h in log["log_history"] if "loss" in h]


def assert_same_losses(one: dict, two: dict) -> None:
    """Every step's logged loss; each step's record survives a resume, in the checkpoint."""
    assert [s for s, _ in losses(one)] == [s for s, _ in losses(two)]
    for (step, a), (_, b) in zip(losses(one), losses(two)):
        assert b == pytest.approx(a, rel=LOSS_TOLERANCE), step


@pytest.fixture(scope="module")
def studies(tmp_path_factory, chatty_model) -> tuple[Path, Path, str]:
    """The same study run by one process and by two (which turn the speed pieces off: ``accel: auto`` gives the
    stock code the single process runs); their run directories and the launcher's output."""
    folder = tmp_path_factory.mktemp("distributed")
    one_process("study", "--config", write_config(folder, chatty_model, "one"))
    done = two_processes("study", "--config", write_config(folder, chatty_model, "two", accel="auto"))
    assert done.returncode == 0, done.stderr[-4000:]
    return folder / "one" / TASK, folder / "two" / TASK, done.stderr


def test_two_processes_train_the_same_steps(studies):
    one, two, output = studies
    for stage in ("sft", "dpo"):
        log_one, log_two = read(one / stage / "train_log.json"), read(two / stage / "train_log.json")
        assert_same_losses(log_one, log_two)
        assert log_two["final_loss"] == pytest.approx(log_one["final_loss"], rel=LOSS_TOLERANCE)
        assert log_one["steps"] == log_two["steps"] and log_one["processes"] == 1 and log_two["processes"] == 2
        # the step's batch kept: the accumulation halved
        assert log_two["gradient_accumulation_steps"] * 2 == log_one["gradient_accumulation_steps"]
        assert log_two["per_device_train_batch_size"] == log_one["per_device_train_batch_size"]
    dpo_one, dpo_two = read(one / "dpo" / "train_log.json"), read(two / "dpo" / "train_log.json")
    assert dpo_two["reference_precomputed"] and dpo_two["task_check"]["active"]
    assert [h["task_answers"] for h in dpo_two["heldout"]] == [h["task_answers"] for h in dpo_one["heldout"]]
    assert "effective batch 2 sequences per forward x 1 accumulated x 2 process(es) = 4 sequences" in output
    assert "accel: off under 2 processes" in output  # asked for auto
    assert not (two / "sft" / "checkpoints").exists() and not (two / "dpo" / "checkpoints").exists()


def test_two_processes_write_the_same_pairs_predictions_and_metrics(studies):
    one, two, _ = studies
    files = ["pairs/pairs.jsonl"] + [f"{stage}/{name}" for stage in ("base", "sft", "dpo")
                                     for name in ("predictions.jsonl", "predictions_shifted.jsonl")]
    for name in files:
        if (one / name).is_file():
            assert (two / name).read_bytes() == (one / name).read_bytes(), name
    for stage in ("base", "sft", "dpo"):
        assert read(two / stage / "metrics.json")["metrics"] == read(one / stage / "metrics.json")["metrics"]
    results_one, results_two = read(one.parent / "results.json"), read(two.parent / "results.json")
    assert results_two["tasks"][TASK]["verdict"] == results_one["tasks"][TASK]["verdict"]
    assert not list(two.parent.rglob("*.tmp"))


def test_eval_command_chooses_the_same_answers_over_two_processes(tmp_path, chatty_model):
    """``eval.label_answers: choose`` (answers chosen by their log-probs, evaluate/choose.py), by ``medtune eval``."""
    one, two = (write_config(tmp_path, chatty_model, name, evaluation="batch_size: 8, label_answers: choose")
                for name in ("one", "two"))
    one_process("eval", "--task", TASK, "--config", one)
    done = two_processes("eval", "--task", TASK, "--config", two)
    assert done.returncode == 0, done.stderr[-4000:]
    for name in ("predictions.jsonl", "predictions_shifted.jsonl"):
        one, two = tmp_path / "one" / TASK / "base" / name, tmp_path / "two" / TASK / "base" / name
        assert two.read_bytes() == one.read_bytes()
    assert read(tmp_path / "two" / TASK / "base" / "metrics.json")["label_answers"] == "choose"


def rank_process(launcher: subprocess.Popen, rank: str) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == rank and "medtune" in " ".join(child.cmdline()):
                return child
        except psutil.Error:  # gone meanwhile
            continue
    return None


def test_a_killed_rank_leaves_a_run_that_resumes_under_the_same_processes(tmp_path, chatty_model):
    sft = "max_steps: 30"
    reference = write_config(tmp_path, chatty_model, "one", sft=sft)
    one_process("sft", "--task", TASK, "--config", reference)
    config = write_config(tmp_path, chatty_model, "two", sft=sft)
    stage = tmp_path / "two" / TASK / "sft"
    launcher = subprocess.Popen([*LAUNCH, "sft", "--task", TASK, "--config", str(config)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any((stage / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert launcher.poll() is None, "SFT ended before it could be interrupted"
        time.sleep(0.02)
    victim = rank_process(launcher, "1")
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0  # the launcher stops rank 0 too
    assert not (stage / "train_log.json").exists()

    # another number of processes: refused, naming both; the checkpoint is kept for the right one
    refused = CliRunner().invoke(app, ["sft", "--task", TASK, "--config", str(config)])
    assert refused.exit_code == 2
    assert "made by 2 process(es) and this run has 1" in " ".join(refused.output.split())
    done = two_processes("sft", "--task", TASK, "--config", config)
    assert done.returncode == 0, done.stderr[-4000:]
    log = read(stage / "train_log.json")
    assert log["steps"] == 30 and log["processes"] == 2
    # resumed exactly (final_loss is Trainer's mean over the steps run since the resume: not compared)
    assert_same_losses(read(tmp_path / "one" / TASK / "sft" / "train_log.json"), log)
    assert (stage / "model" / "adapter_model.safetensors").is_file() and not (stage / "checkpoints").exists()


def test_a_step_that_does_not_divide_among_the_processes_is_refused():
    from medtune.train.common import split_batch

    assert split_batch("sft", 8, 4, 2) == (8, 2)  # the accumulation is shared first
    assert split_batch("sft", 8, 1, 2) == (4, 1)  # else the per-device batch
    assert split_batch("dpo", 2, 3, 1) == (2, 3)
    with pytest.raises(MedtuneError, match=r"sft: a step of 3 x 1 sequences .* 2 processes; make sft.grad_accum"):
        split_batch("sft", 3, 1, 2)
    with pytest.raises(MedtuneError, match=r"dpo.grad_accum \(or dpo.pairs_per_forward\) a multiple of 4"):
        split_batch("dpo", 2, 2, 4)


def test_one_process_helpers_do_nothing():
    from medtune import distributed

    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.my_share([1, 2, 3]) == [1, 2, 3]
    assert distributed.gather({0: "a"}) == {0: "a"}
    assert distributed.on_main(lambda x: x + 1, 1) == 2
