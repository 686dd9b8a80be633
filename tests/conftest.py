"""Test fixtures: a tiny random Llama with a small byte-level BPE tokenizer, built in-process.

No hub and no 0.5 GB model: the tokenizer is trained on a few hundred clinical
words in a second, the model has two layers of width 64. It produces nonsense,
which is exactly what a base model's chatter looks like to the parsers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MEDTUNE_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# precision auto computes in bf16 on a CPU that multiplies it in hardware and in fp32 elsewhere: the tests
# compute in fp32 on every machine (subprocesses inherit this), and the bf16 tests ask for bf16
os.environ.setdefault("MEDTUNE_NATIVE_BF16", "0")
# one thread: the tiny models gain nothing from two, and two busy-waiting OpenMP pools on a
# shared 2-core machine (a study next to the tests) slow both down many times over
os.environ.setdefault("OMP_NUM_THREADS", "1")
# no hub in the tests: the libraries' own offline switches, as the medtune command sets them
for _switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_switch, "1")

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "patient presents with chest pain shortness of breath fever cough nausea vomiting headache",
    "current smoker former smoker never smoker quit years ago denies tobacco pack years",
    "hyponatremia normal hypernatremia sodium mmol/L mEq/L potassium glucose creatinine",
    "personnel: physician nurse pharmacist admin urgency: urgent non-urgent refill appointment billing",
    "myocardial infarction pulmonary embolism pneumonia appendicitis diabetic ketoacidosis stroke sepsis",
    "summary: admitted for discharged home on follow up with history of hypertension diabetes",
    "You are a careful clinical assistant. Answer with exactly one of the allowed labels.",
]


def build_tiny_model(folder: Path, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_study_config(model: Path, run_dir: Path, test_limit: int, eval_batch: int) -> str:
    """A study config sized for seconds on a tiny model: a handful of examples and steps per task."""
    return f"""
model: {model}
run_dir: {run_dir}
preset: quick
seed: 1
data: {{train_limit: 12, test_limit: {test_limit}}}
sft: {{max_steps: 3, batch_size: 4, learning_rate: 0.001, save_steps: 2, max_length: 2048}}
pairs: {{samples: 2, max_prompts: 6}}
dpo: {{max_steps: 2, batch_size: 4, learning_rate: 0.001, save_steps: 1, max_length: 2048}}
eval: {{batch_size: {eval_batch}}}
stats: {{bootstrap_samples: 200}}
"""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def chatty_model(tmp_path_factory, tiny_model) -> Path:
    """The tiny model with its weights scaled up: at its usual scale it repeats one whitespace token, which
    strips to nothing, so two ways of generating would agree trivially. Special tokens are suppressed so
    every answer runs its full length."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("chatty-llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0, 0.3)
    model.generation_config.suppress_tokens = [0, 1, 2]
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (tiny_model / name).is_file():
            shutil.copy(tiny_model / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, chatty_model) -> Path:
    """A finished one-task study (text_classification) on the chatty model, one item per evaluation batch so
    each answer is what generating it alone gives; returns its run directory (its config.yaml beside it)."""
    from typer.testing import CliRunner

    from medtune.cli import app

    folder = tmp_path_factory.mktemp("tiny-study")
    config = folder / "config.yaml"
    config.write_text("tasks: [text_classification]\n" + tiny_study_config(chatty_model, folder / "run", test_limit=8,
                                                                        eval_batch=1))
    result = CliRunner().invoke(app, ["study", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run"


@pytest.fixture()
def tiny_config(tmp_path, tiny_model) -> Path:
    """A study config sized for seconds: a handful of examples and steps per task."""
    path = tmp_path / "config.yaml"
    path.write_text(tiny_study_config(tiny_model, tmp_path / "run", test_limit=10, eval_batch=8))
    return path

