"""The benchmark harness runs end to end at tiny sizes on the tiny random model."""

import json
import subprocess
import sys
import unittest.mock
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_harness_smoke(tiny_model):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke", "--only", "p2,p3,p4,p5",
                           "--model", str(tiny_model)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert results["p2_agreement"] == 1.0  # batched and per-example greedy decoding agree
    assert results["p2_eval_speedup"] > 0 and results["p3_dpo_time_ratio"] > 0
    assert results["p2_speedup_ceiling"] == results["p2_plain_s"] / results["p2_prefill_floor_s"] > 0
    assert results["p2_choose_speedup"] == results["p2_plain_s"] / results["p2_choose_s"] > 0
    assert results["p2_choose_parsed_items"] <= results["p2_examples"]
    assert 0 < results["p5_sft_mfu"] < 1.5 and results["p3_sft"]["flops_per_step"] > 0
    # the rate of the steps after the first (listed): their FLOPs over their forward and backward
    flops, seconds = results["p3_sft"]["flops_per_batch"], results["p3_sft"]["step_s"]
    assert len(flops) == 2 and sum(flops) == results["p3_sft"]["flops_per_step"] * 2
    assert results["p5_later_steps_mfu"] == flops[1] / seconds[1] / 1e9 / results["p5_matmul_peak_gflops"] > 0
    # each step's forward and backward timed, within the training's seconds (smoke: 2 steps of 2)
    steps = results["p3_sft"]["step_s"]
    assert len(steps) == 2 and 0 < sum(steps) <= results["p3_sft"]["train_s"]
    # the faster of two SFT children, as the peak is the higher of two measurements
    runs = results["p3_sft"]["train_s_runs"]
    assert len(runs) == 2 and results["p3_sft"]["train_s"] == min(runs)
    # the peak is the higher of the two measurements bracketing the SFT it divides
    assert results["p5_matmul_peak_gflops"] == max(results["p5_matmul_gflops_before"],
                                                   results["p5_matmul_gflops_after"])
    # where SFT computes in bf16 (a CPU with bf16 in hardware), the same SFT pinned to fp32 against the fp32 peak
    if results["p5_precision"] == "fp32":
        assert "p5_fp32_sft_mfu" not in results
    else:
        assert results["p5_fp32_precision"] == "fp32" and results["p5_fp32_sft"]["flops_per_step"] > 0
        assert results["p5_fp32_matmul_peak_gflops"] == max(results["p5_fp32_matmul_gflops_before"],
                                                            results["p5_fp32_matmul_gflops_after"])
    assert results["p4_vs_trl_speedup"] > 0 and 0 <= results["p4_metric_medtune"] <= 1
    assert results["p4_metric_difference"] == results["p4_metric_medtune"] - results["p4_metric_trl"]
    assert results["p4_metric_ci_low"] <= results["p4_metric_difference"] <= results["p4_metric_ci_high"]
    # the TRL-layout DPO run beside the default one (each prompt once): both measured
    assert results["p3_dpo_trl_layout"]["items"] == results["p3_dpo"]["items"] > 0
    assert -1 <= results["p4_kappa_medtune"] <= 1 and 1 <= results["p4_labels_used_trl"] <= 4


def test_p4_chance_check_separates_skill_from_spread():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import chance_check

    gold = ["a", "b", "c"] * 20
    perfect = chance_check("p4", "x", [{"gold": g, "pred": g} for g in gold])
    assert perfect == {"p4_kappa_x": 1.0, "p4_labels_used_x": 3}
    # one label for everything: no agreement beyond chance, and a parse failure counts as a label of its own
    constant = chance_check("p4", "x", [{"gold": g, "pred": None} for g in gold])
    assert constant == {"p4_kappa_x": 0.0, "p4_labels_used_x": 1}
    # two labels answered regardless of the gold: more labels used, still chance
    spread = chance_check("p4", "x", [{"gold": g, "pred": "ab"[i % 2]} for i, g in enumerate(gold)])
    assert spread["p4_labels_used_x"] == 2 and abs(spread["p4_kappa_x"]) < 0.1


def test_p2_floor_counts_the_tokens_evaluation_computes(tiny_model, monkeypatch):
    """p2's ceiling divides by the prompt tokens an evaluation cannot skip: the shared prefix once and
    each prompt's own part. On prompts without padding, that is what enters the first decoder layer
    when medtune generates one token for each."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import decoder_weights, prompt_tokens

    from medtune.generate import encode_prompts, generate
    from medtune.models import load_model
    from medtune.train import shared_trunk

    model, tokenizer, _ = load_model(str(tiny_model), "cpu")
    system = {"role": "system", "content": "Read the laboratory report and answer with one label only. " * 4}
    prompts = [[system, {"role": "user", "content": f"sodium {n} mmol/L"}] for n in range(130, 142)]
    lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
    assert len(set(lengths)) == 1  # no padding, so every token entering the layer is a prompt's or a new one
    entered = []
    hook = model.model.layers[0].register_forward_pre_hook(lambda m, args, kw: entered.append(
        (args[0] if args else kw["hidden_states"]).shape[:2].numel()), with_kwargs=True)
    generate(model, tokenizer, prompts, max_new_tokens=1, batch_size=4, desc=None)
    hook.remove()
    assert prompt_tokens(tokenizer, prompts) == sum(entered) < sum(lengths)  # the prefix once, not per prompt
    # every weight but the embeddings, the LM head (tied or not) and the final norm
    outside = {id(m.weight): m.weight.numel() for m in (model.get_input_embeddings(), model.get_output_embeddings(),
                                                        model.model.norm)}
    assert decoder_weights(model) == sum(p.numel() for p in model.parameters()) - sum(outside.values()) > 0
    # other layouts count everything but the embeddings and the LM head (here: plus the final norm)
    monkeypatch.setattr(shared_trunk, "decoder_layers", lambda m: None)
    layers = sum(p.numel() for p in model.model.layers.parameters())
    assert decoder_weights(model) == layers + model.model.norm.weight.numel()


def test_peak_memory_is_the_child_process_own():
    """p3 runs each side in a child process; its peak must not include what the parent held when it started it."""
    ballast = bytearray(b"\1") * (1024 * 2**20)  # 1 GiB, every page touched
    child = subprocess.run([sys.executable, "-c", "import run_all; print(run_all.peak_mb('cpu'))"],
                           capture_output=True, text=True, cwd=ROOT / "benchmarks", timeout=120)
    assert child.returncode == 0, child.stderr
    assert 0 < float(child.stdout) < 512, (child.stdout, len(ballast))


def test_each_step_is_timed_with_a_copy_of_the_batch_it_was_given(monkeypatch):
    """p5 pairs each step's seconds with the FLOPs of the batch that step trained on, in training's order."""
    import torch
    from transformers import Trainer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import time_training_steps

    monkeypatch.setattr(Trainer, "training_step", lambda self, model, inputs, *a, **k: inputs["input_ids"].sum())
    seconds, batches = time_training_steps("cpu")
    given = [{"input_ids": torch.arange(6).view(2, 3), "labels": torch.zeros(2, 3), "num_items": 3},
             {"input_ids": torch.ones(2, 5, dtype=torch.long)}]
    losses = [Trainer.training_step(None, None, inputs) for inputs in given]
    given[0]["input_ids"].add_(100)  # a trainer may reuse its tensors: the record is a copy
    assert [loss.item() for loss in losses] == [15, 10]
    assert len(seconds) == 2 and all(s >= 0 for s in seconds)
    assert [sorted(b) for b in batches] == [["input_ids", "labels"], ["input_ids"]]
    assert batches[0]["input_ids"].tolist() == [[0, 1, 2], [3, 4, 5]] and batches[1]["input_ids"].sum() == 10


def test_p5_counts_the_flops_training_runs(tiny_model, monkeypatch, tmp_path):
    """p5 counts the batch SFT trained on, and SFT computes a batch's common prefix once, so p5 counts the
    packed layout's FLOPs, not TRL's rows'."""
    from transformers import Trainer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import sft_flops, time_training_steps

    from medtune import config
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.models import load_model
    from medtune.tasks import get_task
    from medtune.train import shared_prompt
    from medtune.train.sft import train_sft

    monkeypatch.setattr(shared_prompt, "key_cost", lambda cfg: 0.0)  # pack the tiny tokenizer's long rows too
    monkeypatch.setattr(Trainer, "training_step", Trainer.training_step)  # put back after the test
    _, batches = time_training_steps("cpu")
    task = get_task("triage")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = config.load_config(overrides={"sft": {"max_steps": 1, "batch_size": 4, "max_length": 2048}}).sft
    train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:4], settings,
              tmp_path / "sft", "cpu", 0)
    assert len(batches) == 1 and batches[0]["input_ids"].shape[0] == 4
    (packed,), attention_share = sft_flops(str(tiny_model), tokenizer, batches)
    load = config.load_config
    monkeypatch.setattr(config, "load_config", lambda *a, **k: load(overrides={"sft": {"share_prefix": False}}))
    (rows,), _ = sft_flops(str(tiny_model), tokenizer, batches)
    assert 0 < packed < 0.8 * rows, (packed, rows)
    assert 0 < attention_share < 1


def test_p5_counts_the_cpu_attention_kernel_and_the_fused_lora_update():
    """torch 2.13's FLOP counter counts CPU attention and in-place addmm_ as 0; p5 counts them with torch's
    own formulas for the same computations."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    from medtune.train.common import fused_lora_everywhere

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import missing_flop_formulas

    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(16, 16, dtype=torch.bool).tril()
    with FlopCounterMode(display=False, custom_mapping=missing_flop_formulas()) as counter:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.sum().backward()
    expected = sdpa_flop_count(q.shape, k.shape, v.shape) + sdpa_backward_flop_count(out.shape, q.shape, k.shape, v.shape)
    assert counter.get_total_flops() == expected > 0

    fused_lora_everywhere()
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 128)), LoraConfig(r=8, target_modules=["0"]))
    x = torch.randn(3, 10, 64, requires_grad=True)
    counts = []
    for forward in (Linear.forward.peft_forward, Linear.forward):  # PEFT's scale-and-add, then medtune's addmm_
        with FlopCounterMode(display=False, custom_mapping=missing_flop_formulas()) as counter:
            with unittest.mock.patch.object(Linear, "forward", forward):
                model(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_dpo_reference_benchmark_smoke(tiny_model):
    # precomputed reference log-probs against TRL's reference forward: 16 pairs, 2 epochs, both logging the same
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dpo_reference.py"), "--model", str(tiny_model),
                           "--pairs", "16", "--repeats", "1"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["precomputed"] == ["train", "eval"] and result["evaluations"] >= 2
    assert result["same_logged_metrics"] is True and result["dpo_reference_speedup"] > 0


def test_precision_benchmark_smoke(tiny_model):
    # the quick study on one task in fp32 and in bf16, one after the other
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision.py"), "--model", str(tiny_model),
                           "--tasks", "numeric_classification"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cpu_native_bf16"] is False  # the tests' MEDTUNE_NATIVE_BF16=0: bf16 only where asked for
    assert len(result["seconds"]["fp32"]) == len(result["seconds"]["bf16"]) == 1 and result["fp32_over_bf16"] > 0
    figures = result["per_task"]["numeric_classification"]
    assert (figures["fp32"]["precision"], figures["bf16"]["precision"]) == ("fp32", "bf16")
    assert figures["fp32"]["metric"] == figures["bf16"]["metric"] == "macro_f1"
    assert 0 <= figures["base_answers_same"] <= 1 and figures["bf16"]["dpo_answers_changed"] >= 0


def test_sft_step_benchmark_smoke(tiny_model):
    # p5's SFT child in four arms (medtune, torch's dropout, glibc's malloc, no dropout), once each
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sft_step.py"), "--model", str(tiny_model),
                           "--repeats", "1"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    arms = ["medtune", "torch_dropout", "glibc_malloc", "no_dropout"]
    assert list(result["seconds"]) == arms and all(len(result["seconds"][arm]) == 1 for arm in arms)
    assert all(result["page_faults"][arm][0] > 0 for arm in arms) and result["over_medtune"]["medtune"] == 1


def test_a_mistyped_run_stops_at_once(tiny_model):
    """An unknown benchmark or a model folder that is not there: exit 2 and a message naming it, before any
    benchmark runs (--smoke, so that a run that went on would not write results.json)."""
    script = str(ROOT / "benchmarks" / "run_all.py")
    for args, message in ((["--only", "p2,p9", "--model", str(tiny_model)], "no benchmark named p9"),
                          (["--only", "p2", "--model", str(tiny_model / "missing")], "no such model folder")):
        proc = subprocess.run([sys.executable, script, "--smoke", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=600)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_a_failed_child_or_a_rejected_input_ends_with_a_message():
    """The benchmarks' commands run under reported_failures: a failed child's command and the end of its
    stderr, or medtune's own message, and a non-zero exit, in place of a traceback."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import reported_failures

    from medtune.errors import MedtuneError

    stderr = "".join(f"line {i}\n" for i in range(30)) + "MedtuneError: bad row\n"
    with pytest.raises(SystemExit) as failed:
        with reported_failures():
            raise subprocess.CalledProcessError(1, ["python", "run_all.py", "--child", "sft"], stderr=stderr)
    message = failed.value.code
    assert message.startswith("error: a benchmark's process failed (exit 1): python run_all.py --child sft")
    assert message.endswith("MedtuneError: bad row") and "line 19" in message and "line 18" not in message
    with pytest.raises(SystemExit) as rejected:
        with reported_failures():
            raise MedtuneError("./none: no such model folder")
    assert rejected.value.code == "error: ./none: no such model folder"
