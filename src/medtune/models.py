"""Loading models and tokenizers, and the LoRA set-up.

A fine-tuned stage saves ``model/`` with a ``medtune_model.json`` that says what
it is: full weights, or a LoRA adapter on top of a parent (the base model, or
the SFT model for DPO). Loading follows that chain and merges adapters, so any
stage's model can be evaluated or trained further without knowing its history.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError

from .embedded import EMBEDDED_NAMES, embedded_model_dir
from .errors import MedtuneError
from .io import read_json, write_json
from .network import is_hub_id
from .progress import console

MODEL_INFO = "medtune_model.json"


def resolve_device(setting: str = "auto") -> str:
    if setting == "cuda" and not torch.cuda.is_available():
        raise MedtuneError("device: cuda was asked for but no CUDA GPU is visible")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86's AVX512-BF16 or AMX); elsewhere bf16 is emulated and
    slower than fp32. MEDTUNE_NATIVE_BF16=1 or 0 says so instead of the CPU's flags (the tests set 0, so that
    ``auto`` computes in fp32 on every machine)."""
    told = os.environ.get("MEDTUNE_NATIVE_BF16")
    if told in ("0", "1"):
        return told == "1"
    try:
        flags = cpuinfo.read_text()
    except OSError:  # not Linux: no way to tell without timing, so fp32
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


@dataclass(frozen=True)
class Compute:
    """Where a run computes, in which number format, and with which speed pieces (``accel``): resolved once
    from the config and handed to every stage."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32  # the matmuls' format
    accel: frozenset[str] = frozenset()  # the pieces of medtune/accel/ this run uses; empty: stock code only

    @property
    def weights(self) -> torch.dtype:
        """The format the weights are held in. A GPU holds them in the compute format (adapters are merged in
        fp32 first, ``load_model``). A CPU holds fp32 weights whatever it computes in: training runs under
        autocast, and merging an adapter adds its small update to fp32 weights (into bf16 weights a few DPO
        steps' updates mostly round away)."""
        return self.dtype if self.device == "cuda" else torch.float32

    @property
    def precision(self) -> str:
        """What results record: the number format the matmuls ran in."""
        return {torch.bfloat16: "bf16", torch.float32: "fp32"}[self.dtype]

    def uses(self, piece: str) -> bool:
        return piece in self.accel


def compute_format(device: str, precision: str) -> torch.dtype:
    """``precision``'s number format on ``device``: ``auto`` means bf16 on a GPU that has it and on a CPU that
    multiplies bf16 in hardware, fp32 elsewhere."""
    if precision in ("bf16", "fp32"):
        return {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_native_bf16()
    return torch.bfloat16 if native else torch.float32


def resolve_compute(device_setting: str, precision: str, accel="off") -> Compute:
    """The run's device, number format and speed pieces, from the ``device``, ``precision`` and ``accel``
    settings. With ``accel: off`` nothing of medtune/accel/ is imported."""
    from .distributed import join, world_size

    device = resolve_device(device_setting)
    join(device)  # under a launcher with several processes: their group, before anything loads
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise MedtuneError("precision: bf16 was asked for but this GPU has no bf16; use precision: fp32")
    dtype = compute_format(device, precision)
    if accel != "off" and world_size() > 1:
        # the pieces were measured on one process, and some patch what DDP wraps
        console.print(f"accel: off under {world_size()} processes (the speed pieces are for one process)",
                      highlight=False)
        return Compute(device, dtype)
    if accel == "off":
        return Compute(device, dtype)
    from .accel import choose

    return Compute(device, dtype, choose(accel, device, dtype))


def resolve_base(name: str) -> str:
    """A loadable path or hub id for the ``model`` setting."""
    if name in EMBEDDED_NAMES:
        return str(embedded_model_dir())
    if is_hub_id(name):
        return name  # loading fails with a clear message when offline
    path = Path(name).expanduser()
    if not path.exists():  # meant as a folder: the hub's own error for it would not say it is missing
        raise MedtuneError(f"{name}: no such model folder")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise MedtuneError(f"{path}: not a Hugging Face model folder (no config.json)")
    check_no_custom_code(path)
    return str(path)


def check_no_custom_code(folder: Path) -> None:
    """medtune never runs code shipped in a model folder (no trust_remote_code): a model whose architecture
    transformers does not know, and that brings its own code for it, is refused up front."""
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MedtuneError(f"{folder / 'config.json'}: not a readable model config ({exc})") from None
    if not isinstance(config, dict):
        raise MedtuneError(f"{folder / 'config.json'}: not a model config (expected a JSON object)")
    if "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING:
        raise MedtuneError(f"{folder}: the model declares custom code (auto_map in config.json) for an architecture "
                           f"transformers does not know ({config.get('model_type')!r}); medtune does not run code "
                           "from model folders. Use a model that transformers supports natively")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedtuneError(f"{path}: cannot load a tokenizer (does the folder hold tokenizer.json and "
                           f"tokenizer_config.json?): {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise MedtuneError(f"{path}: the tokenizer has no chat template; medtune needs a chat (instruct) model")
    return tokenizer


def quantization_config(device: str, dtype: torch.dtype = torch.bfloat16):
    """QLoRA's 4-bit NF4 base weights with double quantisation, computing in ``dtype``.

    CUDA only by default. bitsandbytes also runs 4-bit layers on a CPU, but there it saved neither memory
    nor time against LoRA (benchmarks/qlora.py), so a CPU user is told to use LoRA. MEDTUNE_QLORA_ON_CPU=1
    allows it anyway (the tests use it to run the QLoRA path on CPU).
    """
    if device != "cuda" and os.environ.get("MEDTUNE_QLORA_ON_CPU") != "1":
        raise MedtuneError("sft.method: qlora needs a CUDA GPU; on a CPU bitsandbytes' 4-bit weights saved no "
                           "memory against LoRA, so use sft.method: lora here")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MedtuneError("sft.method: qlora needs the bitsandbytes package (pip install bitsandbytes), "
                           "or use sft.method: lora")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def load_base(path: str, device: str, quantized: bool = False, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    # bitsandbytes quantises while loading, onto the device it is given
    extra = {"quantization_config": quantization_config(device, dtype), "device_map": {"": device}} if quantized else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)
    except (OSError, ValueError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedtuneError(f"{path}: cannot load the model (a missing, damaged or incomplete weights file?): "
                           f"{first}") from None
    return model if quantized else model.to(device)


def load_model(model_ref: str | Path, device: str, dtype: torch.dtype = torch.float32, chain: tuple = ()):
    """Load a base model (name/path) or a saved stage's ``model/`` folder, adapters merged; its weights in
    ``dtype`` (``Compute.weights``: fp32 on a CPU).

    Adapters are merged into fp32 weights and the sum rounded once to ``dtype``: added to bf16 weights (a
    GPU's), an update as small as a few DPO steps' mostly rounds away. Where ``dtype`` is not fp32 the chain is
    therefore loaded and merged on the CPU in fp32 (so the GPU never holds the fp32 copy) and then moved.
    ``chain``: the stage folders already on the way down, so a loop is an error."""
    folder = Path(model_ref)
    if folder.is_dir() and (folder / MODEL_INFO).is_file():
        info = read_model_info(folder)
        if info["kind"] == "full":
            return load_base(str(folder), device, dtype=dtype), load_tokenizer(str(folder)), info
        parent = (folder / info["parent"]).resolve() if info.get("parent_is_stage") else info["parent"]
        chain = (*chain, folder.resolve())
        if Path(parent).resolve() in chain:
            raise MedtuneError(f"{folder / MODEL_INFO}: the model's parent {parent} is the model itself or one "
                               "of its own descendants; the file is damaged")
        model, tokenizer, _ = load_model(parent, device if dtype == torch.float32 else "cpu", torch.float32, chain)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
        return model.to(device=device, dtype=dtype), tokenizer, info
    path = resolve_base(str(model_ref))
    return load_base(path, device, dtype=dtype), load_tokenizer(path), {"kind": "base", "base": str(model_ref)}


def read_model_info(folder: Path) -> dict:
    """A stage's ``medtune_model.json``, checked: what kind of model the folder holds and what it sits on."""
    path = Path(folder) / MODEL_INFO
    try:
        info = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MedtuneError(f"{path}: not readable ({exc})") from None
    if not isinstance(info, dict) or info.get("kind") not in ("full", "lora", "qlora") or \
            (info["kind"] != "full" and not isinstance(info.get("parent"), str)):
        raise MedtuneError(f"{path}: not a medtune model description (expected kind full, lora or qlora, and "
                           "the parent model a LoRA adapter sits on)")
    return info


def load_quantized(model_ref: str | Path, device: str, scratch: Path, dtype: torch.dtype = torch.bfloat16):
    """``model_ref`` with 4-bit base weights, for QLoRA. A trained stage is merged in full precision
    and written to ``scratch`` first (removed after loading): bitsandbytes quantises only while loading."""
    folder = Path(model_ref)
    if not (folder.is_dir() and (folder / MODEL_INFO).is_file()):
        path = resolve_base(str(model_ref))
        return (load_base(path, device, quantized=True, dtype=dtype), load_tokenizer(path),
                {"kind": "base", "base": str(model_ref)})
    model, tokenizer, info = load_model(folder, device)
    source = model.name_or_path  # the base model's folder, which the merged copy stands in for
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    del model
    try:
        quantized = load_base(str(scratch), device, quantized=True, dtype=dtype)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    quantized.name_or_path = quantized.config.name_or_path = source  # peft reads it when saving adapters
    return quantized, tokenizer, info


def save_model_info(folder: Path, kind: str, base: str, parent: str | Path, parent_is_stage: bool) -> None:
    """What ``folder`` holds and what it was trained on. ``parent`` is written relative to ``folder`` when it is
    another stage, so run dirs can move; an adapter's own config names that stage's folder (absolute), so plain
    PEFT code that follows ``base_model_name_or_path`` finds the model the adapter was trained on."""
    if parent_is_stage:
        stage = Path(parent).resolve()
        if (Path(folder) / "adapter_config.json").is_file():
            from peft import PeftConfig

            config = PeftConfig.from_pretrained(str(folder))
            config.base_model_name_or_path = str(stage)
            config.save_pretrained(str(folder))
        # folder is written under a temp name and renamed; resolve against its final location
        parent = os.path.join("..", os.path.relpath(stage, Path(folder).resolve().parent))
    write_json(folder / MODEL_INFO, {"kind": kind, "base": base, "parent": str(parent), "parent_is_stage": parent_is_stage})


def check_lora_targets(model_name: str, targets: str | list[str]) -> None:
    """Fail now, not after the base model's evaluation, when ``sft.lora_target_modules`` names no module of
    the model. As PEFT matches them: a list by module-name suffix, a string as a regex on the whole name.
    The model is built on the meta device: its module names without its weights."""
    if targets == "all-linear":
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_base(model_name)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise MedtuneError(f"{path}: cannot read the model's config: {exc}") from None
    with torch.device("meta"):
        names = [name for name, _ in AutoModelForCausalLM.from_config(config).named_modules() if name]
    if isinstance(targets, str):
        try:
            found = any(re.fullmatch(targets, name) for name in names)
        except re.error as exc:
            raise MedtuneError(f"sft.lora_target_modules: {targets!r} is not a valid regular expression ({exc})") from None
        missing = [] if found else [targets]
    else:
        missing = [t for t in targets if not any(name == t or name.endswith("." + t) for name in names)]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name in names if ".layers." in name})
        raise MedtuneError(f"sft.lora_target_modules: {', '.join(map(repr, missing))} matches no module of {model_name}; "
                           f"its layers' modules are {', '.join(linear)} (or use all-linear)")


def lora_config(r: int, alpha: int, dropout: float, target_modules, model=None, top_layers: int | None = None):
    """A LoRA config; with ``top_layers`` only the last N decoder layers get adapters.

    Gradients then stop at the lowest adapted layer, so the backward pass skips
    the rest of the network.
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
