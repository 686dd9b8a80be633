"""DPO with each pair's prompt computed once: chosen and rejected share one row.

TRL's DPOTrainer runs a batch of N pairs as 2N rows, [chosen_1..N, rejected_1..N], each
the whole prompt followed by its completion, through the policy and again through the
reference. On the clinical tasks the prompt is most of the tokens (a label answer is 3-5
tokens), so about half of every DPO forward and backward computes a prompt a second time.

Here each pair becomes one row of the same network's forward:

    [prompt without its last token | last prompt token, chosen | last prompt token, rejected]

The mask lets each branch see the shared part and itself only, and the rejected branch's
position ids restart where the chosen one began, so every token sees exactly the tokens
and positions it sees in TRL's layout. The last prompt token is in both branches because
its output predicts the first token of each completion. The per-token outputs of TRL's
fused LM head are put back into TRL's layout, and TRL computes its losses and metrics
from them unchanged (``tests/test_shared_prompt.py`` checks equal log-probs and gradients).
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer

PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
SHARED, CHOSEN, REJECTED = 0, 1, 2
UNDECIDED = object()  # no call of the current batch has chosen its layout yet


@dataclass
class Packed:
    """One row per pair, and where each scored token of a row sits in TRL's layout."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    allowed: torch.Tensor  # (pairs, 1, length, length) bool: query may attend to key
    source: tuple[torch.Tensor, torch.Tensor]  # (row, column) in the packed, shifted outputs
    target: tuple[torch.Tensor, torch.Tensor]  # (row, column) in TRL's shifted outputs
    shape: tuple[int, int]  # TRL's shifted output shape


def split_row(ids: torch.Tensor, attention: torch.Tensor, completion: torch.Tensor):
    """(prompt, completion) token lists of one right-padded TRL row, or None if it is not that shape."""
    length = int(attention.sum())
    prompt_len = int(((completion == 0) & (attention == 1)).sum())
    if not bool(attention[:length].all()) or bool(completion[:prompt_len].any()) \
            or not bool(completion[prompt_len:length].all()):
        return None
    return ids[:prompt_len].tolist(), ids[prompt_len:length].tolist()


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
         labels: torch.Tensor, pad_id: int) -> Packed | None:
    """The shared-prompt layout of a TRL batch, or None where chosen and rejected prompts differ."""
    rows = input_ids.size(0)
    if rows % 2 or rows == 0:
        return None
    pairs = rows // 2
    ids_cpu, attn_cpu, comp_cpu, labels_cpu = (t.cpu() for t in (input_ids, attention_mask, completion_mask, labels))
    built = []
    for i in range(pairs):
        chosen = split_row(ids_cpu[i], attn_cpu[i], comp_cpu[i])
        rejected = split_row(ids_cpu[pairs + i], attn_cpu[pairs + i], comp_cpu[pairs + i])
        if chosen is None or rejected is None or not chosen[0] or chosen[0] != rejected[0]:
            return None  # e.g. a truncated prompt: TRL's own layout is used
        prompt = chosen[0]
        shared = len(prompt) - 1
        # (token, position, segment, TRL row, column in TRL's row)
        cells = [(t, p, SHARED, -1, -1) for p, t in enumerate(prompt[:-1])]
        for segment, row, completion in ((CHOSEN, i, chosen[1]), (REJECTED, pairs + i, rejected[1])):
            branch = [prompt[-1], *completion]
            cells += [(t, shared + k, segment, row, shared + k) for k, t in enumerate(branch)]
        built.append(cells)
    return layout(built, labels_cpu, pad_id, (rows, input_ids.size(1) - 1), input_ids.device)


def layout(built: list[list[tuple]], labels: torch.Tensor, pad_id: int, shape: tuple[int, int], device) -> Packed:
    width = max(len(cells) for cells in built)
    labels = labels.tolist()
    ids, packed_labels, positions, segments = [], [], [], []
    source, target = ([], []), ([], [])
    for r, cells in enumerate(built):
        padding = width - len(cells)
        ids.append([cell[0] for cell in cells] + [pad_id] * padding)
        positions.append([cell[1] for cell in cells] + [0] * padding)
        segments.append([cell[2] for cell in cells] + [-1] * padding)
        row_labels = [labels[row][column] if row >= 0 else -100 for _, _, _, row, column in cells]
        packed_labels.append(row_labels + [-100] * padding)
        for c, (label, cell) in enumerate(zip(row_labels, cells)):
            if label != -100:  # the fused head's output at column j scores the label of token j + 1
                source[0].append(r), source[1].append(c - 1)
                target[0].append(cell[3]), target[1].append(cell[4] - 1)
    segment = torch.tensor(segments)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal & (query >= 0) & ((key == SHARED) | (key == query))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding sees itself: no query row is fully masked
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return Packed(as_tensor(ids), as_tensor(packed_labels), as_tensor(positions), allowed[:, None].to(device),
                  (as_tensor(source[0]), as_tensor(source[1])), (as_tensor(target[0]), as_tensor(target[1])), shape)


def mask_kind(model) -> str | None:
    """How the model's attention takes a 4D mask: boolean (sdpa), additive (eager), or not at all."""
    implementation = getattr(model.config, "_attn_implementation", None)
    return {"sdpa": "bool", "eager": "additive"}.get(implementation)  # flash and flex kernels: no arbitrary mask


def attention_mask(model, allowed: torch.Tensor) -> torch.Tensor:
    if mask_kind(model) == "bool":
        return allowed
    dtype = next(model.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def unpack(outputs, packed: Packed, labels: torch.Tensor):
    """The fused head's per-token outputs moved back into TRL's layout."""
    for name in PER_TOKEN_FIELDS:
        value = getattr(outputs, name, None)
        if value is not None:
            moved = value.new_zeros(packed.shape).index_put(packed.target, value[packed.source])
            setattr(outputs, name, moved)
    outputs.label_mask = labels[:, 1:] != -100
    return outputs


class SharedPromptForward:
    """Wraps a model whose forward TRL has fused. Only the DPO batch handed in through
    ``batch()`` runs packed; every other call (generation, the task check) is untouched."""

    PASSED = {"input_ids", "attention_mask", "use_cache", "output_router_logits"}

    def __init__(self, model, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.fused = model.forward
        self.inputs: dict | None = None
        self.packed = UNDECIDED  # the batch's layout, shared by its policy and reference passes
        self.batches = {"packed": 0, "trl_layout": 0}
        model.forward = types.MethodType(self.forward, model)

    @contextlib.contextmanager
    def batch(self, inputs: dict):
        self.inputs, self.packed = inputs, UNDECIDED
        try:
            yield
        finally:
            self.inputs, self.packed = None, UNDECIDED

    def layout_for(self, labels: torch.Tensor, packable: bool) -> Packed | None:
        if self.packed is UNDECIDED:
            self.packed = None
            if packable and "completion_mask" in self.inputs and mask_kind(self.model) is not None:
                self.packed = pack(self.inputs["input_ids"], self.inputs["attention_mask"],
                                   self.inputs["completion_mask"], labels, self.pad_id)
            self.batches["trl_layout" if self.packed is None else "packed"] += 1
        return self.packed

    def forward(self, model, *args, fused_lm_head=False, labels=None, **kwargs):
        packed = None
        if fused_lm_head and self.inputs is not None and kwargs.get("input_ids") is self.inputs["input_ids"]:
            given = {k for k, v in kwargs.items() if v is not None}
            packed = self.layout_for(labels, packable=not args and labels is not None and given <= self.PASSED)
        if packed is None:
            return self.fused(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        rest = {k: kwargs[k] for k in given - {"input_ids", "attention_mask"}}
        outputs = self.fused(input_ids=packed.input_ids, attention_mask=attention_mask(model, packed.allowed),
                             position_ids=packed.position_ids, labels=packed.labels, fused_lm_head=True, **rest)
        return unpack(outputs, packed, labels)


class SharedPromptDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer, with each pair's prompt computed once in the policy and reference passes."""

    def __init__(self, *args, share_prompt: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared: list[SharedPromptForward] = []
        if share_prompt:
            pad_id = self.processing_class.pad_token_id or 0
            policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
            self.shared = [SharedPromptForward(m, pad_id) for m in (policy, self.ref_model) if m is not None]

    @contextlib.contextmanager
    def sharing(self, inputs: dict):
        with contextlib.ExitStack() as stack:
            for wrapper in self.shared:
                stack.enter_context(wrapper.batch(inputs))
            yield

    def _compute_loss(self, model, inputs, return_outputs):
        with self.sharing(inputs):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model, inputs):
        with self.sharing(inputs):
            return super().compute_ref_log_probs(model, inputs)

    def batch_counts(self) -> dict:
        """How many batches ran packed, and how many in TRL's layout (prompts that differ, e.g. truncated)."""
        return self.shared[0].batches if self.shared else {"packed": 0, "trl_layout": None}
