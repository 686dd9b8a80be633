"""The ``precision`` setting: which number format computes, and a CPU's fp32 weights under bf16."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import medtune.models as models
from medtune.accel.generation import generation_copy
from medtune.cli import app
from medtune.models import Compute, load_model, resolve_compute, save_model_info

BF16 = Compute("cpu", torch.bfloat16, frozenset({"fast_generation", "grouped_attention"}))


@pytest.mark.parametrize("setting, native, expected", [
    ("auto", "1", torch.bfloat16), ("auto", "0", torch.float32),
    ("fp32", "1", torch.float32), ("bf16", "0", torch.bfloat16)])
def test_precision_picks_the_cpu_compute_format_and_keeps_fp32_weights(monkeypatch, setting, native, expected):
    monkeypatch.setenv("MEDTUNE_NATIVE_BF16", native)
    compute = resolve_compute("cpu", setting)
    assert compute.dtype == expected and compute.accel == frozenset()
    assert compute.weights == torch.float32  # weights: fp32 on a CPU whatever it computes in
    assert Compute("cuda", torch.bfloat16).weights == torch.bfloat16  # a GPU holds the compute format


@pytest.mark.parametrize("flags, native", [
    ("fpu sse2 avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without its bf16 instructions: emulated
    ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("fpu sse2 avx2 amx_bf16 amx_tile amx_int8", True)])
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path, flags, native):
    monkeypatch.delenv("MEDTUNE_NATIVE_BF16")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert models.cpu_has_native_bf16(cpuinfo) is native


def test_generation_copy_is_bf16_and_leaves_the_model_as_it_was(tiny_model):
    model, _, _ = load_model(tiny_model, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert generation_copy(model, Compute()) is model
    copy = generation_copy(model, BF16)
    assert copy is not model and copy.dtype == torch.bfloat16
    assert model.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # every weight is the model's rounded to bf16, and the tied LM head is still the embedding
    assert all(torch.equal(v, before[k].to(torch.bfloat16)) for k, v in copy.state_dict().items())
    assert copy.get_output_embeddings().weight is copy.get_input_embeddings().weight
    # the copy attends with the grouped matmuls where the run uses that piece, the model as it was
    assert copy.config._attn_implementation == "medtune_grouped" and model.config._attn_implementation == "sdpa"
    plain = generation_copy(model, Compute("cpu", torch.bfloat16, frozenset({"fast_generation"})))
    assert plain.config._attn_implementation == "sdpa"


def kept_share(update: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> float:
    """How much of ``update`` moved the bf16 weights from ``before`` to ``after``, projected on it."""
    moved = after.float() - before.float()
    return float((moved * update).sum() / (update * update).sum())


def small_update_adapter(tiny_model, tmp_path):
    """A saved LoRA stage on the tiny model whose update is 2e-4 of the weights' size, as two quick DPO steps';
    returns its folder and each adapted weight's update."""
    from peft import LoraConfig, get_peft_model

    base, _, _ = load_model(tiny_model, "cpu")
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    layers = {name: module for name, module in peft.named_modules() if hasattr(module, "get_delta_weight")}
    for module in layers.values():  # each update 2e-4 of its weights' mean size, as two quick DPO steps
        module.lora_B["default"].weight.data = torch.randn_like(module.lora_B["default"].weight)
        ratio = module.get_delta_weight("default").abs().mean() / module.base_layer.weight.abs().mean()
        module.lora_B["default"].weight.data *= 2e-4 / ratio
    folder = tmp_path / "adapter"
    peft.save_pretrained(folder)
    save_model_info(folder, "lora", str(tiny_model), str(tiny_model), parent_is_stage=False)
    deltas = {name.replace("base_model.model.", ""): module.get_delta_weight("default").detach()
              for name, module in layers.items()}
    return folder, deltas


def test_a_small_adapter_update_survives_a_bf16_evaluation(tiny_model, tmp_path):
    """Two quick DPO steps change the weights by ~2e-4 of their size, under bf16's rounding step (~4e-3). Merged
    into bf16 weights, 14-17% of such an update was left on the embedded model; merged into the CPU's fp32
    weights and then copied to bf16, 95-97% (in expectation: each weight rounds up or down)."""
    folder, deltas = small_update_adapter(tiny_model, tmp_path)
    original, _, _ = load_model(tiny_model, "cpu")
    merged, _, _ = load_model(folder, "cpu")
    evaluated = dict(generation_copy(merged, BF16).named_parameters())
    start = {name: p.detach().bfloat16() for name, p in original.named_parameters()}
    update = torch.cat([d.flatten() for d in deltas.values()])
    before = torch.cat([start[f"{name}.weight"].flatten() for name in deltas])
    after = torch.cat([evaluated[f"{name}.weight"].detach().flatten() for name in deltas])
    assert kept_share(update, before, after) > 0.8
    # merged into bf16 weights instead, the same update mostly rounds away: the regime the test is about
    into_bf16 = torch.cat([(start[f"{n}.weight"] + d.bfloat16()).flatten() for n, d in deltas.items()])
    assert kept_share(update, before, into_bf16) < 0.5


def test_a_device_holding_bf16_weights_merges_adapters_in_fp32(tiny_model, tmp_path):
    """A GPU holds its weights in bf16 (``Compute.weights``). Loading a stage there merges the adapter into fp32
    weights and rounds the sum once, so the small update survives as on a CPU; the trained model is not
    handed on in memory, where its adapters would be merged into the bf16 weights."""
    from medtune.config import Config
    from medtune.study import Run

    folder, deltas = small_update_adapter(tiny_model, tmp_path)
    original, _, _ = load_model(tiny_model, "cpu")
    merged, _, _ = load_model(folder, "cpu", torch.bfloat16)  # the CPU stands in for a GPU's bf16 weights
    assert merged.dtype == torch.bfloat16
    loaded = dict(merged.named_parameters())
    start = {name: p.detach().bfloat16() for name, p in original.named_parameters()}
    update = torch.cat([d.flatten() for d in deltas.values()])
    before = torch.cat([start[f"{name}.weight"].flatten() for name in deltas])
    after = torch.cat([loaded[f"{name}.weight"].detach().flatten() for name in deltas])
    assert kept_share(update, before, after) > 0.8
    run = Run(Config(), Compute("cuda", torch.bfloat16, frozenset({"trained_handoff"})))
    run.hand_on(folder, merged, None, "lora")
    assert run.held is None  # the next stage loads the folder
    run = Run(Config(), Compute("cpu", torch.float32, frozenset({"trained_handoff"})))
    run.hand_on(folder, merged, None, "lora")
    assert run.held is not None and run.held.trained  # fp32 weights: handed on, merged as loading merges


def test_a_bf16_study_records_its_number_format(tiny_config):
    text = tiny_config.read_text() + "precision: bf16\n"
    tiny_config.write_text(text)
    result = CliRunner().invoke(app, ["study", "--config", str(tiny_config), "--tasks", "numeric_classification"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "(bf16," in result.output
    run = tiny_config.parent / "run"
    task = json.loads((run / "results.json").read_text())["tasks"]["numeric_classification"]
    assert {task["stages"][s]["precision"] for s in ("base", "sft", "dpo")} == {"bf16"}
    assert task["stages"]["sft"]["training"]["precision"] == "bf16"
    assert task["stages"]["dpo"]["training"]["precision"] == "bf16"
    assert "Number format: evaluation bf16, training bf16." in (run / "report.md").read_text()


def test_bitsandbytes_does_not_tell_a_lora_user_to_fetch_a_kernel():
    """On a CPU with AVX512-BF16, importing bitsandbytes (PEFT does, where it is installed) logs that it could
    not fetch a 4-bit kernel from the hub; medtune's quiet set-up leaves that out of the study's output."""
    pytest.importorskip("bitsandbytes")
    code = "from medtune.progress import quiet_libraries; quiet_libraries(); import peft, bitsandbytes"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "kernels-community" not in done.stderr
