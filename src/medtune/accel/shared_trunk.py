"""DPO's reference pass starts where the policy pass's frozen lower layers ended.

With DPO's adapters on the top N layers only (``dpo.lora_layers``, the quick preset's 8 of the
embedded model's 30), every layer below them holds the same frozen weights in the policy pass
and in the reference pass (TRL's reference is the same network with its adapters disabled), and
both passes of a batch get the same inputs. So they compute the same hidden state up to the first
adapted layer. TRL runs both passes whole; here the policy pass keeps the hidden state that enters
the first adapted layer, and the reference pass of the same batch skips the layers below it.

Nothing below the first adapted layer needs gradients, so the policy's backward pass never runs
those layers again, and the kept tensor is one the upper layers keep for their backward anyway.

Evaluation uses the same trunk across models: the SFT and DPO models hold the same weights below
DPO's adapters, so their prompts' lower layers run once (``generate.generate_each``).
"""

from __future__ import annotations

import contextlib

import torch


def decoder_layers(model) -> torch.nn.ModuleList | None:
    """The decoder layers of a transformers causal LM (``model.model.layers``), or None."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    return layers if isinstance(layers, torch.nn.ModuleList) else None


def first_adapted(layers: torch.nn.ModuleList) -> int | None:
    """Index of the lowest layer holding a trainable parameter (a LoRA adapter), or None if there is none."""
    for i, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return None


class SharedTrunk:
    """Hands the policy pass's hidden state below the first adapted layer to the reference pass.

    Inside ``batch()``: the first pass through the model keeps what enters the lowest layer and what
    leaves the layer below the first adapted one. A later pass whose input to the lowest layer is the
    same tensor, value for value (the reference pass: TRL gives it the policy pass's inputs), takes
    the kept output instead of running the layers below; any other pass runs them.
    """

    def __init__(self, model, below: int | None = None):
        """``below``: how many of the lowest layers to share (evaluation: the layers several models hold
        alike, ``generate.shared_layers``); by default the frozen layers below the first adapted one."""
        self.layers = decoder_layers(model)
        first = below if below is not None or self.layers is None else first_adapted(self.layers)
        self.below = list(self.layers[:first]) if first else []  # first None or 0: nothing to share
        self.entered: torch.Tensor | None = None  # the first pass's input to the lowest layer
        self.kept: torch.Tensor | None = None  # and its output of the layer below the first adapted one
        self.skipping = False
        self.replayed = 0  # passes that skipped the layers below

    @property
    def active(self) -> bool:
        return bool(self.below)

    def wrapped(self, i: int, layer):
        run, last = layer.forward, i == len(self.below) - 1

        def forward(hidden_states, *args, **kwargs):
            if i == 0:
                self.skipping = self.kept is not None and torch.equal(hidden_states, self.entered)
                self.replayed += self.skipping
            if self.skipping:
                return self.kept if last else hidden_states
            out = run(hidden_states, *args, **kwargs)
            if self.entered is None and i == 0:
                self.entered = hidden_states.detach()
            if self.kept is None and last:
                self.kept = out.detach()
            return out
        return forward

    @contextlib.contextmanager
    def batch(self):
        if not self.active:
            yield
            return
        for i, layer in enumerate(self.below):
            layer.forward = self.wrapped(i, layer)
        try:
            yield
        finally:
            self.entered = self.kept = None
            self.skipping = False
            for layer in self.below:
                layer.__dict__.pop("forward", None)  # the class's own forward again
