"""What the SFT and DPO stages share: trainer arguments, a rich progress bar, resuming."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..attention import attend_grouped
from ..models import compute_dtype
from ..progress import progress


def compact_lm_head_everywhere() -> bool:
    """Make TRL's fused LM head score only the completion tokens on every device.

    TRL (1.16) projects through the LM head only the positions whose label is
    not -100 on CUDA/XPU; on other devices it scores *every* position (to keep
    tile shapes fixed for compiling backends such as Neuron) and masks the
    result. On a CPU that wastes the whole prompt's vocabulary projection and
    its backward: 40-55% of an SFT or DPO step on the embedded model. The
    compact path is the same math (a test checks identical losses), run by
    torch ops on a CPU. Returns False, leaving TRL as it is, when its internals
    have moved.
    """
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        return False
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        return False
    if getattr(original, "_medtune", False):  # already switched
        return True

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact._medtune = True
    trl_utils._use_triton = compact
    return True


@contextlib.contextmanager
def frozen_weights_in_compute_format(model, device: str):
    """While the block trains, each frozen linear weight (the base layers under LoRA, the LM head) is held as
    a bf16 copy where the device computes in bf16 over fp32 weights (a CPU with bf16 in hardware); then the
    fp32 weights are put back, for merging the adapters.

    Under autocast every frozen weight was cast again at each use: autocast caches only the casts of weights
    that require grad, and TRL's chunked log-prob casts the LM head chunk by chunk in the forward and again
    in the backward: a third of a bf16 SFT step's CPU time (docs/performance.md). autocast rounds a weight to
    bf16 as ``Tensor.to`` does, so the products are the same. The embedding stays fp32 (a lookup, not cast by
    autocast), so the LM head tied to it is untied for the block and tied again after."""
    dtype = compute_dtype(device)
    held = []
    if dtype != torch.float32:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.Linear) and weight.dtype == torch.float32 and not weight.requires_grad:
                held.append((module, weight))
                module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    try:
        yield
    finally:
        for module, weight in held:
            module.weight = weight


# the largest LM head kept as an fp32 copy for its gradient (the embedded model's: 113 MB; a 128k x 2048 head,
# 1 GB, is cast chunk by chunk as TRL does)
FP32_HEAD_MAX_BYTES = 2 ** 28


@contextlib.contextmanager
def lm_head_cast_once(model, device: str):
    """While the block trains, the bf16 LM head's gradient products use one fp32 copy of it, cast once.

    TRL's chunked log-prob accumulates the hidden states' gradient in fp32 (``_addmm_fp32``). A CPU has no
    bf16 product with an fp32 output, so at every backward TRL casts each 32,768-row vocabulary chunk of
    the head to fp32. The head is frozen: the same cast, done once, gives the same bits. A GPU, fp32, a
    trained head and a head over ``FP32_HEAD_MAX_BYTES`` are left to TRL; so is every other product."""
    try:
        from trl.kernels import chunked_logprob
        original = chunked_logprob._addmm_fp32
    except (ImportError, AttributeError):  # TRL's internals have moved
        yield
        return
    head = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if (device != "cpu" or weight is None or weight.dtype == torch.float32 or weight.requires_grad
            or weight.numel() * 4 > FP32_HEAD_MAX_BYTES):
        yield
        return
    storage, cast = weight.untyped_storage().data_ptr(), {}

    def addmm_fp32(acc, a, b):
        if b.untyped_storage().data_ptr() != storage or acc.dtype != torch.float32:
            return original(acc, a, b)
        key = (b.storage_offset(), tuple(b.shape), b.stride())  # a chunk of the head
        if key not in cast:
            cast[key] = b.float()
        acc.addmm_(a.float(), cast[key])

    chunked_logprob._addmm_fp32 = addmm_fp32
    try:
        yield
    finally:
        chunked_logprob._addmm_fp32 = original


@contextlib.contextmanager
def grouped_attention_while_training(model, device: str):
    """While the block trains in bf16 on a CPU, attention is medtune's two grouped matmuls instead of torch's
    flash kernel (``attention.py``): p5's SFT took 19% less time, p3's DPO 8% (docs/performance.md). Under
    autocast the queries reach attention in fp32 (the rotary embedding's fp32 tables promote them) and the
    matmuls cast them to bf16, as autocast's sdpa does. A GPU, fp32, and a model whose attention is not
    sdpa are left as they are."""
    switched = device == "cpu" and compute_dtype(device) == torch.bfloat16 and attend_grouped(model)
    try:
        yield
    finally:
        if switched:
            model.set_attn_implementation("sdpa")


@contextlib.contextmanager
def training_block(model, device: str):
    """What SFT and DPO hold while their trainer runs: frozen weights in the compute format, the LM head
    cast once for its gradient, and, in bf16 on a CPU, the grouped attention; all as before afterwards."""
    with (frozen_weights_in_compute_format(model, device), lm_head_cast_once(model, device),
          grouped_attention_while_training(model, device)):
        yield


class LeanSteps:
    """Trainer overrides that drop work each step repeated for nothing (a mixin before the trainer class).

    With LoRA the model is a tree of thousands of modules (the embedded model: 2,499), and Trainer walked it
    again at every step: its FLOP estimate counted the parameters anew, and gradient clipping listed every
    parameter to find the few with a gradient. The count is kept from the first step and the trainable
    parameters are listed once; the numbers are the same. On one device only: under FSDP accelerate
    recognises the model's own parameter list. The checkpoint Trainer writes after the last step is not
    written either (``NoFinalCheckpoint``)."""

    _ops_per_token: int | None = None
    _trainable: list | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(NoFinalCheckpoint())

    def floating_point_ops(self, inputs: dict) -> int:
        main = getattr(self.model, "main_input_name", "input_ids")
        if main not in inputs:
            return super().floating_point_ops(inputs)
        if self._ops_per_token is None:  # Trainer's estimate, 6 x tokens x parameters, for one token
            self._ops_per_token = super().floating_point_ops({main: torch.zeros(1)})
        return self._ops_per_token * inputs[main].numel()

    def _clip_grad_norm(self, model):
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type != DistributedType.NO or self._has_mixed_mesh_grads(model):
            return super()._clip_grad_norm(model)
        if self._trainable is None:
            self._trainable = [p for p in model.parameters() if p.requires_grad]
        return self.accelerator.clip_grad_norm_(self._trainable, self.args.max_grad_norm)


class NoFinalCheckpoint(TrainerCallback):
    """Trainer saves a checkpoint after the last step (adapter, optimizer state, RNG, model card); medtune writes
    the trained model right after and deletes the checkpoints (``clean_checkpoints``), so that one was only
    ever deleted: 0.24 s of p5's 4.3 s SFT child. A kill between the last step and the model's save resumes
    from the last periodic checkpoint (``save_steps``)."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False


def fused_lora_everywhere() -> bool:
    """Add a LoRA layer's low-rank update inside one matmul: ``out += scaling * (x A^T) B^T`` as a BLAS
    ``addmm_`` into the base layer's output, instead of PEFT's ``out + B(A(x)) * scaling``.

    PEFT's form runs two extra passes over the layer's whole output in the forward (the scaling and the
    add) and one in the backward (the scaling of the gradient), for each of the seven adapted projections
    of a layer; on a CPU those passes are memory-bound (without them p5's SFT on the embedded model ran
    ≈ 3% faster, docs/performance.md). The math is the same (a test checks equal outputs and gradients). Only
    the plain case is fused: one active vanilla LoRA adapter on an ``nn.Linear``, no positional or keyword
    extras, and either every tensor of one dtype without autocast, or bf16 autocast on a CPU over a base
    weight already held in bf16 (``frozen_weights_in_compute_format``). In that second case the input is cast
    to bf16 once for both products; PEFT's path casts it to the fp32 adapter's format for the dropout and
    autocast casts it back for the matmul (p5's bf16 SFT: about 5% faster, docs/performance.md). The
    dropout's mask is drawn by ``lora_dropout``. Anything else, a GPU's autocast included, runs PEFT's own
    forward. Returns False, leaving PEFT as it is, when its layer class has moved.
    """
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:
        return False
    original = Linear.forward
    if getattr(original, "_medtune", False):  # already switched
        return True

    def forward(self, x, *args, **kwargs):
        low_rank = fusable_adapter(self, x, args, kwargs)
        if low_rank is None:
            return original(self, x, *args, **kwargs)
        lora_a, lora_b, dropout, scaling, dtype = low_rank
        with torch.autocast(x.device.type, enabled=False):
            rows, bias = x.reshape(-1, x.shape[-1]).to(dtype), self.base_layer.bias
            out = torch.nn.functional.linear(rows, self.base_layer.weight, None if bias is None else bias.to(dtype))
            dropped, rescale = lora_dropout(dropout, rows)
            # in place on a fresh output: the base matmul's backward does not need it
            out.addmm_(dropped @ lora_a.weight.to(dtype).t(), lora_b.weight.to(dtype).t(), alpha=scaling * rescale)
        return out.view(*x.shape[:-1], out.shape[-1])

    forward._medtune, forward.peft_forward = True, original
    Linear.forward = forward
    return True


def fusable_adapter(layer, x, args, kwargs):
    """(A, B, dropout, scaling, compute dtype) of the one adapter ``fused_lora_everywhere`` can fuse, or None."""
    adapters = layer.active_adapters
    if args or kwargs or layer.disable_adapters or layer.merged or len(adapters) != 1:
        return None
    name = adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant or type(layer.base_layer) is not torch.nn.Linear:
        return None
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if lora_b.bias is not None:
        return None
    dtype = x.dtype  # the format both products compute in
    if torch.is_autocast_enabled(x.device.type):  # measured on a CPU only
        dtype = torch.get_autocast_dtype(x.device.type)
        if x.device.type != "cpu" or layer.base_layer.weight.dtype != dtype:
            return None
    elif not x.dtype == layer.base_layer.weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype:
        return None
    return lora_a, lora_b, layer.lora_dropout[name], layer.scaling[name], dtype


def lora_dropout(dropout, rows) -> tuple[torch.Tensor, float]:
    """The adapter's dropout, as (input with the dropped elements zeroed, the factor still to apply).

    On a CPU the mask takes 16 random bits an element, four from each 64-bit draw, and the factor 1 / (1 - p)
    goes into the addmm's alpha (the same product) rather than into a pass over the input: torch's dropout
    draws one number an element (``bernoulli_``) from the CPU's sequential generator, 1.2 ms for a [500, 576]
    input, and scales in a second pass (docs/performance.md). The same inverted dropout: each element is kept
    with probability 1 - p, independently, from the same seeded generator; p is rounded to a multiple of
    2^-16 (0.05 → 0.0500031). A GPU's generator is fast: it keeps torch's dropout.
    """
    if not (isinstance(dropout, torch.nn.Dropout) and dropout.training and 0 < dropout.p < 1
            and rows.device.type == "cpu"):
        return dropout(rows), 1.0
    count = rows.numel()
    bits = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)  # all 64 bits random
    kept = bits.view(torch.int16)[:count].view(rows.shape) >= round(dropout.p * 2 ** 16) - 2 ** 15
    return rows * kept, 1 / (1 - dropout.p)


class RichProgress(TrainerCallback):
    """A rich progress bar for Trainer (its tqdm bars are switched off)."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = progress()
        self.bar.start()
        self.task = self.bar.add_task(self.desc, total=state.max_steps, info="", completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar and logs and "loss" in logs:
            self.bar.update(self.task, info=f"loss {logs['loss']:.3f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar:
            self.bar.stop()


def common_args(out_dir: Path, settings, device: str, seed: int) -> dict:
    """TrainingArguments shared by SFTConfig and DPOConfig."""
    on_gpu = device == "cuda"
    return dict(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
        bf16=compute_dtype(device) == torch.bfloat16,  # autocast; on a CPU only where it multiplies bf16 in hardware
        fp16=False,
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        # TRL turns this on by default; it trades ~30% speed for memory a small model does not need
        gradient_checkpointing=settings.gradient_checkpointing,
    )


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest *complete* checkpoint; one cut short by a kill is removed.

    Trainer writes a checkpoint in place (weights, optimizer, RNG, then
    ``trainer_state.json`` last), so a run killed while saving leaves a folder
    that Trainer cannot resume from. The state file marks a finished save.
    """
    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return None
    steps = sorted((int(d.name.rsplit("-", 1)[1]), d) for d in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if d.is_dir() and d.name.rsplit("-", 1)[1].isdigit())
    for _, candidate in reversed(steps):
        try:
            json.loads((candidate / TRAINER_STATE_NAME).read_text())
            return str(candidate)
        except (OSError, ValueError):
            shutil.rmtree(candidate, ignore_errors=True)  # an interrupted save
    return None


def clean_checkpoints(out_dir: Path) -> None:
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
