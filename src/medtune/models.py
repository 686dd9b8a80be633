"""Loading models and tokenizers, and the LoRA set-up.

A fine-tuned stage saves ``model/`` with a ``medtune_model.json`` that says what
it is: full weights, or a LoRA adapter on top of a parent (the base model, or
the SFT model for DPO). Loading follows that chain and merges adapters, so any
stage's model can be evaluated or trained further without knowing its history.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .embedded import EMBEDDED_NAMES, embedded_model_dir
from .errors import MedtuneError
from .io import read_json, write_json

MODEL_INFO = "medtune_model.json"


def resolve_device(setting: str = "auto") -> str:
    if setting == "cuda" and not torch.cuda.is_available():
        raise MedtuneError("device: cuda was asked for but no CUDA GPU is visible")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def dtype_for(device: str) -> torch.dtype:
    # bf16 is emulated (~10x slower) on CPUs without native support: fp32 there.
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_base(name: str) -> str:
    """A loadable path or hub id for the ``model`` setting."""
    if name in EMBEDDED_NAMES:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MedtuneError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path)
    return name  # a hub id; loading fails with a clear message when offline


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise MedtuneError(f"cannot load a tokenizer from {path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise MedtuneError(f"{path}: the tokenizer has no chat template; medtune needs a chat (instruct) model")
    return tokenizer


def load_base(path: str, device: str):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype_for(device))
    except OSError as exc:
        raise MedtuneError(f"cannot load model {path!r}: {exc}") from None
    return model.to(device)


def load_model(model_ref: str | Path, device: str):
    """Load a base model (name/path) or a saved stage's ``model/`` folder, adapters merged."""
    folder = Path(model_ref)
    if folder.is_dir() and (folder / MODEL_INFO).is_file():
        info = read_json(folder / MODEL_INFO)
        if info["kind"] == "full":
            return load_base(str(folder), device), load_tokenizer(str(folder)), info
        parent = (folder / info["parent"]).resolve() if info.get("parent_is_stage") else info["parent"]
        model, tokenizer, _ = load_model(parent, device)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        return model, tokenizer, info
    path = resolve_base(str(model_ref))
    return load_base(path, device), load_tokenizer(path), {"kind": "base", "base": str(model_ref)}


def save_model_info(folder: Path, kind: str, base: str, parent: str | Path, parent_is_stage: bool) -> None:
    """``parent`` is relative to ``folder`` when it is another stage, so run dirs can move."""
    if parent_is_stage:
        parent = os.path.relpath(Path(parent).resolve(), Path(folder).resolve().parent)
        # folder is written under a temp name and renamed; resolve against its final location
        parent = os.path.join("..", parent)
    write_json(folder / MODEL_INFO, {"kind": kind, "base": base, "parent": str(parent), "parent_is_stage": parent_is_stage})


def lora_config(r: int, alpha: int, dropout: float, target_modules, model=None, top_layers: int | None = None):
    """A LoRA config; with ``top_layers`` only the last N decoder layers get adapters.

    Gradients then stop at the lowest adapted layer, so the backward pass skips
    the rest of the network: on a CPU this cuts a training step by about 40%
    for SmolLM2-135M with 8 of 30 layers (see docs/performance.md).
    """
    from peft import LoraConfig

    layers = None
    if top_layers and model is not None:
        total = model.config.num_hidden_layers
        layers = list(range(max(0, total - top_layers), total))
        if target_modules == "all-linear":  # peft needs explicit names to restrict layers
            target_modules = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                                     if isinstance(module, torch.nn.Linear) and ".layers." in name})
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      layers_to_transform=layers, task_type="CAUSAL_LM")
