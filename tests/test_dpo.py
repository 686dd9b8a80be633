"""Preference pairs and DPO on the tiny random model: mining, strategies, held-out metrics, collapse guard."""

from __future__ import annotations

import json
import random

import pytest

from medtune.config import DPOSettings, PairSettings, load_config
from medtune.data import bundled_path
from medtune.errors import MedtuneError
from medtune.io import read_jsonl
from medtune.models import Compute, load_model
from medtune.tasks import get_task
from medtune.train.dpo import fit_pairs, split_heldout, train_dpo
from medtune.train.pairs import make_pair, mine_pairs, pairs_from_errors, pairs_from_ranking

CPU = Compute()

TEXT = get_task("text_classification")
SUMMARY = get_task("summarization")


def examples(task, n=8, split="train"):
    return read_jsonl(bundled_path(task, split))[:n]


# ------------------------------------------------------------------ pair mining

def test_pairs_come_only_from_wrong_outputs():
    ex = examples(TEXT, 1)[0]
    chosen = TEXT.reference(ex)
    wrong = TEXT.wrong_completions(ex)
    outputs = [chosen, f"Sure! The answer is {ex['target']}.", wrong[0], wrong[0] + "  ", wrong[1], ""]
    scored = [(o, TEXT.score(ex, o)) for o in outputs]
    pairs = pairs_from_errors(TEXT, ex, scored, chosen)
    # the two right answers give nothing; the whitespace duplicate counts once; the empty output is wrong
    assert [p["rejected"] for p in pairs] == [wrong[0], wrong[1], ""]
    assert all(p["chosen"] == chosen and p["source"] == "model_error" for p in pairs)
    assert all(not TEXT.score(ex, p["rejected"])["correct"] for p in pairs)


def test_mining_with_the_tiny_model_records_statistics(tiny_model):
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    settings = PairSettings(samples=2, max_prompts=5, label_swap_fallback=False)
    exs = examples(TEXT, 12)
    pairs, stats = mine_pairs(model, tokenizer, TEXT, exs, settings, batch_size=8, seed=0)
    by_id = {ex["id"]: ex for ex in exs}
    # a random model is always wrong: every distinct sample is a rejected, scored wrong by the task
    assert pairs and all(not TEXT.score(by_id[p["example_id"]], p["rejected"])["correct"] for p in pairs)
    assert stats["prompts_tried"] == 5 and stats["outputs"] == 10
    assert stats["sft_error_rate_on_train"] == stats["wrong_outputs"] / 10 == 1.0
    assert stats["pairs_per_source"] == {"model_error": len(pairs)}
    assert stats["pairs"] + stats["prompts_without_pair"] >= 5


def test_label_swap_needs_no_model_and_open_tasks_refuse_it():
    exs = examples(TEXT, 6)
    pairs, stats = mine_pairs(None, None, TEXT, exs, PairSettings(strategy="label_swap"), 8, 0)
    assert len(pairs) == 6 and stats["pairs_per_source"] == {"label_swap": 6}
    assert stats["sft_error_rate_on_train"] is None
    with pytest.raises(MedtuneError, match="label task"):
        mine_pairs(None, None, get_task("clinical_reasoning"), exs, PairSettings(strategy="label_swap"), 8, 0)
    with pytest.raises(MedtuneError, match="no grade"):
        mine_pairs(None, None, TEXT, exs, PairSettings(strategy="judge_ranked"), 8, 0)


def test_judge_ranked_pairs_best_against_worst():
    ex = examples(SUMMARY, 1)[0]
    good = SUMMARY.reference(ex)
    outputs = [good, "The patient was seen.", "The patient was seen."]
    scored = [(o, SUMMARY.score(ex, o)) for o in outputs]
    [pair] = pairs_from_ranking(SUMMARY, ex, scored, min_gap=1)
    assert pair["chosen"] == good and pair["rejected"] == "The patient was seen." and pair["source"] == "judge"
    assert pair["chosen_grade"] > pair["rejected_grade"]
    # samples graded alike give no pair
    assert pairs_from_ranking(SUMMARY, ex, scored[1:], min_gap=1) == []


def test_human_pairs_are_added_with_their_source(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "Note: ...", "chosen": "current smoker", "rejected": "never smoker"}) + "\n")
    pairs, stats = mine_pairs(None, None, TEXT, examples(TEXT, 3), PairSettings(strategy="human", human_file=path), 8, 0)
    assert stats["pairs_per_source"] == {"human": 1} and pairs[0]["chosen"] == "current smoker"


def test_heldout_split_keeps_prompts_together():
    pairs = [{"id": f"{i}-{k}", "example_id": str(i)} for i in range(20) for k in range(2)]
    train, held = split_heldout(pairs, 0.2, seed=0)
    assert len(held) == 8 and len(train) == 32
    assert not {p["example_id"] for p in train} & {p["example_id"] for p in held}


def test_pairs_too_long_are_dropped_or_stop_the_run(tiny_model):
    from medtune.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model))
    ex = examples(TEXT, 1)[0]
    short = make_pair(TEXT, ex, "current smoker", "never smoker", "label_swap", 0)
    long = make_pair(TEXT, ex, "current smoker", "never smoker " * 300, "label_swap", 1)
    kept, stats, _ = fit_pairs(tokenizer, TEXT, [short, long], max_length=400, mode="drop")
    assert kept == [short] and stats["dropped_too_long"] == 1
    with pytest.raises(MedtuneError, match="longer than dpo.max_length=400"):
        fit_pairs(tokenizer, TEXT, [short, long], max_length=400, mode="error")


# ------------------------------------------------------------------ DPO

def constant_preference_pairs(n: int) -> list[dict]:
    """Short prompts that all prefer the same answer: a preference a tiny model learns and generalises."""
    rng = random.Random(0)
    words = "cough fever chest pain nausea headache vomiting sepsis stroke glucose sodium".split()
    return [{"id": f"p{i}", "example_id": f"e{i}", "prompt": "Note: patient reports " + " ".join(rng.sample(words, 4)),
             "chosen": "current smoker", "rejected": rng.choice(["never smoker", "former smoker"]),
             "source": "label_swap"} for i in range(n)]


def examples_of(pairs: list[dict]) -> list[dict]:
    """The training examples the pairs came from, each answered right by its chosen completion."""
    return [{"id": p["example_id"], "input": p["prompt"], "target": p["chosen"]} for p in pairs]


def varied_preference_pairs(n: int) -> list[dict]:
    """Pairs whose chosen and rejected labels vary: a pair's log-probs are its own."""
    labels = ["current smoker", "never smoker", "former smoker"]
    return [{**pair, "chosen": labels[i % 3], "rejected": labels[(i + 1 + i // 3 % 2) % 3]}
            for i, pair in enumerate(constant_preference_pairs(n))]


def run_dpo(tiny_model, tmp_path, method="lora", pairs=None, accel=(), **settings):
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    base = dict(max_steps=12, batch_size=4, learning_rate=2e-3, max_length=2048, heldout_fraction=0.2,
                eval_steps=4, save_steps=100, beta=0.1)
    base.update(settings)
    return train_dpo(model, tokenizer, str(tiny_model), tiny_model, method, TEXT, pairs or constant_preference_pairs(40),
                     DPOSettings(**base), tmp_path / "dpo", Compute(accel=frozenset(accel)), 0)[0]


def test_dpo_raises_heldout_reward_accuracy_and_margin_and_guard_stays_silent(tiny_model, tmp_path):
    summary = run_dpo(tiny_model, tmp_path)
    held = summary["heldout"]
    assert summary["heldout_pairs"] == 8 and summary["pairs"] == 32
    assert [h["step"] for h in held] == [4, 8, 12]
    # at step 0 policy == reference, so every reward, the accuracy and the margin are 0 by construction
    assert held[-1]["rewards/accuracies"] >= 0.75 and held[-1]["rewards/margins"] > 0.05
    assert held[-1]["rewards/margins"] > held[0]["rewards/margins"]
    assert held[-1]["chosen_logp_change_per_token"] > 0
    assert summary["collapse"]["fired"] is False and summary["steps"] == 12
    saved = json.loads((tmp_path / "dpo" / "heldout_log.json").read_text())
    assert saved == held
    assert (tmp_path / "dpo" / "model" / "adapter_model.safetensors").is_file()


def test_collapse_guard_fires_on_a_huge_learning_rate_and_keeps_the_best(tiny_model, tmp_path):
    # plain DPO, full fine-tuning at lr 0.1: reward accuracy stays high while the chosen log-prob falls
    # by ~18 nats per token, the failure the guard exists for (the default's NLL term works against it)
    summary = run_dpo(tiny_model, tmp_path, method="full", learning_rate=0.1, eval_steps=2, collapse_threshold=0.5,
                      loss_type="sigmoid")
    collapse = summary["collapse"]
    assert collapse["fired"] is True and collapse["chosen_logp_drop_per_token"] > 0.5
    assert summary["steps"] < 12  # stopped early
    assert collapse["restored"]["step"] < collapse["step"]
    assert (tmp_path / "dpo" / "model" / "model.safetensors").is_file()


def test_loss_variants_reach_trl():
    from medtune.train.dpo import loss_args

    assert loss_args(DPOSettings(loss_type="sigmoid+sft", sft_weight=0.5)) == \
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    assert loss_args(DPOSettings(loss_type="robust", label_smoothing=0.1)) == \
        {"loss_type": ["robust"], "label_smoothing": 0.1}
    with pytest.raises(MedtuneError, match="label_smoothing"):
        load_config(overrides={"dpo": {"loss_type": "robust"}})


def test_micro_batches_make_the_same_update_as_the_whole_batch(tiny_model, tmp_path):
    # a batch of 4 pairs in one forward, or as 2 x 2 or 4 x 1 accumulated micro-batches: the same
    # loss and the same gradient at every step (a summed instead of averaged accumulation would double it)
    runs = {n: run_dpo(tiny_model, tmp_path / str(n), max_steps=3, heldout_fraction=0.0, pairs_per_forward=n)
            for n in (4, 2, 1)}
    logged = {n: [value for h in run["log_history"] if "grad_norm" in h for value in (h["loss"], h["grad_norm"])]
              for n, run in runs.items()}
    assert len(logged[4]) == 6 and logged[4][1] > 0
    for n in (2, 1):
        assert logged[n] == pytest.approx(logged[4], rel=1e-4)


def test_shared_prompt_rows_train_as_trl_layout_does(tiny_model, tmp_path):
    # each pair's prompt once (policy and reference) or twice (TRL's rows): the same losses, gradients
    # and held-out metrics at every step, with LoRA and with a full fine-tuning reference copy
    for method in ("lora", "full"):
        runs = {share: run_dpo(tiny_model, tmp_path / f"{method}-{share}", method=method, max_steps=4, eval_steps=2,
                               precompute_reference="never", accel={"shared_prompt"} if share else ())
                for share in (True, False)}
        assert runs[True]["shared_prompt_batches"]["packed"] >= 4 + 2 * 2  # train micro-batches + held-out batches
        assert runs[True]["shared_prompt_batches"]["trl_layout"] == 0
        assert runs[False]["shared_prompt_batches"] is None
        logged = {share: [v for h in run["log_history"] for k, v in sorted(h.items())
                          if k.startswith(("loss", "grad_norm", "eval_rewards", "eval_logps"))]
                  for share, run in runs.items()}
        # 4 steps x (loss, grad norm) + 2 evaluations x (4 rewards + 2 log-probs)
        assert len(logged[True]) == 4 * 2 + 2 * 6 and logged[True] == pytest.approx(logged[False], rel=1e-3, abs=1e-5)


def logged_metrics(run: dict) -> list[float]:
    """Every step's loss and gradient norm and every evaluation's loss, rewards and log-probs, in order."""
    return [v for h in run["log_history"] for k, v in sorted(h.items())
            if k.startswith(("loss", "grad_norm", "eval_rewards", "eval_logps", "eval_loss"))]


@pytest.mark.parametrize("accel", [{"shared_trunk"}, {"shared_trunk", "shared_prompt"}], ids=["trunk", "trunk+prompt"])
def test_reference_pass_reuses_the_policy_pass_below_the_adapters(tiny_model, tmp_path, monkeypatch, accel):
    # adapters on the top layer only: the reference pass starts from the policy pass's hidden state
    # below it, with the same losses, gradients and held-out metrics as running every layer again
    from medtune.accel.shared_trunk import SharedTrunk

    trunks = []
    init = SharedTrunk.__init__
    monkeypatch.setattr(SharedTrunk, "__init__", lambda self, model: trunks.append(self) or init(self, model))
    runs = {shared: run_dpo(tiny_model, tmp_path / str(shared), pairs=varied_preference_pairs(40), max_steps=4,
                            eval_steps=2, lora_layers=1, precompute_reference="never", accel=accel if shared else ())
            for shared in (True, False)}
    assert len(trunks) == 1 and trunks[0].replayed > 0  # the piece ran
    assert not any("forward" in vars(layer) for layer in trunks[0].below)  # and the layers are as they were
    logged = {shared: logged_metrics(run) for shared, run in runs.items()}
    assert len(logged[True]) == 4 * 2 + 2 * 7 and logged[True][1] > 0
    assert logged[True] == pytest.approx(logged[False], rel=1e-5, abs=1e-7)


def test_shared_trunk_only_where_layers_below_the_adapters_are_frozen(tiny_model):
    from peft import get_peft_model

    from medtune.accel.shared_trunk import SharedTrunk
    from medtune.models import lora_config

    def trunk(layers):
        model, _, _ = load_model(tiny_model, "cpu")
        return SharedTrunk(get_peft_model(model, lora_config(4, 8, 0.0, "all-linear", model, layers)).get_base_model())

    assert trunk(1).active and len(trunk(1).below) == 1
    assert not trunk(None).active  # adapters on every layer: nothing below them


def test_precomputed_reference_trains_as_the_reference_forward_does(tiny_model, tmp_path):
    # 2 epochs over 32 pairs with 4 held-out evaluations: the reference log-probs computed once per pair before
    # training (TRL's precompute_ref_log_probs) give the same losses, gradients and held-out metrics as TRL's
    # reference forward at every step and evaluation, with LoRA and with full fine-tuning
    for method in ("lora", "full"):
        runs = {mode: run_dpo(tiny_model, tmp_path / f"{method}-{mode}", method=method, pairs=varied_preference_pairs(40),
                              max_steps=16, eval_steps=4, precompute_reference=mode) for mode in ("always", "never")}
        assert runs["always"]["reference_precomputed"] is True and runs["never"]["reference_precomputed"] is False
        logged = {mode: logged_metrics(run) for mode, run in runs.items()}
        assert len(logged["always"]) == 16 * 2 + 4 * 7
        assert logged["always"] == pytest.approx(logged["never"], rel=1e-3, abs=1e-5)


def test_reference_is_precomputed_where_a_pair_would_be_scored_twice():
    from medtune.train.dpo import precompute_reference

    def plan(method="lora", pairs=32, heldout=8, **settings):
        return precompute_reference(DPOSettings(**{"batch_size": 4, "eval_steps": 4, **settings}), method, pairs,
                                    heldout)

    assert plan(max_steps=8)  # one pass over 32 pairs in steps of 4, the held-out pairs evaluated at step 4 and 8
    assert not plan(max_steps=4) and not plan(max_steps=3)  # every pair scored once
    assert plan(max_steps=9)  # past one pass
    assert plan(epochs=2)
    assert not plan(max_steps=2, heldout=0, eval_steps=1)
    assert plan(max_steps=2, method="full")  # then no reference copy is needed
    assert plan(max_steps=2, precompute_reference="always")
    assert not plan(epochs=3, method="full", precompute_reference="never")
    assert plan(max_steps=8, batch_size=8, pairs_per_forward=8, pairs=30)  # 4 steps a pass


def test_dpo_splits_a_batch_of_pairs_into_halves_by_default():
    assert DPOSettings(batch_size=4).micro_batch() == (2, 2)
    assert DPOSettings(batch_size=8, grad_accum=2).micro_batch() == (4, 4)
    assert DPOSettings(batch_size=3).micro_batch() == (1, 3)
    assert DPOSettings(batch_size=1).micro_batch() == (1, 1)
    assert DPOSettings(batch_size=8, pairs_per_forward=8).micro_batch() == (8, 1)
    with pytest.raises(MedtuneError, match="pairs_per_forward"):
        load_config(overrides={"dpo": {"batch_size": 4, "pairs_per_forward": 3}})


# ------------------------------------------------------------------ held-out task check

class ScriptedCheck:
    """A task check over 20 held-out prompts whose answers are given in advance: for each check,
    the indices of the prompts answered correctly."""

    task = None  # no labels: only the accuracy rule applies

    def __init__(self, *correct):
        self.correct = [set(c) for c in correct]

    def rows(self, model):
        right = self.correct.pop(0)
        return [{"correct": i in right} for i in range(20)]


class LabelledCheck:
    """A text_classification check over 20 prompts whose references cycle through the three labels;
    for each check, the label answered to each prompt."""

    task = TEXT
    gold = [TEXT.labels["label"][i % 3] for i in range(20)]

    def __init__(self, *answers):
        self.answers = list(answers)

    def rows(self, model):
        preds = self.answers.pop(0)
        return [{"gold": g, "pred": p, "correct": g == p} for g, p in zip(self.gold, preds)]


def evaluate_at(guard, model, step: int, chosen_reward: float = 0.0, reward_accuracy: float = 0.5):
    from transformers import TrainerControl, TrainerState

    state, control = TrainerState(), TrainerControl()
    state.global_step = step
    metrics = {"eval_rewards/chosen": chosen_reward, "eval_rewards/rejected": -0.1,
               "eval_rewards/accuracies": reward_accuracy, "eval_rewards/margins": 0.1}
    guard.on_evaluate(None, state, control, metrics=metrics, model=model)
    return control


def test_guard_fires_on_a_task_accuracy_drop_and_keeps_the_best_task_weights():
    import torch
    from transformers import TrainerControl, TrainerState

    from medtune.train.dpo import CollapseGuard

    model = torch.nn.Linear(2, 1)
    settings = DPOSettings(task_drop_threshold=0.05, collapse_threshold=0.5, beta=0.1)
    check = ScriptedCheck(range(12), range(14), range(9), range(4), range(3))  # 0.60, 0.70, 0.45, 0.20, 0.15
    guard = CollapseGuard(settings, tokens_per_chosen=4, check=check)
    guard.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    # reward accuracy rises all along (the GPU table's failure): only the task check can see the fall
    assert not evaluate_at(guard, model, 4, reward_accuracy=0.6).should_training_stop  # the best so far
    with torch.no_grad():
        model.weight.fill_(2.0)
    # 0.15 below the start, but 3 flipped answers of 20 are not significant (McNemar p = 0.25)
    assert not evaluate_at(guard, model, 8, reward_accuracy=0.7).should_training_stop
    with torch.no_grad():
        model.weight.fill_(3.0)
    # 8 flipped (p = 0.008): the check fails, but one failing check may be a dip
    assert not evaluate_at(guard, model, 12, reward_accuracy=0.9).should_training_stop and guard.fired is None
    assert guard.history[-1]["task_failing"]["reason"] == "task_accuracy"
    assert evaluate_at(guard, model, 16, reward_accuracy=0.9).should_training_stop  # the second in a row
    assert guard.fired["reason"] == "task_accuracy" and guard.fired["step"] == 16
    assert guard.fired["failing_checks"] == 2 and not guard.fired["at_end"]
    assert guard.fired["task_accuracy_start"] == 0.60 and guard.fired["task_accuracy"] == 0.15
    assert guard.fired["p_value"] == pytest.approx(2 * 0.5 ** 9)
    restored = guard.restore_best(model)
    assert restored == {"step": 4, "heldout_task_accuracy": 0.70}  # not step 12's best reward accuracy
    assert model.weight.tolist() == [[1.0, 1.0]]


def test_guard_stays_silent_while_the_task_accuracy_holds():
    import torch
    from transformers import TrainerControl, TrainerState

    from medtune.train.dpo import CollapseGuard

    model = torch.nn.Linear(2, 1)
    # 0.50 -> 0.45 (one answer: within the threshold) -> 0.55
    guard = CollapseGuard(DPOSettings(task_drop_threshold=0.05), 4, check=ScriptedCheck(range(10), range(9), range(11)))
    guard.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    assert not evaluate_at(guard, model, 4).should_training_stop
    assert not evaluate_at(guard, model, 8).should_training_stop
    assert guard.fired is None and [h["task_accuracy"] for h in guard.history] == [0.45, 0.55]


def test_guard_lets_a_dip_recover_but_fires_on_a_failing_last_check():
    import torch
    from transformers import TrainerControl, TrainerState

    from medtune.train.dpo import CollapseGuard

    model = torch.nn.Linear(2, 1)
    # 0.60 -> 0.20 (fails) -> 0.60 (recovered) -> 0.15 (fails, and training ends there)
    guard = CollapseGuard(DPOSettings(), 4, check=ScriptedCheck(range(12), range(4), range(12), range(3)))
    guard.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    for step in (4, 8, 12):
        assert not evaluate_at(guard, model, step).should_training_stop
    assert guard.fired is None and [bool(h["task_failing"]) for h in guard.history] == [True, False, True]
    guard.final_check()  # no later check to recover in
    assert guard.fired["reason"] == "task_accuracy" and guard.fired["step"] == 12 and guard.fired["at_end"]
    assert guard.restore_best(model)["step"] == 0  # ties with step 8 keep the earlier step
    # with patience 1 the first dip stops DPO, as before
    eager = CollapseGuard(DPOSettings(task_check_patience=1), 4, check=ScriptedCheck(range(12), range(4)))
    eager.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    assert evaluate_at(eager, model, 4).should_training_stop and eager.fired["step"] == 4


def test_guard_fires_when_the_model_gives_one_label_to_every_prompt():
    # numeric_classification on the GPU: every loss answered one label to all test items while the
    # held-out accuracy rose; the best weights must not be the collapsed ones, however accurate
    import torch
    from transformers import TrainerControl, TrainerState

    from medtune.train.dpo import CollapseGuard, one_label

    labels = TEXT.labels["label"]
    varied = [labels[(i + 1) % 3] if i < 15 else labels[i % 3] for i in range(20)]  # 5 of 20 right: 0.25
    collapsed = [labels[0]] * 20  # right for the 7 prompts whose reference is labels[0]: 0.35
    model = torch.nn.Linear(2, 1)
    guard = CollapseGuard(DPOSettings(), 4, check=LabelledCheck(varied, collapsed, collapsed))
    guard.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert not evaluate_at(guard, model, 4).should_training_stop
    assert evaluate_at(guard, model, 8).should_training_stop
    fired = guard.fired
    assert fired["reason"] == "one_label" and fired["label"] == labels[0] and fired["head"] == "label"
    assert fired["share"] == 1.0 and fired["reference_share"] == 0.35 and fired["task_accuracy"] == 0.35
    assert guard.restore_best(model) == {"step": 0, "heldout_task_accuracy": 0.25}
    assert torch.equal(model.weight, start)  # the starting weights, not the collapsed ones
    # not a collapse: the references are that uniform too, or the model answered so before DPO
    uniform = [{"gold": labels[0], "pred": labels[0]}] * 19 + [{"gold": labels[1], "pred": labels[0]}]
    assert one_label(TEXT, uniform) is None
    already = CollapseGuard(DPOSettings(), 4, check=LabelledCheck(collapsed, collapsed, collapsed))
    already.on_train_begin(None, TrainerState(), TrainerControl(), model=model)
    evaluate_at(already, model, 4), evaluate_at(already, model, 8)
    assert already.fired is None and already.start_one_label["label"] == labels[0]


def test_task_check_answers_only_prompts_dpo_does_not_train_on(tiny_model):
    from medtune.train.dpo import task_check

    _, tokenizer, _ = load_model(tiny_model, "cpu")
    pairs = constant_preference_pairs(40)
    exs = examples_of(pairs)
    heldout, train = pairs[:5], pairs[5:30]  # the last 10 examples gave no pair at all
    check, info = task_check(TEXT, tokenizer, exs, heldout, train, DPOSettings(), CPU)
    assert check is None and info["active"] is False and info["prompts"] == 15 and "fewer than 16" in info["reason"]
    # one more example outside the training pairs makes 16: the held-out prompts first, then the unpaired ones
    check, info = task_check(TEXT, tokenizer, exs, heldout, pairs[5:29], DPOSettings(), CPU)
    assert info == {"active": True, "prompts": 16, "from_heldout_pairs": 5}
    assert [ex["id"] for ex in check.examples] == [f"e{i}" for i in [0, 1, 2, 3, 4, 29, *range(30, 40)]]
    check, info = task_check(TEXT, tokenizer, exs, pairs[:20], pairs[20:], DPOSettings(task_check_prompts=18), CPU)
    assert info == {"active": True, "prompts": 18, "from_heldout_pairs": 18}
    # a training pair without its example: any example might be trained on, so only held-out prompts count
    unnamed = [{**p, "example_id": None} for p in pairs[5:29]]
    check, info = task_check(TEXT, tokenizer, exs, heldout, unnamed, DPOSettings(), CPU)
    assert check is None and info["prompts"] == 5
    check, info = task_check(TEXT, tokenizer, exs, pairs[:20], pairs[20:], DPOSettings(task_check_prompts=0), CPU)
    assert check is None and info["reason"] == "off"
    assert task_check(TEXT, tokenizer, None, pairs, [], DPOSettings(), CPU)[0] is None


def answers_as_before(model, tokenizer, exs):
    """The text task, but an answer is correct when it is what ``model`` answers now, and those answers."""
    import dataclasses

    from medtune.generate import generate

    outputs = generate(model, tokenizer, [TEXT.messages(e) for e in exs], TEXT.max_new_tokens, desc=None)
    before = {ex["id"]: out[0] for ex, out in zip(exs, outputs)}
    task = dataclasses.replace(TEXT, score=lambda ex, out: {"correct": out == before[ex["id"]], "parse_failed": False})
    return task, before


def test_task_check_end_to_end_restores_the_starting_answers(tiny_model, tmp_path):
    # a task that counts an answer correct when it is what the model said before DPO: full fine-tuning
    # at lr 0.1 changes the answers, the task check fires (the log-prob guard is set out of reach),
    # and the saved model answers exactly as before DPO
    from medtune.generate import generate

    pairs = constant_preference_pairs(100)
    exs = examples_of(pairs)
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    task, before = answers_as_before(model, tokenizer, exs)
    settings = DPOSettings(max_steps=12, batch_size=4, learning_rate=0.1, max_length=2048, heldout_fraction=0.2,
                           eval_steps=2, save_steps=100, collapse_threshold=1000.0)
    summary, _ = train_dpo(model, tokenizer, str(tiny_model), tiny_model, "full", task, pairs, settings,
                           tmp_path / "dpo", CPU, 0, examples=exs)
    assert summary["task_check"] == {"active": True, "prompts": 20, "from_heldout_pairs": 20, "accuracy_start": 1.0}
    collapse = summary["collapse"]
    assert collapse["fired"] and collapse["reason"] == "task_accuracy" and summary["steps"] < 12
    assert collapse["restored"] == {"step": 0, "heldout_task_accuracy": 1.0}
    saved, _, _ = load_model(tmp_path / "dpo" / "model", "cpu")
    after = generate(saved, tokenizer, [TEXT.messages(e) for e in exs[:8]], TEXT.max_new_tokens, desc=None)
    assert [a[0] for a in after] == [before[ex["id"]] for ex in exs[:8]]


def test_guard_state_survives_a_resume(tmp_path):
    """The guard's state goes into each checkpoint; a new guard resumed from it fires against the answers
    before DPO and restores the best weights seen before the interruption."""
    import types

    import torch
    from transformers import TrainerControl, TrainerState

    from medtune.train.dpo import CollapseGuard

    model = torch.nn.Linear(2, 1)
    settings = DPOSettings(task_drop_threshold=0.05, collapse_threshold=0.5, beta=0.1)
    args = types.SimpleNamespace(output_dir=str(tmp_path))
    first = CollapseGuard(settings, 4, check=ScriptedCheck(range(12), range(14), range(4)))  # 0.60, 0.70, 0.20
    first.on_train_begin(args, TrainerState(), TrainerControl(), model=model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    evaluate_at(first, model, 4)  # the best
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not evaluate_at(first, model, 8).should_training_stop  # the first failing check
    state = TrainerState()
    state.global_step = 8
    (tmp_path / "checkpoint-8").mkdir()
    first.on_save(args, state, TrainerControl())

    # the run dies; Trainer reloads checkpoint-8's weights and state into a fresh process
    second = CollapseGuard(settings, 4, check=ScriptedCheck(range(3)))  # 0.15: only the resumed run answers
    second.on_train_begin(args, state, TrainerControl(), model=model)
    assert [h["step"] for h in second.history] == [4, 8] and second.task_start == first.task_start
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert evaluate_at(second, model, 12).should_training_stop  # the second failing check in a row, across the resume
    assert second.fired["task_accuracy_start"] == 0.60 and second.fired["task_accuracy"] == 0.15
    assert second.fired["failing_checks"] == 2
    assert second.restore_best(model) == {"step": 4, "heldout_task_accuracy": 0.70}
    assert model.weight.tolist() == [[1.0, 1.0]]

    # a checkpoint without the guard's state (a kill between Trainer's save and the guard's): log-prob check only
    third = CollapseGuard(settings, 4, check=ScriptedCheck())
    state.global_step = 4
    (tmp_path / "checkpoint-4").mkdir()
    third.on_train_begin(args, state, TrainerControl(), model=model)
    assert third.task_start is None and third.history == []


@pytest.mark.parametrize("precompute", ["never", "always"])
def test_an_interrupted_dpo_run_resumes_with_its_guard_history(tiny_model, tmp_path, monkeypatch, precompute):
    import medtune.train.dpo as dpo
    from medtune.train.common import RichProgress

    class Interrupt(RichProgress):
        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if state.global_step == 5:  # after checkpoint-4 was written
                raise KeyboardInterrupt

    pairs = constant_preference_pairs(100)
    exs = examples_of(pairs)
    model, tokenizer, _ = load_model(tiny_model, "cpu")
    task, _ = answers_as_before(model, tokenizer, exs)
    settings = DPOSettings(max_steps=8, batch_size=4, learning_rate=2e-3, max_length=2048, heldout_fraction=0.2,
                           eval_steps=2, save_steps=4, precompute_reference=precompute)

    def run(name):
        fresh, _, _ = load_model(tiny_model, "cpu")
        return train_dpo(fresh, tokenizer, str(tiny_model), tiny_model, "lora", task, pairs, settings,
                         tmp_path / name, CPU, 0, examples=exs)[0]

    whole = run("whole")
    with monkeypatch.context() as patch:
        patch.setattr(dpo, "RichProgress", Interrupt)
        with pytest.raises(KeyboardInterrupt):
            run("resumed")
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-4" / dpo.GUARD_STATE_FILE).is_file()
    resumed = run("resumed")
    assert resumed["task_check"]["accuracy_start"] == whole["task_check"]["accuracy_start"] == 1.0
    assert [h["step"] for h in resumed["heldout"]] == [2, 4, 6, 8]
    assert resumed["heldout"][:2] == whole["heldout"][:2]  # kept from before the interruption
    # and the run goes on as if never stopped, its reference log-probs computed again from the SFT model
    assert resumed["reference_precomputed"] == whole["reference_precomputed"] == (precompute == "always")
    for after, before in zip(resumed["heldout"][2:], whole["heldout"][2:]):
        assert after["rewards/margins"] == pytest.approx(before["rewards/margins"], rel=1e-3, abs=1e-5)
        assert after["task_accuracy"] == before["task_accuracy"]
