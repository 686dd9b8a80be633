"""The benchmark harness runs end to end at tiny sizes on the tiny random model, with medtune's speed switch
(``accel``) on and off, and its arithmetic (FLOPs, tokens, peaks, results.json's sections) holds.

Slow (``make test-slow``): the smoke runs train and evaluate in several processes each."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("accel", ["auto", "off"])
def test_benchmark_harness_smoke(tiny_model, accel):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke", "--only", "p2,p3,p4,p5",
                           "--model", str(tiny_model), "--accel", accel], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout[proc.stdout.index("{"):])
    # the run's setting recorded with its figures, and every part of it ran with that setting
    assert results["accel"] == accel
    children = [results["p3_sft"], results["p3_dpo"]]
    if accel == "off":  # stock code only: nothing of medtune/accel/ imported, in this process or a child
        assert results["accel_pieces"] == [] and results["p4_medtune_accel"] == []
        assert results["p2_accel_imported"] is False
        assert all(child["accel"] == [] and child["accel_imported"] is False for child in children)
    else:  # the tests' fp32 CPU: the pieces auto chooses there, in every child
        import torch

        from medtune.accel import choose

        chosen = sorted(choose("auto", "cpu", torch.float32))
        assert results["accel_pieces"] == chosen == results["p4_medtune_accel"]
        assert all(child["accel"] == chosen for child in children) and "shared_prompt" in chosen
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
    # with the shared_prompt piece, the TRL-layout DPO run beside the default one (each prompt once), the piece
    # off in it alone; without the piece DPO already runs in TRL's layout, so there is nothing to set beside it
    if accel == "off":
        assert not any(key.startswith(("p3_dpo_trl_layout", "p3_trl_layout")) for key in results)
    else:
        layout = results["p3_dpo_trl_layout"]
        assert layout["items"] == results["p3_dpo"]["items"] > 0
        assert layout["accel"] == [piece for piece in results["p3_dpo"]["accel"] if piece != "shared_prompt"]
        assert results["p3_trl_layout_time_ratio"] > 0
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


@pytest.mark.parametrize("pieces", [frozenset(), frozenset({"fast_generation"})], ids=["stock", "fast_generation"])
def test_p2_floor_counts_the_tokens_evaluation_computes(tiny_model, monkeypatch, pieces):
    """p2's ceiling divides by the prompt tokens medtune's evaluation computes: stock generate computes every
    prompt whole; with fast_generation the shared prefix once and each prompt's own part. On prompts without
    padding, that is what enters the first decoder layer when medtune generates one token for each."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run_all
    from run_all import decoder_weights, prompt_tokens

    from medtune.generate import encode_prompts, generate
    from medtune.models import Compute, load_model

    compute = Compute("cpu", torch.float32, pieces)
    model, tokenizer, _ = load_model(str(tiny_model), "cpu")
    system = {"role": "system", "content": "Read the laboratory report and answer with one label only. " * 4}
    prompts = [[system, {"role": "user", "content": f"sodium {n} mmol/L"}] for n in range(130, 142)]
    lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
    assert len(set(lengths)) == 1  # no padding, so every token entering the layer is a prompt's or a new one
    entered = []
    hook = model.model.layers[0].register_forward_pre_hook(lambda m, args, kw: entered.append(
        (args[0] if args else kw["hidden_states"]).shape[:2].numel()), with_kwargs=True)
    generate(model, tokenizer, prompts, max_new_tokens=1, compute=compute, batch_size=4, desc=None)
    hook.remove()
    assert prompt_tokens(tokenizer, prompts, compute) == sum(entered)
    if pieces:
        assert sum(entered) < sum(lengths)  # the prefix once, not per prompt
    else:
        assert sum(entered) == sum(lengths)
    # every weight but the embeddings, the LM head (tied or not) and the final norm
    outside = {id(m.weight): m.weight.numel() for m in (model.get_input_embeddings(), model.get_output_embeddings(),
                                                        model.model.norm)}
    assert decoder_weights(model) == sum(p.numel() for p in model.parameters()) - sum(outside.values()) > 0
    # other layouts count everything but the embeddings and the LM head (here: plus the final norm)
    monkeypatch.setattr(run_all, "decoder_layers", lambda m: None)
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
    """p5 counts the batch SFT trained on, as training computed it with the run's pieces: with shared_prompt a
    batch's common prefix once (the packed layout's FLOPs, not TRL's rows'), with compact_lm_head the LM head
    on the completion's positions only."""
    import torch
    from transformers import Trainer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import sft_flops, time_training_steps

    from medtune import config
    from medtune.accel import shared_prompt
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.models import Compute, load_model
    from medtune.tasks import get_task
    from medtune.train.sft import train_sft

    monkeypatch.setattr(shared_prompt, "key_cost", lambda cfg: 0.0)  # pack the tiny tokenizer's long rows too
    monkeypatch.setattr(Trainer, "training_step", Trainer.training_step)  # put back after the test
    _, batches = time_training_steps("cpu")
    task = get_task("triage")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = config.load_config(overrides={"sft": {"max_steps": 1, "batch_size": 4, "max_length": 2048}}).sft
    compute = Compute("cpu", torch.float32, frozenset({"shared_prompt", "compact_lm_head"}))
    summary, _ = train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:4],
                           settings, tmp_path / "sft", compute, 0)
    assert summary["shared_prefix_batches"] == {"packed": 1, "trl_layout": 0}  # training packed it
    assert len(batches) == 1 and batches[0]["input_ids"].shape[0] == 4

    def counted(*pieces):
        return sft_flops(str(tiny_model), tokenizer, batches, dataclasses.replace(compute, accel=frozenset(pieces)))

    (packed,), attention_share = counted("shared_prompt", "compact_lm_head")
    (rows,), _ = counted("compact_lm_head")
    (every_position,), _ = counted()
    assert 0 < packed < 0.8 * rows < 0.8 * every_position, (packed, rows, every_position)
    assert 0 < attention_share < 1


def test_p5_counts_the_cpu_attention_kernel_and_the_lm_head_gradient(tiny_model):
    """torch 2.13's FLOP counter counts CPU attention and in-place addmm_ as 0; p5 counts them with torch's
    own formulas for the same computations. TRL's fused LM head adds up the hidden states' gradient with
    addmm_ on a CPU: 2 FLOPs per scored position, vocabulary entry and hidden unit."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.ops import aten
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
    from trl.trainer.utils import add_fused_lm_head

    from medtune.models import load_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import missing_flop_formulas

    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(16, 16, dtype=torch.bool).tril()
    with FlopCounterMode(display=False, custom_mapping=missing_flop_formulas()) as counter:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out.sum().backward()
    expected = sdpa_flop_count(q.shape, k.shape, v.shape) + sdpa_backward_flop_count(out.shape, q.shape, k.shape, v.shape)
    assert counter.get_total_flops() == expected > 0

    model, _, _ = load_model(str(tiny_model), "cpu")
    add_fused_lm_head(model)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))  # the head frozen, as in SFT
    ids = torch.randint(3, model.config.vocab_size, (2, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    counts = []
    without_addmm = {op: formula for op, formula in missing_flop_formulas().items() if op is not aten.addmm_}
    for mapping in (without_addmm, missing_flop_formulas()):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True).loss.backward()
        counts.append(counter.get_total_flops())
    # the stock CPU path scores every position but the last of each row
    scored = ids.shape[0] * (ids.shape[1] - 1)
    assert counts[1] - counts[0] == 2 * scored * model.config.vocab_size * model.config.hidden_size > 0


def test_dpo_reference_benchmark_smoke(tiny_model):
    # dpo.precompute_reference always (TRL's precompute) against never (TRL's reference forward each time):
    # 16 pairs, 2 epochs, both logging the same
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dpo_reference.py"), "--model", str(tiny_model),
                           "--pairs", "16", "--repeats", "1"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["precomputed"] == {"never": False, "always": True} and result["evaluations"] >= 2
    assert len(result["never_s"]) == len(result["always_s"]) == 1 and result["accel"] == "auto"
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


def test_a_mistyped_run_stops_at_once(tiny_model, tmp_path):
    """An unknown benchmark, a model folder that is not there, or a finished study for p1 that ran with the
    other speed switch: exit 2 and a message naming it, before any benchmark runs (--smoke, so that a run
    that went on would not write results.json)."""
    script = str(ROOT / "benchmarks" / "run_all.py")
    study = tmp_path / "study"
    study.mkdir()
    (study / "results.json").write_text(json.dumps({"elapsed_s": 1.0, "config": {"accel": "auto"}}))
    untimed = tmp_path / "untimed"
    untimed.mkdir()
    (untimed / "results.json").write_text(json.dumps({"config": {"accel": "auto"}}))
    for args, message in ((["--only", "p2,p9", "--model", str(tiny_model)], "no benchmark named p9"),
                          (["--only", "p2", "--model", str(tiny_model / "missing")], "no such model folder"),
                          (["--only", "p1", "--model", str(tiny_model), "--study-run", str(study), "--accel", "off"],
                           "the study ran with accel auto, this run is --accel off"),
                          (["--only", "p1", "--model", str(tiny_model), "--study-run", str(tmp_path / "none")],
                           "results.json is not there"),
                          (["--only", "p1", "--model", str(tiny_model), "--study-run", str(untimed)],
                           "records no elapsed_s")):
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


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_figures_with_accel_off_go_to_their_own_section(tmp_path, monkeypatch, device):
    """results.json keeps the figures of a run with accel: auto where they were (the top level on a CPU, "gpu"),
    a run with it off files its own under "cpu_accel_off" / "gpu_accel_off" with the setting recorded, and
    docs/performance.md's block lists each section, an off section beside the same device's auto figures."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import argparse

    import run_all

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nbefore\n\n<!-- results: old -->\nold figures\n<!-- end results -->\n\nafter\n")
    saved = {"measured": "2026-11-25", "machine": "cpu host", "p2_eval_speedup": 9.5, "p1_quick_study_s": 166.0,
             "gpu": {"measured": "2026-11-23", "machine": "gpu host", "p2_eval_speedup": 4.4}}
    results = tmp_path / "results.json"
    results.write_text(json.dumps(saved))
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "DOC", doc)
    monkeypatch.setattr(run_all, "p2", lambda args: {"p2_eval_speedup": 3.0, "p2_accel_imported": False})
    if device == "cuda":  # no GPU here: its name and its Compute (no pieces, as with accel off) stand in
        import torch

        from medtune.models import Compute

        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
        monkeypatch.setattr(run_all, "compute_for", lambda *a, **k: Compute("cuda"))
    args = argparse.Namespace(smoke=False, device=device, accel="off", model="embedded", study_run=None)
    run_all.run_benchmarks(args, {"p2"})

    after = json.loads(results.read_text())
    off_key = {"cpu": "cpu_accel_off", "cuda": "gpu_accel_off"}[device]
    assert after[off_key]["p2_eval_speedup"] == 3.0
    assert after[off_key]["accel"] == "off" and after[off_key]["accel_pieces"] == []
    # the figures with accel: auto are untouched
    assert {k: after[k] for k in saved} == saved
    text = doc.read_text()
    assert text.startswith("# Performance\n\nbefore\n\n<!-- results: written by benchmarks/run_all.py -->")
    assert text.endswith("<!-- end results -->\n\nafter\n") and "old figures" not in text
    titles = [line for line in text.splitlines() if line.startswith("### ")]
    off_title = {"cpu": "### CPU, `accel: off` (`--accel off`)",
                 "cuda": "### GPU, `accel: off` (`--device cuda --accel off`)"}[device]
    expected = ["### CPU", "### GPU (`--device cuda`)"]
    expected.insert(1 if device == "cpu" else 2, off_title)
    assert titles == expected
    off_block = text[text.index(off_title):]
    auto_value = {"cpu": "9.5", "cuda": "4.4"}[device]
    assert "| figure | value | goal | met | with `accel: auto` |" in off_block
    assert f"| `p2_eval_speedup` | 3 | >= 8 | no | {auto_value} |" in off_block
    assert "`accel: off`." in off_block


def test_against_commit_runs_the_new_study_at_the_old_sizes_and_counts_its_work(tmp_path, monkeypatch):
    """p1 against an earlier commit: the old quick preset becomes a config for the new commit, with the new
    preset's per-task settings set back; work is training seconds and evaluation seconds per answer."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from against_commit import compare, old_sizes_config, work_done

    old = {"data": {"train_limit": 160, "test_limit": 40}, "sft": {"max_steps": 10}}
    new = {"data": {"train_limit": 320, "test_limit": 80}, "sft": {"max_steps": 24},
           "per_task": {"summarization": {"data": {"test_limit": 40}, "sft": {"max_steps": 10}}}}
    config = old_sizes_config(old, new)
    assert config["data"] == old["data"] and config["sft"] == old["sft"]
    assert config["per_task"] == {"summarization": {"data": {"test_limit": 40}, "sft": {"max_steps": 10}}}
    with pytest.raises(SystemExit, match="summarization.dpo.eval_steps"):
        old_sizes_config(old, {"per_task": {"summarization": {"dpo": {"eval_steps": 2}}}})

    for stage, elapsed, answers, train in (("base", 4.0, 3, None), ("sft", 6.0, 3, 10.0), ("dpo", 6.0, 3, 2.5)):
        folder = tmp_path / "triage" / stage
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"elapsed_s": elapsed}))
        (folder / "predictions.jsonl").write_text("{}\n" * answers)
        (folder / "predictions_shifted.jsonl").write_text("{}\n" * answers)
        if train is not None:
            (folder / "train_log.json").write_text(json.dumps({"train_runtime_s": train}))
    # SFT and DPO were evaluated together: their shared 6 s count once, over both models' 12 answers
    assert work_done(tmp_path) == {"p1_train_s": 12.5, "p1_eval_s_per_answer": 10.0 / 18, "p1_answers": 18}
    assert compare("p2_eval_speedup", 8.0, 4.0)["worse_by"] == 1.0  # a speed-up halved
    assert compare("p1_train_s", 100.0, 110.0)["worse_by"] == pytest.approx(0.1)  # seconds: higher is worse
    assert "worse_by" not in compare("p1_answers", 600, 1200)
