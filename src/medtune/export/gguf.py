"""One GGUF file from a merged Hugging Face Llama folder, built from the ``gguf`` package's own pieces.

It does what llama.cpp's convert_hf_to_gguf.py does for a Llama (its LlamaModel): the same hyper-parameter
keys, the q/k row permutation llama.cpp's rotary embedding expects, the byte-level BPE vocabulary with its
merges, special ids and chat template (``gguf.SpecialVocab``), the same rule for which tensors stay F32,
and no ``output.weight`` when the embeddings are tied. ``gguf.GGUFWriter`` packs the file,
``gguf.TensorNameMap`` names the tensors and ``gguf.quants.quantize`` makes the F16, BF16 and Q8_0 blocks.

Only the llama architecture with plain RoPE and a byte-level BPE tokenizer is handled; anything else is
refused with a pointer to llama.cpp's converter, which can read the same exported folder.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ..errors import MedtuneError

ARCHITECTURE = "llama"

# qtype name -> (tensor type of the 2-D weights, the file type written in general.file_type)
QTYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
}

# tensors convert_hf_to_gguf.py drops: buffers some checkpoints carry, which llama.cpp recomputes
SKIPPED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")

# llama.cpp's names for the two byte-level pre-tokenizers a Llama-family BPE tokenizer.json can have here
GPT2_SPLIT = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
DIGITS_SPLIT = {"type": "Digits", "individual_digits": True}

UNSUPPORTED_HINT = ("medtune writes GGUF for the llama architecture only; convert the exported Hugging Face "
                    "folder (medtune export --format hf) with llama.cpp's convert_hf_to_gguf.py instead")


def write_gguf(hf_dir: Path, out_file: Path, qtype: str = "f16") -> dict:
    """Convert the model folder ``hf_dir`` into the GGUF file ``out_file``, written atomically.

    ``qtype`` is the storage of the 2-D weights: "f32", "f16", "bf16" or "q8_0" (norms and other 1-D
    tensors stay F32, as llama.cpp keeps them). Returns the qtype, architecture, tensor count and file size.
    """
    import gguf

    hf_dir, out_file = Path(hf_dir), Path(out_file)
    tensor_type, file_type = wanted_types(qtype)
    config = read_config(hf_dir)
    weight_files = safetensors_files(hf_dir)
    pre = pre_tokenizer_name(read_tokenizer_json(hf_dir), hf_dir)  # refused before any tensor is converted

    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    count = add_tensors(writer, weight_files, config, tensor_type)
    add_general(writer, hf_dir, out_file)
    add_hparams(writer, config, file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_vocab(writer, hf_dir, config, pre)
    write_atomically(writer, out_file)
    return {"qtype": qtype, "architecture": ARCHITECTURE, "tensor_count": count,
            "size_bytes": out_file.stat().st_size}


def wanted_types(qtype: str):
    import gguf

    if qtype not in QTYPES:
        raise MedtuneError(f"GGUF qtype must be one of {', '.join(QTYPES)}, got {qtype!r}")
    tensor_name, file_name = QTYPES[qtype]
    return gguf.GGMLQuantizationType[tensor_name], gguf.LlamaFileType[file_name]


def read_config(hf_dir: Path):
    """The folder's transformers config, once config.json says it is a Llama with plain RoPE."""
    from transformers import AutoConfig

    path = hf_dir / "config.json"
    if not path.is_file():
        raise MedtuneError(f"{hf_dir}: no config.json; a GGUF is written from a Hugging Face model folder "
                           f"(config.json, safetensors weights, tokenizer.json)")
    model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    if model_type != ARCHITECTURE:
        raise MedtuneError(f"{hf_dir}: architecture {model_type!r} is not supported; {UNSUPPORTED_HINT}")
    config = AutoConfig.from_pretrained(hf_dir)
    rope_type = (config.rope_parameters or {}).get("rope_type", "default")
    if rope_type != "default":
        # scaled RoPE needs extra keys or a rope_freqs tensor, and transformers' GGUF reader drops them for llama
        raise MedtuneError(f"{hf_dir}: RoPE scaling {rope_type!r} is not supported; {UNSUPPORTED_HINT}")
    return config


def safetensors_files(hf_dir: Path) -> list[Path]:
    files = sorted(hf_dir.glob("model*.safetensors"))
    if not files:
        raise MedtuneError(f"{hf_dir}: no model*.safetensors weights; save the model with "
                           f"save_pretrained(safe_serialization=True) first")
    return files


def read_tokenizer_json(hf_dir: Path) -> dict:
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise MedtuneError(f"{hf_dir}: no tokenizer.json; the GGUF vocabulary is built from a fast tokenizer's file")
    return json.loads(path.read_text(encoding="utf-8"))


# --- tensors -----------------------------------------------------------------------------------------------

def add_tensors(writer, weight_files: list[Path], config, tensor_type) -> int:
    """Every weight, renamed, permuted and stored as llama.cpp would; returns how many were added."""
    import gguf

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    count = 0
    for hf_name, tensor in hf_tensors(weight_files):
        if hf_name.endswith(SKIPPED_SUFFIXES):
            continue
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when there is no output.weight
        kind, name = gguf_name(name_map, hf_name)
        data = as_float_array(permuted(tensor, hf_name, config))
        data, stored = quantized(data, storage_type(kind, name, data, tensor_type))
        writer.add_tensor(name, data, raw_dtype=stored)
        count += 1
    return count


def hf_tensors(weight_files: list[Path]):
    """(name, tensor) for each weight, in name order within each file, as convert_hf_to_gguf.py reads them."""
    from safetensors import safe_open

    for path in weight_files:
        with safe_open(path, framework="pt") as part:
            for name in sorted(part.keys()):
                yield name, part.get_tensor(name)


def gguf_name(name_map, hf_name: str):
    """(MODEL_TENSOR kind, GGUF name) of a Hugging Face tensor name."""
    found = name_map.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise MedtuneError(f"cannot map tensor {hf_name!r} to a GGUF name; {UNSUPPORTED_HINT}")
    return found


def permuted(tensor, hf_name: str, config):
    """q_proj and k_proj rows regrouped per head from HF's half-split RoPE layout to llama.cpp's interleaved
    one (LlamaModel.permute); transformers' GGUF loader applies the inverse."""
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        heads = config.num_attention_heads
    elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        heads = config.num_key_value_heads
    else:
        return tensor
    return (tensor.reshape(heads, 2, tensor.shape[0] // heads // 2, *tensor.shape[1:])
            .swapaxes(1, 2)
            .reshape(tensor.shape))


def as_float_array(tensor):
    """A numpy array in F16 or F32; bf16 and other types go through F32, as in convert_hf_to_gguf.py."""
    import torch

    if tensor.dtype not in (torch.float16, torch.float32):
        tensor = tensor.to(torch.float32)
    return tensor.contiguous().numpy()


def storage_type(kind, name: str, data, wanted):
    """llama.cpp's rule: 1-D tensors, norms, biases and a few small tensor kinds stay F32; the rest (token
    embeddings included) take the requested type."""
    import gguf

    always_f32 = (gguf.MODEL_TENSOR.FFN_GATE_INP, gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
    if data.ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") or kind in always_f32:
        return gguf.GGMLQuantizationType.F32
    return wanted


def quantized(data, qtype):
    """``data`` in ``qtype``; a row that does not fill whole Q8_0 blocks falls back to F16, as llama.cpp does."""
    import gguf

    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.QuantError:
        qtype = gguf.GGMLQuantizationType.F16
        return gguf.quants.quantize(data, qtype), qtype


# --- metadata ----------------------------------------------------------------------------------------------

def add_general(writer, hf_dir: Path, out_file: Path) -> None:
    """general.*: the name, size label and the like, from the folder as llama.cpp's Metadata reads it."""
    import gguf

    total, shared, expert, experts = writer.get_total_parameter_count()
    metadata = gguf.Metadata.load(None, hf_dir, None, total)
    if hf_dir.name.startswith("."):
        # a scratch folder (medtune export merges into one) names nothing: the output file names the model
        metadata.name, metadata.basename, metadata.finetune = out_file.stem, None, None
    elif metadata.name is None:
        metadata.name = hf_dir.name
    if metadata.size_label is None and total > 0:
        metadata.size_label = gguf.size_label(total, shared, expert, experts)
    writer.add_type(gguf.GGUFType.MODEL)
    metadata.set_gguf_meta_model(writer)


def add_hparams(writer, config, file_type) -> None:
    """The llama.* keys TextModel and LlamaModel.set_gguf_parameters write for a dense Llama."""
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    rope_theta = (config.rope_parameters or {}).get("rope_theta")
    if rope_theta is not None:
        writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    head_dim = head_size(config)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_file_type(file_type)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


# --- vocabulary --------------------------------------------------------------------------------------------

def add_vocab(writer, hf_dir: Path, config, pre: str) -> None:
    """tokenizer.*: the byte-level BPE vocabulary as TextModel._set_vocab_gpt2 writes it."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    tokens, token_types = token_list(tokenizer, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)

    special = gguf.SpecialVocab(hf_dir, load_merges=True)
    # what the tokenizer does, not what a config flag may claim: llama.cpp adds BOS/EOS by these flags
    special.add_special_token["bos"], special.add_special_token["eos"] = adds_bos_eos(tokenizer)
    if special.chat_template is None and getattr(tokenizer, "chat_template", None):
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
    prefix_space = tokenizer_config(hf_dir).get("add_prefix_space")
    if prefix_space is not None:
        writer.add_add_space_prefix(prefix_space)


def pre_tokenizer_name(tokenizer_json: dict, hf_dir: Path) -> str:
    """llama.cpp's name for how the text is split before BPE. convert_hf_to_gguf.py recognises known
    vocabularies by a hash of their ids, which a fine-tuned or custom vocabulary never matches, so the
    split is read from tokenizer.json instead: GPT-2's regex is "gpt-2", digits one by one then GPT-2's
    regex is "smollm" (SmolLM's original tokenizer)."""
    model = tokenizer_json.get("model") or {}
    if (model.get("type") != "BPE" or model.get("byte_fallback") or model.get("ignore_merges")
            or tokenizer_json.get("normalizer") is not None):
        raise MedtuneError(f"{hf_dir}: only plain byte-level BPE tokenizers are supported; {UNSUPPORTED_HINT}")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and is_like(steps[0], GPT2_SPLIT):
        return "gpt-2"
    if len(steps) == 2 and is_like(steps[0], DIGITS_SPLIT) and is_like(steps[1], GPT2_SPLIT):
        return "smollm"
    raise MedtuneError(f"{hf_dir}: the tokenizer's pre-tokenizer {json.dumps(pre)} has no llama.cpp name "
                       f"medtune knows; {UNSUPPORTED_HINT}")


def is_like(step: dict, reference: dict) -> bool:
    return all(step.get(key) == value for key, value in reference.items())


def token_list(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token and type (TextModel.get_vocab_base): added special tokens are CONTROL, other added
    tokens USER_DEFINED, ids the tokenizer lacks become UNUSED "[PAD{id}]" rows up to the model's vocab size."""
    import gguf

    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise MedtuneError(f"the tokenizer has ids up to {max(vocab.values())} but the model's vocab_size is "
                           f"{vocab_size}")
    by_id = {index: token for token, index in vocab.items()}
    added = tokenizer.get_added_vocab()
    added_decoder = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if token in added:
            if not added_decoder[index].normalized:
                # llama.cpp expects added tokens already normalised, as the tokenizer itself would spell them
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if added_decoder[index].special or looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def looks_special(token: str) -> bool:
    """convert_hf_to_gguf.py's does_token_look_special: tokens some models forget to mark special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def adds_bos_eos(tokenizer) -> tuple[bool, bool]:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return bool(ids) and bos is not None and ids[0] == bos, bool(ids) and eos is not None and ids[-1] == eos


def tokenizer_config(hf_dir: Path) -> dict:
    path = hf_dir / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# --- file --------------------------------------------------------------------------------------------------

def write_atomically(writer, out_file: Path) -> None:
    """Header, metadata and tensors into a temp file beside ``out_file``, renamed into place when complete."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name that GGUFWriter creates itself, so the file gets the usual permissions (mkstemp's are 0600)
    tmp = out_file.with_name(f".{out_file.name}.{secrets.token_hex(6)}.tmp")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_file)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
