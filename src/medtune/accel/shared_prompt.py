"""Each shared prompt computed once: a batch's rows packed as a prefix tree.

TRL's batches repeat prompt tokens. DPOTrainer runs a batch of N pairs as 2N rows,
[chosen_1..N, rejected_1..N], each the whole prompt followed by its completion; an
SFT batch's examples of one task all begin with the same system prompt and rules
(the task's system prompt and rules). On the clinical tasks the prompt is most of the
tokens (a label answer is a few tokens).

Here a batch's rows become runs of tokens ("nodes") in a tree, each node continuing
its parent:

- SFT: the examples' common prefix, then each example's own part;
- DPO: the pairs' common prefix; each pair's prompt without its last token; the chosen
  and the rejected branch, each starting with the prompt's last token (its output
  predicts the first token of each completion).

A packed row lists nodes, parents first. The mask lets a token see the earlier tokens
of its own node and its ancestors' tokens, and position ids continue from the parent's
end, so every token sees exactly the tokens and positions it sees in TRL's layout. The
per-token outputs of TRL's fused LM head are put back into TRL's layout, and TRL
computes its losses and metrics from them unchanged (``tests/test_shared_prompt.py``
checks equal log-probs and gradients).

A packed row's attention runs over all its tokens, so packing many long examples into
one row can cost more than it saves (dev/LOG.md). Each batch takes the cheapest of TRL's rows and packed rows of
1, 2, ... examples (or pairs), by an estimate of the work: tokens through the weights
plus attention scores.
"""

from __future__ import annotations

import contextlib
import types
from dataclasses import dataclass

import torch

from .attention import GROUPED

PER_TOKEN_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
UNDECIDED = object()  # no call of the current batch has chosen its layout yet
# an attention score with a mask runs about half as fast per FLOP as the weights' matmuls on a CPU
ATTENTION_PENALTY = 2.0


@dataclass
class Node:
    """A run of tokens that continues its parent's (a root starts at position 0)."""

    tokens: list[int]
    parent: int | None = None  # index of the parent among the packed row's nodes
    row: int = -1  # TRL row the tokens are scored in (-1: none, e.g. a shared prompt)
    column: int = 0  # column of the first token in that row


@dataclass
class Packed:
    """Packed rows, and where each scored token of a row sits in TRL's layout."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    allowed: torch.Tensor  # (rows, 1, length, length) bool: query may attend to key
    source: tuple[torch.Tensor, torch.Tensor]  # (row, column) in the packed, shifted outputs
    target: tuple[torch.Tensor, torch.Tensor]  # (row, column) in TRL's shifted outputs
    shape: tuple[int, int]  # TRL's shifted output shape


def key_cost(config) -> float:
    """One attention score (query x key, all heads, scores and values) in units of one token's pass
    through a layer's weights; the estimate that picks a layout."""
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    ffn = getattr(config, "intermediate_size", None) or 4 * hidden
    weights = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * ffn
    return ATTENTION_PENALTY * 2 * heads * head_dim / weights


def cost(rows: int, width: int, per_key: float) -> float:
    """Work of ``rows`` rows of ``width`` tokens: every token through the weights, every score (a mask
    does not skip the masked ones)."""
    return rows * (width + per_key * width * width)


def row_tokens(ids: torch.Tensor, attention: torch.Tensor) -> list[int] | None:
    """The tokens of a right-padded TRL row, or None if it is not that shape."""
    length = int(attention.sum())
    if not bool(attention[:length].all()):
        return None
    return ids[:length].tolist()


def common_prefix(seqs: list[list[int]], limit: int) -> int:
    n = 0
    while n < limit and all(seq[n] == seqs[0][n] for seq in seqs):
        n += 1
    return n


def cheapest(trees: dict[int, list[list[Node]]] | None, trl_rows: int, trl_width: int, per_key: float):
    """The packed rows (one list of nodes each) of the cheapest grouping, or None where TRL's rows cost least."""
    best, best_cost = None, cost(trl_rows, trl_width, per_key)
    for rows in (trees or {}).values():
        width = max(sum(len(node.tokens) for node in nodes) for nodes in rows)
        work = cost(len(rows), width, per_key)
        if work < best_cost:
            best, best_cost = rows, work
    return best


def groups(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------- planning: which rows share what

def example_trees(inputs: dict, labels: torch.Tensor) -> dict[int, list[list[Node]]] | None:
    """SFT: for each group size 2, 3, ..., packed rows of that many examples, each group's common prefix
    once; None where a row is not a right-padded example."""
    ids, attention, labels = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), labels.cpu()
    seqs, limits = [], []
    for r in range(ids.size(0)):
        tokens = row_tokens(ids[r], attention[r])
        if not tokens:
            return None
        scored = (labels[r, :len(tokens)] != -100).nonzero()
        # a scored token is predicted by the token before it, which must sit in the same node
        limits.append((int(scored[0]) if len(scored) else len(tokens)) - 1)
        seqs.append(tokens)
    order = sorted(range(len(seqs)), key=lambda r: len(seqs[r]))  # similar lengths pad each other least
    trees = {}
    for size in range(2, len(seqs) + 1):
        rows = []
        for group in groups(order, size):
            shared = common_prefix([seqs[r] for r in group], max(0, min(limits[r] for r in group)))
            if shared:
                rows.append([Node(seqs[group[0]][:shared])] + [Node(seqs[r][shared:], 0, r, shared) for r in group])
            else:
                rows += [[Node(seqs[r], None, r, 0)] for r in group]
        trees[size] = rows
    return trees


def split_row(ids: torch.Tensor, attention: torch.Tensor, completion: torch.Tensor):
    """(prompt, completion) token lists of one right-padded TRL row, or None if it is not that shape."""
    tokens = row_tokens(ids, attention)
    if tokens is None:
        return None
    prompt_len = int(((completion == 0) & (attention == 1)).sum())
    if bool(completion[:prompt_len].any()) or not bool(completion[prompt_len:len(tokens)].all()):
        return None
    return tokens[:prompt_len], tokens[prompt_len:]


def pair_trees(inputs: dict, labels: torch.Tensor) -> dict[int, list[list[Node]]] | None:
    """DPO: for each group size 1, 2, ..., packed rows of that many pairs, each pair's prompt once and a
    group's common prefix once; None where chosen and rejected prompts differ (e.g. truncated)."""
    if "completion_mask" not in inputs:
        return None
    ids, attention, completion = (inputs[k].cpu() for k in ("input_ids", "attention_mask", "completion_mask"))
    rows = ids.size(0)
    if rows % 2 or rows == 0:
        return None
    pairs = rows // 2
    split = []
    for i in range(pairs):
        chosen, rejected = split_row(ids[i], attention[i], completion[i]), \
            split_row(ids[pairs + i], attention[pairs + i], completion[pairs + i])
        if chosen is None or rejected is None or not chosen[0] or chosen[0] != rejected[0]:
            return None
        split.append((chosen[0], chosen[1], rejected[1]))
    order = sorted(range(pairs), key=lambda i: len(split[i][0]) + len(split[i][1]) + len(split[i][2]))
    trees = {}
    for size in range(1, pairs + 1):
        packed_rows = []
        for group in groups(order, size):
            prompts = [split[i][0] for i in group]
            shared = common_prefix(prompts, min(len(p) for p in prompts) - 1) if len(group) > 1 else 0
            nodes = [Node(prompts[0][:shared])] if shared else []
            for i in group:
                prompt, chosen, rejected = split[i]
                parent = len(nodes)
                nodes.append(Node(prompt[shared:-1], 0 if shared else None))
                # the last prompt token opens both branches: its output predicts each completion's first token
                nodes.append(Node([prompt[-1], *chosen], parent, i, len(prompt) - 1))
                nodes.append(Node([prompt[-1], *rejected], parent, pairs + i, len(prompt) - 1))
            packed_rows.append(nodes)
        trees[size] = packed_rows
    return trees


# ---------------------------------------------------------------- the packed tensors

def cells(nodes: list[Node]) -> tuple[list[tuple], torch.Tensor]:
    """(token, position, node, TRL row, TRL column) per token, and which node sees which (the last
    index stands for padding, which sees nothing)."""
    starts, seen, out = [], [], []
    for n, node in enumerate(nodes):
        start = 0 if node.parent is None else starts[node.parent] + len(nodes[node.parent].tokens)
        starts.append(start)
        seen.append({n} | (seen[node.parent] if node.parent is not None else set()))
        out += [(t, start + k, n, node.row, node.column + k) for k, t in enumerate(node.tokens)]
    visible = torch.zeros(len(nodes) + 1, len(nodes) + 1, dtype=torch.bool)
    for n, ancestors in enumerate(seen):
        visible[n, sorted(ancestors)] = True
    return out, visible


def layout(rows: list[list[Node]], labels: torch.Tensor, pad_id: int, shape: tuple[int, int], device) -> Packed:
    built = [cells(nodes) for nodes in rows]
    width = max(len(row) for row, _ in built)
    labels = labels.tolist()
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    ids, packed_labels, positions, allowed = [], [], [], []
    source, target = ([], []), ([], [])
    for r, (row, visible) in enumerate(built):
        padding = width - len(row)
        ids.append([cell[0] for cell in row] + [pad_id] * padding)
        positions.append([cell[1] for cell in row] + [0] * padding)
        node = torch.tensor([cell[2] for cell in row] + [len(visible) - 1] * padding)
        allowed.append(causal & visible[node[:, None], node[None, :]])
        row_labels = [labels[trl_row][column] if trl_row >= 0 else -100 for _, _, _, trl_row, column in row]
        packed_labels.append(row_labels + [-100] * padding)
        for c, (label, cell) in enumerate(zip(row_labels, row)):
            if label != -100:  # the fused head's output at column j scores the label of token j + 1
                if c == 0 or row[c - 1][2] != cell[2]:
                    raise ValueError("a scored token opens its node: its predecessor would be elsewhere")
                source[0].append(r), source[1].append(c - 1)
                target[0].append(cell[3]), target[1].append(cell[4] - 1)
    allowed = torch.stack(allowed) | torch.eye(width, dtype=torch.bool)  # padding sees itself: no empty query row
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return Packed(as_tensor(ids), as_tensor(packed_labels), as_tensor(positions), allowed[:, None].to(device),
                  (as_tensor(source[0]), as_tensor(source[1])), (as_tensor(target[0]), as_tensor(target[1])), shape)


def pack(trees: dict[int, list[list[Node]]] | None, labels: torch.Tensor, pad_id: int, per_key: float) -> Packed | None:
    """The cheapest packed layout of a TRL batch (``labels``: its labels), or None for TRL's own rows."""
    rows = cheapest(trees, labels.size(0), labels.size(1), per_key)
    if rows is None:
        return None
    return layout(rows, labels.cpu(), pad_id, (labels.size(0), labels.size(1) - 1), labels.device)


def mask_kind(model) -> str | None:
    """How the model's attention takes a 4D mask: boolean (sdpa, medtune's grouped), additive (eager), or not
    at all."""
    implementation = getattr(model.config, "_attn_implementation", None)
    # flash and flex kernels take no arbitrary mask
    return {"sdpa": "bool", GROUPED: "bool", "eager": "additive"}.get(implementation)


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


# ---------------------------------------------------------------- the forward and the trainers

class SharedPromptForward:
    """Wraps a model whose forward TRL has fused. Only the training batch handed in through
    ``batch()`` runs packed; every other call (generation, the task check) is untouched."""

    PASSED = {"input_ids", "attention_mask", "use_cache", "output_router_logits"}

    def __init__(self, model, pad_id: int, plan=pair_trees):
        self.model, self.pad_id, self.plan = model, pad_id, plan
        self.per_key = key_cost(model.config)
        self.own = model.__dict__.get("forward")  # TRL's fused forward, set on the instance
        self.fused = model.forward
        self.inputs: dict | None = None
        self.packed = UNDECIDED  # the batch's layout, shared by its policy and reference passes
        self.batches = {"packed": 0, "trl_layout": 0}
        model.forward = types.MethodType(self.forward, model)

    def unwrap(self) -> None:
        if self.own is None:
            self.model.__dict__.pop("forward", None)
        else:
            self.model.forward = self.own

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
            if packable and mask_kind(self.model) is not None:
                self.packed = pack(self.plan(self.inputs, labels), labels, self.pad_id, self.per_key)
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


class Sharing:
    """The fused models' forwards wrapped for the duration: each training batch handed to ``batch`` runs
    packed where that is cheaper."""

    def __init__(self, models: list, pad_id: int, plan):
        self.wrappers = [SharedPromptForward(m, pad_id, plan) for m in models if m is not None]

    def unwrap(self) -> None:
        for wrapper in self.wrappers:
            wrapper.unwrap()

    @contextlib.contextmanager
    def batch(self, inputs: dict):
        with contextlib.ExitStack() as stack:
            for wrapper in self.wrappers:
                stack.enter_context(wrapper.batch(inputs))
            yield

    def counts(self) -> dict:
        """How many batches ran packed, and how many in TRL's layout (where packing would not pay, or
        prompts differ, e.g. truncated)."""
        return self.wrappers[0].batches
