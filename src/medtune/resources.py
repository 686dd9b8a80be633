"""What a training stage needs in memory, per device, before anything runs (``medtune study --dry-run``,
docs/scale.md): the weights, the adapters or trained weights with their gradients and optimizer state, the
activations and the logits, for LoRA, QLoRA and full fine-tuning, on one device or sharded over several.

An estimate from the model's shape and standard accounting, not a measurement:
- mixed-precision Adam keeps, per trained parameter, a 16-bit weight and gradient and a 32-bit master copy
  and two moments (2 + 2 + 12 bytes; ZeRO's accounting); LoRA's adapters stay 32-bit (4 + 4 + 8);
- QLoRA's 4-bit NF4 base weights with double quantisation take about 4.13 bits a parameter;
- a decoder layer's activations are about 34 bytes per token per hidden unit in 16-bit with fused attention
  (Korthikanti et al. 2022, without the attention-score term); with gradient checkpointing only each layer's
  input (2 bytes a unit) is kept, plus one layer's working set;
- the logits take about 8 bytes per token per vocabulary entry (16-bit logits, their 32-bit copy for the loss
  and its gradient);
- DPO computes a chosen and a rejected sequence per pair; its reference model is the policy with LoRA's
  adapters disabled (no copy), or for full fine-tuning a frozen 16-bit copy, unless its log-probs are
  precomputed;
- ZeRO-2 shards gradients and optimizer state over the devices, ZeRO-3 and FSDP shard the weights too; DDP
  shards nothing.
CUDA's context, allocator fragmentation and framework buffers are not counted: leave 10-20% of a card free.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1024 ** 3
LAYOUTS = ("single", "ddp", "zero2", "zero3", "fsdp")
METHODS = ("lora", "qlora", "full")
NF4_BYTES = 4.127 / 8  # NF4 with double quantisation: 4 bits plus the blocks' scales


@dataclass(frozen=True)
class Shape:
    """A decoder-only (Llama-like) model's dimensions, read from its config."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config) -> "Shape":
        return cls(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                   getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                   config.intermediate_size, config.vocab_size, bool(getattr(config, "tie_word_embeddings", False)))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer in one decoder layer: attention q, k, v, o and the gated MLP."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]

    def linear_parameters(self) -> int:
        return self.layers * sum(a * b for a, b in self.linears())

    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        norms = self.layers * 2 * self.hidden + self.hidden
        return self.linear_parameters() + embeddings + norms

    def lora_parameters(self, rank: int, layers: int | None = None) -> int:
        """Adapters on every linear layer (all-linear) of the last ``layers`` layers (all by default)."""
        return (layers or self.layers) * sum(rank * (a + b) for a, b in self.linears())


# the shapes docs/scale.md tabulates (their config.json values)
KNOWN = {
    "SmolLM2-135M": Shape(576, 30, 9, 3, 1536, 49152, True),
    "Llama-3.2-1B": Shape(2048, 16, 32, 8, 8192, 128256, True),
    "Llama-3.1-8B": Shape(4096, 32, 32, 8, 14336, 128256, False),
    "Llama-3.1-70B": Shape(8192, 80, 64, 8, 28672, 128256, False),
}


@dataclass(frozen=True)
class Setting:
    """How one stage trains: the method, the layout over ``devices``, and the batch each device computes."""

    method: str = "lora"  # lora, qlora or full
    layout: str = "single"  # single, ddp, zero2, zero3 or fsdp
    devices: int = 1
    sequences: int = 4  # sequences per device per forward pass (a DPO pair is two)
    tokens: int = 1024  # tokens per sequence
    rank: int = 16
    checkpointing: bool = True
    weight_bytes: int = 2  # 16-bit weights on a GPU; medtune holds fp32 weights on a CPU
    dpo: bool = False
    precomputed_reference: bool = False


def memory(shape: Shape, s: Setting) -> dict[str, float]:
    """Bytes per device for each part of one training step, and their total."""
    params = shape.parameters()
    shard_weights = s.devices if s.layout in ("zero3", "fsdp") else 1
    shard_state = s.devices if s.layout in ("zero2", "zero3", "fsdp") else 1
    if s.method == "qlora":
        weights = shape.linear_parameters() * NF4_BYTES + (params - shape.linear_parameters()) * s.weight_bytes
    else:
        weights = params * s.weight_bytes
    if s.method == "full":
        trained = params * (2 + 12) / shard_state  # 16-bit gradient, fp32 master copy and Adam's two moments
    else:
        trained = shape.lora_parameters(s.rank) * 16 / shard_state  # fp32 adapter, gradient, two moments
    tokens = s.sequences * s.tokens
    layer_working_set = 34 * tokens * shape.hidden
    activations = (shape.layers * 2 * tokens * shape.hidden + layer_working_set) if s.checkpointing \
        else shape.layers * layer_working_set
    logits = 8 * tokens * shape.vocab
    reference = params * 2 / shard_weights if s.dpo and s.method == "full" and not s.precomputed_reference else 0
    parts = {"weights": weights / shard_weights, "trained_state": trained, "activations": activations,
             "logits": logits, "reference": reference}
    parts["total"] = sum(parts.values())
    return parts


def fits(parts: dict[str, float], device_gb: float, headroom: float = 0.15) -> bool:
    return parts["total"] <= device_gb * GB * (1 - headroom)


def model_shape(model: str) -> Shape | None:
    """The shape of the model a config names, from its config.json (None where it is not Llama-like)."""
    from transformers import AutoConfig

    from .models import resolve_base

    config = AutoConfig.from_pretrained(resolve_base(model))
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return Shape.from_config(config) if all(hasattr(config, k) for k in needed) else None


def stage_settings(cfg, device: str, tokens: int) -> dict[str, dict]:
    """The batch each stage's device computes, as the config sets it: SFT's sequences, DPO's pairs (two sequences
    each) per forward pass, ``tokens`` each (at most max_length). Full fine-tuning's DPO holds no reference copy
    unless precompute_reference is never (train/dpo.py precompute_reference)."""
    weight_bytes = 4 if device == "cpu" else 2  # medtune holds fp32 weights on a CPU (models.Compute)
    pairs_per_forward, _ = cfg.dpo.micro_batch()
    return {"SFT": dict(sequences=cfg.sft.batch_size, tokens=min(tokens, cfg.sft.max_length), rank=cfg.sft.lora_r,
                        checkpointing=cfg.sft.gradient_checkpointing, weight_bytes=weight_bytes),
            "DPO": dict(sequences=2 * pairs_per_forward, tokens=min(tokens, cfg.dpo.max_length), rank=cfg.dpo.lora_r,
                        checkpointing=cfg.dpo.gradient_checkpointing, weight_bytes=weight_bytes, dpo=True,
                        precomputed_reference=cfg.dpo.precompute_reference != "never")}


def plan_table(shape: Shape, cfg, device: str, devices: int, tokens: int) -> list[tuple[str, str, dict[str, dict]]]:
    """(method, stage, {layout: memory parts}) for LoRA, QLoRA and full fine-tuning, on one device and over
    ``devices`` under DDP, ZeRO-2 and ZeRO-3/FSDP."""
    rows = []
    for method in METHODS:
        for stage, setting in stage_settings(cfg, device, tokens).items():
            rows.append((method, stage, {
                layout: memory(shape, Setting(method=method, layout=layout, devices=1 if layout == "single" else devices,
                                              **setting))
                for layout in ("single", "ddp", "zero2", "zero3")}))
    return rows
