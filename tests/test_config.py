"""Config validation: presets, precedence, and clear messages for mistakes."""

import pytest

from medtune.config import PRESETS, load_config
from medtune.errors import MedtuneError


def test_quick_preset_is_the_default(tmp_path):
    cfg = load_config(None)
    assert cfg.preset == "quick"
    assert cfg.data.test_limit == PRESETS["quick"]["data"]["test_limit"]
    assert len(cfg.tasks) == 5


def test_full_preset_uses_whole_datasets():
    cfg = load_config(None, {"preset": "full"})
    assert cfg.data.train_limit is None and cfg.data.test_limit is None


def test_yaml_overrides_preset_and_flags_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sft:\n  learning_rate: 0.01\nmodel: from-yaml\n")
    cfg = load_config(path, {"model": "from-flag"})
    assert cfg.sft.learning_rate == 0.01
    assert cfg.sft.batch_size == PRESETS["quick"]["sft"]["batch_size"]
    assert cfg.model == "from-flag"


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sft:\n  learnig_rate: 0.01\n")
    with pytest.raises(MedtuneError) as err:
        load_config(path)
    assert "sft.learnig_rate" in str(err.value) and "unknown key" in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("sft:\n  method: half\n", "sft.method"),
    ("dpo:\n  loss_type: magic\n", "dpo.loss_type: Input should be 'sigmoid'"),
    ("tasks: [triage, radiology]\n", "radiology"),
    ("sft:\n  batch_size: 0\n", "sft.batch_size"),
    ("preset: medium\n", "preset"),
    ("- just\n- a list\n", "mapping"),
    ("sft: [unclosed\n", "not valid YAML"),
])
def test_bad_values_are_explained(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(MedtuneError) as err:
        load_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(MedtuneError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_retired_keys_are_left_out_of_a_users_file_and_of_a_saved_run(tmp_path, capsys):
    import yaml

    from medtune.config import dump_config
    from medtune.study import check_run_dir

    user = tmp_path / "old.yaml"
    user.write_text(f"run_dir: {tmp_path / 'run'}\nsft: {{share_prefix: true}}\n")
    cfg = load_config(user)
    assert "sft.share_prefix is retired" in capsys.readouterr().err  # the console writes to stderr
    saved = yaml.safe_load(dump_config(cfg))
    saved["dpo"]["share_prompt"] = True  # as an earlier version wrote it
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    check_run_dir(cfg)  # the same configuration: no refusal
    saved["sft"]["max_steps"] += 1
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(MedtuneError, match="differs in: sft"):
        check_run_dir(cfg)


def test_per_task_settings_change_only_their_task(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sft: {max_steps: 30}\nper_task: {summarization: {sft: {max_steps: 8, batch_size: 4}}}\n")
    cfg = load_config(path)
    assert (cfg.for_task("summarization").sft.max_steps, cfg.for_task("summarization").sft.batch_size) == (8, 4)
    assert cfg.for_task("triage").sft.max_steps == 30 and cfg.for_task("triage") is cfg
    assert cfg.for_task("summarization").sft.learning_rate == cfg.sft.learning_rate  # the rest is inherited


@pytest.mark.parametrize("text, expected", [
    ("per_task: {summ: {sft: {max_steps: 8}}}", "per_task names 'summ'"),
    ("per_task: {triage: {stats: {alpha: 0.1}}}", "may set the sections"),
    ("per_task: {triage: {sft: {max_steps: 0}}}", "per_task.triage: sft.max_steps: Value error, 0 steps"),
    ("stats: {min_effect: {macro_f1: 0}}", "min_effect must be above 0"),
])
def test_bad_per_task_and_min_effect_settings_are_named(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(MedtuneError, match=expected.replace("(", r"\(")):
        load_config(path)


def test_a_size_you_set_yourself_holds_for_every_task(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {test_limit: 10}\nsft: {max_steps: 3}\n")
    summarization = load_config(path).for_task("summarization")
    assert summarization.data.test_limit == 10 and summarization.sft.max_steps == 3
    assert summarization.sft.batch_size == PRESETS["quick"]["per_task"]["summarization"]["sft"]["batch_size"]
    assert load_config().for_task("summarization").data.test_limit == 40  # the preset's, where you set none
