"""The resource plan's counts against the libraries' own: parameters of real Llama shapes built on the meta
device, LoRA's trainable parameters as PEFT makes them; and the accounting's sharding rules."""

from __future__ import annotations

import pytest
import torch

from medtune.resources import KNOWN, Setting, Shape, fits, memory


def meta_model(shape: Shape):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate,
                         vocab_size=shape.vocab, tie_word_embeddings=shape.tied)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config), config


@pytest.mark.parametrize("name", list(KNOWN))
def test_parameter_counts_equal_the_models_own(name):
    model, config = meta_model(KNOWN[name])
    assert Shape.from_config(config) == KNOWN[name]
    assert KNOWN[name].parameters() == sum(p.numel() for p in model.parameters())


def test_lora_parameters_equal_what_peft_trains(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    shape = Shape.from_config(model.config)
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_parameters(8) == trainable


def test_sharding_divides_what_each_layout_shards():
    shape = KNOWN["Llama-3.1-8B"]
    single = memory(shape, Setting(method="full"))
    ddp = memory(shape, Setting(method="full", layout="ddp", devices=8))
    zero2 = memory(shape, Setting(method="full", layout="zero2", devices=8))
    zero3 = memory(shape, Setting(method="full", layout="zero3", devices=8))
    assert ddp == single  # every device holds everything
    assert zero2["weights"] == single["weights"] and zero2["trained_state"] == pytest.approx(single["trained_state"] / 8)
    assert zero3["weights"] == pytest.approx(single["weights"] / 8)
    assert zero3["activations"] == single["activations"]  # each device computes its own batch


def test_qlora_holds_the_linear_weights_in_about_four_bits_and_dpo_full_adds_a_reference():
    shape = KNOWN["Llama-3.1-8B"]
    lora, qlora = memory(shape, Setting(method="lora")), memory(shape, Setting(method="qlora"))
    assert 0.3 < qlora["weights"] / lora["weights"] < 0.4
    full_dpo = memory(shape, Setting(method="full", dpo=True))
    assert full_dpo["reference"] == shape.parameters() * 2
    assert memory(shape, Setting(method="full", dpo=True, precomputed_reference=True))["reference"] == 0
    assert memory(shape, Setting(method="lora", dpo=True))["reference"] == 0  # adapters disabled, no copy
    assert fits(qlora, 80) and not fits(memory(shape, Setting(method="full")), 80)
