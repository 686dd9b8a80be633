"""One plain Hugging Face folder for a stage's model: the adapter chain merged into the base weights, saved as
safetensors with its tokenizer and chat template, loadable by ``AutoModelForCausalLM.from_pretrained`` with no
medtune code."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import MedtuneError
from ..generate import stop_token_ids
from ..models import load_model, resolve_base

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def saved_dtype(base: str, setting: str) -> torch.dtype:
    """``auto``: the number format the base model's config.json declares (fp32 where it declares none)."""
    if setting != "auto":
        if setting not in DTYPES:
            raise MedtuneError(f"--dtype must be auto, {', '.join(DTYPES)}; got {setting!r}")
        return DTYPES[setting]
    config = Path(resolve_base(base)) / "config.json"
    declared = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    return DTYPES.get(declared.get("dtype") or declared.get("torch_dtype"), torch.float32)


def write_merged(model_ref: str | Path, out_dir: Path, dtype: str = "auto") -> dict:
    """The merged model in ``out_dir`` (which the caller makes atomic); returns what was written."""
    # adapters merge in fp32 on the CPU (load_model), then the sum is rounded once to the saved format
    model, tokenizer, info = load_model(model_ref, "cpu", torch.float32)
    target = saved_dtype(info["base"], dtype)
    model = model.to(target)
    model.config.name_or_path = ""  # a path on this machine means nothing where the folder goes
    generation = model.generation_config
    generation.eos_token_id = stop_token_ids(tokenizer)  # plain generate() stops where medtune's does
    generation.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    check_plain(out_dir)
    parameters = sum(p.numel() for p in model.parameters())
    return {"dtype": str(target).removeprefix("torch."), "parameters": parameters, "kind": info["kind"]}


def check_plain(folder: Path) -> None:
    """What plain transformers needs, and nothing it would trip on: weights in safetensors, a chat template,
    no quantisation record (the embedded model's GGUF origin) and no adapter files."""
    names = {p.name for p in Path(folder).iterdir()}
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    problems = []
    if not any(n.endswith(".safetensors") for n in names):
        problems.append("no safetensors weights")
    if "quantization_config" in config:
        problems.append("config.json carries a quantization_config")
    if "adapter_config.json" in names:
        problems.append("an adapter_config.json")
    if "chat_template.jinja" not in names and "chat_template" not in (Path(folder) / "tokenizer_config.json").read_text():
        problems.append("no chat template")
    if problems:
        raise MedtuneError(f"{folder}: the merged model is not a plain Hugging Face folder ({'; '.join(problems)})")
