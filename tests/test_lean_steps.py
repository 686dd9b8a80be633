"""medtune's trainers drop work Trainer repeated at every step (train.common.LeanSteps), with the same numbers."""

from __future__ import annotations

import torch
from transformers import Trainer
from transformers.modeling_utils import PreTrainedModel

from medtune.models import load_model
from medtune.train.common import LeanSteps


def test_sft_counts_parameters_once_clips_the_same_norm_and_skips_the_last_checkpoint(tiny_model, tmp_path,
                                                                                      monkeypatch):
    from medtune.config import load_config
    from medtune.data import bundled_path
    from medtune.io import read_jsonl
    from medtune.tasks import get_task
    from medtune.train.sft import train_sft

    walks, saves, flops, norms = [], [], [], []
    counting = [True]
    num_parameters = PreTrainedModel.num_parameters

    def counted(self, *args, **kwargs):
        walks.append(counting[0])
        return num_parameters(self, *args, **kwargs)

    def estimate(self, inputs):
        ours = lean_flops(self, inputs)
        counting[0] = False  # Trainer's own estimate, for comparison, is not counted
        flops.append((ours, Trainer.floating_point_ops(self, inputs)))
        counting[0] = True
        return ours

    def clip(self, model):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        expected = torch.nn.utils.get_total_norm(grads)  # over every gradient, before clipping
        norm = lean_clip(self, model)
        norms.append((float(norm), float(expected), len(grads), len(self._trainable)))
        return norm

    def save(self, model, trial):
        saves.append(self.state.global_step)
        return save_checkpoint(self, model, trial)

    save_checkpoint, lean_flops, lean_clip = (Trainer._save_checkpoint, LeanSteps.floating_point_ops,
                                              LeanSteps._clip_grad_norm)
    monkeypatch.setattr(PreTrainedModel, "num_parameters", counted)
    monkeypatch.setattr(LeanSteps, "floating_point_ops", estimate)
    monkeypatch.setattr(LeanSteps, "_clip_grad_norm", clip)
    monkeypatch.setattr(Trainer, "_save_checkpoint", save)
    task = get_task("text_classification")
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = load_config(overrides={"sft": {"max_steps": 4, "save_steps": 2, "batch_size": 2,
                                              "max_length": 2048}}).sft
    summary, _ = train_sft(model, tokenizer, str(tiny_model), task, read_jsonl(bundled_path(task, "train"))[:8],
                           settings, tmp_path / "sft", "cpu", 0)
    assert summary["steps"] == 4
    assert saves == [2]  # the periodic checkpoint only: Trainer also saved one after step 4
    assert len(flops) == 4 and all(ours == trainers > 0 for ours, trainers in flops)
    assert sum(walks) == 1  # Trainer walked the model at each of the four steps
    assert len(norms) == 4
    for norm, expected, grads, trainable in norms:
        assert grads == trainable > 0
        assert norm == expected > 0
