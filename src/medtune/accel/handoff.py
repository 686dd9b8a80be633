"""The ``trained_handoff`` piece: the model a stage trained goes on to the next stage in memory.

Loading a saved LoRA stage loads its parent and merges the adapters; the trained model already holds
both, so merging its adapters in place gives the same weights (the same sums in the same order). What
the trainers set on the model is taken off first, so it computes as a freshly loaded one.
"""

from __future__ import annotations


def as_loaded(trained):
    """``trained`` made what ``load_model`` gives from the folder its training saved: the adapters merged, the
    forwards the trainers set on the instance over the class's (TRL's fused LM head, accelerate's autocast)
    taken off, and gradient checkpointing with its input-embedding hook undone."""
    from peft import PeftModel

    model = trained.merge_and_unload() if isinstance(trained, PeftModel) else trained
    for name in ("forward", "_original_forward"):
        model.__dict__.pop(name, None)
    model.disable_input_require_grads()
    if model.is_gradient_checkpointing:
        model.gradient_checkpointing_disable()
    return model.eval()
