"""Evaluation's generation on vLLM's offline engine (``eval.backend: vllm``, or ``auto`` on one CUDA GPU with
vLLM installed): the stage's model is merged into one folder (export/merged.py) that vLLM loads, and each test
prompt is handed over as the token ids medtune's own generation would read, decoded greedily with the same
stop tokens and stripped the same way. Pair mining and training stay on transformers.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from ..errors import MedtuneError
from ..generate import encode_prompts, stop_token_ids


def vllm_ready(device: str) -> bool:
    return device == "cuda" and importlib.util.find_spec("vllm") is not None


def resolve_backend(setting: str, device: str, processes: int = 1) -> str:
    """``hf`` or ``vllm``: ``auto`` picks vLLM only on one CUDA process with vLLM installed."""
    if setting == "hf":
        return "hf"
    ready = vllm_ready(device) and processes == 1
    if setting == "vllm" and not ready:
        raise MedtuneError("eval.backend: vllm needs one CUDA GPU (one process) and the vllm package "
                           "(pip install vllm); use eval.backend: hf or auto")
    return "vllm" if ready else "hf"


def vllm_answers(model_ref, tokenizer, prompts: list[list[dict]], max_new_tokens: int, scratch: Path,
                 seed: int = 0) -> list[str]:
    """Greedy answers to ``prompts`` from ``model_ref`` (a base model or a stage's folder), in order."""
    from vllm import LLM, SamplingParams

    from ..export.merged import write_merged

    scratch = Path(scratch)
    try:
        write_merged(model_ref, scratch, "bfloat16")
        llm = LLM(model=str(scratch), dtype="bfloat16", seed=seed, trust_remote_code=False)
        params = SamplingParams(temperature=0, max_tokens=max_new_tokens, stop_token_ids=stop_token_ids(tokenizer),
                                skip_special_tokens=True)
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in encode_prompts(tokenizer, prompts)], params,
                               use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
