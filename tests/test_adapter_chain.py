"""A saved stage outside medtune: plain PEFT and transformers code that follows each adapter's
``base_model_name_or_path`` loads the DPO model medtune evaluated (the adapter sits on the merged SFT model)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from medtune.cli import app
from medtune.models import load_model


def plain_peft_load(folder: str):
    """What a user's own script does: the model an adapter names, itself an adapter merged into its base where
    it is one, then this adapter on top. No medtune code."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    parent = PeftConfig.from_pretrained(folder).base_model_name_or_path
    if (Path(parent) / "adapter_config.json").is_file():
        base = plain_peft_load(parent).merge_and_unload()
    else:
        base = AutoModelForCausalLM.from_pretrained(parent)
    return PeftModel.from_pretrained(base, folder)


def test_a_plain_peft_load_of_the_dpo_stage_answers_like_medtunes(tiny_config):
    runner = CliRunner()
    # larger steps, so that DPO moves the model visibly away from SFT
    tiny_config.write_text(tiny_config.read_text().replace("dpo: {max_steps: 2, batch_size: 4, learning_rate: 0.001",
                                                           "dpo: {max_steps: 2, batch_size: 4, learning_rate: 0.05"))
    for cmd in ("sft", "pairs", "dpo"):
        result = runner.invoke(app, [cmd, "--task", "text_classification", "--config", str(tiny_config)])
        assert result.exit_code == 0, result.output
    run = tiny_config.parent / "run" / "text_classification"
    adapter = json.loads((run / "dpo" / "model" / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == (run / "sft" / "model").resolve()  # trained on SFT
    ids = torch.tensor([[5, 17, 40, 41, 42, 9, 30, 31]])
    with torch.inference_mode():
        plain = plain_peft_load(str(run / "dpo" / "model")).eval()(input_ids=ids).logits
        medtunes = load_model(run / "dpo" / "model", "cpu")[0](input_ids=ids).logits
        sft = load_model(run / "sft" / "model", "cpu")[0](input_ids=ids).logits
    torch.testing.assert_close(plain, medtunes, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(medtunes, sft, atol=1e-4)  # DPO is not SFT: losing it would show
