"""eval.backend: which generator runs where, and (on a CUDA GPU with vLLM installed) that vLLM's greedy answers
agree with transformers' on the same merged model."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from medtune.errors import MedtuneError
from medtune.evaluate.vllm_backend import resolve_backend

CUDA_AND_VLLM = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def test_auto_is_transformers_without_cuda_or_vllm():
    assert resolve_backend("auto", "cpu") == "hf"
    assert resolve_backend("hf", "cuda") == "hf"
    assert resolve_backend("auto", "cuda", processes=2) == "hf"  # each rank generates its own shard with HF


def test_asking_for_vllm_where_it_cannot_run_is_a_clear_error():
    with pytest.raises(MedtuneError, match="eval.backend: vllm needs one CUDA GPU"):
        resolve_backend("vllm", "cpu")


@pytest.mark.skipif(not CUDA_AND_VLLM, reason="needs a CUDA GPU and the vllm package")
def test_vllm_greedy_answers_agree_with_transformers(chatty_model, tmp_path):
    from medtune.evaluate.vllm_backend import vllm_answers
    from medtune.generate import generate
    from medtune.models import Compute, load_model

    prompts = [[{"role": "user", "content": text}] for text in
               ("chest pain and fever", "never smoker", "sodium 128 mmol/L", "refill request", "stroke")]
    model, tokenizer, _ = load_model(chatty_model, "cuda", torch.bfloat16)
    want = [a[0] for a in generate(model, tokenizer, prompts, 12, Compute("cuda", torch.bfloat16), batch_size=1,
                                   desc=None)]
    got = vllm_answers(chatty_model, tokenizer, prompts, 12, tmp_path / "merged")
    agree = sum(a == b for a, b in zip(want, got))
    assert agree >= 4, (want, got)  # bf16 kernels differ; a near-tied logit may flip a late token


def test_a_study_asking_for_vllm_on_a_cpu_stops_before_anything_runs(tiny_config):
    from typer.testing import CliRunner

    from medtune.cli import app

    tiny_config.write_text(tiny_config.read_text().replace("eval: {batch_size: 8}", "eval: {batch_size: 8, backend: vllm}"))
    result = CliRunner().invoke(app, ["study", "--config", str(tiny_config)], catch_exceptions=False)
    assert result.exit_code == 2 and "eval.backend: vllm needs one CUDA GPU" in result.output
    assert not (tiny_config.parent / "run").exists()
