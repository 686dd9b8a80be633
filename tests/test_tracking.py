"""Experiment tracking (docs/tracking.md): a tiny study with TensorBoard and MLflow on, read back with each
tool's own reader; idempotent rebuilds and retraining; the environment left as found; no network; and the
settings' errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtune.cli import app
from medtune.config import dump_config, load_config
from medtune.errors import MedtuneError
from conftest import tiny_study_config
from test_reliability import attempts_of, hub_free_env

TASK = "text_classification"
SFT_STEPS, DPO_STEPS = 3, 2  # conftest.tiny_study_config's max_steps
# mlflow's telemetry stays off by itself under pytest and CI (mlflow.telemetry.utils): the study runs without
# these markers, so that only medtune's own switch keeps it off
CI_MARKERS = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TRAVIS",
              "CIRCLECI", "TF_BUILD", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}


def tracked_config(folder: Path, model: Path, report_to: str = "[tensorboard, mlflow]") -> Path:
    """conftest's tiny study on one task, with tracking on."""
    path = folder / "config.yaml"
    path.write_text(tiny_study_config(model, folder / "run", test_limit=10, eval_batch=8)
                    + f"tasks: [{TASK}]\ntracking: {{report_to: {report_to}}}\n")
    return path


def tracking_env() -> dict:
    """The variables medtune sets around tracking (the CLI sets others of its own once per command)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(("MLFLOW_", "HF_MLFLOW_", "TENSORBOARD_")) or k == "DO_NOT_TRACK"}


def telemetry_on_env() -> dict:
    return {k: v for k, v in hub_free_env().items() if k not in CI_MARKERS}


@pytest.fixture(scope="module")
def study(tiny_model, tmp_path_factory) -> dict:
    """One tracked study, run by the medtune command in a process whose network connections are recorded."""
    folder = tmp_path_factory.mktemp("tracked")
    config = tracked_config(folder, tiny_model)
    attempts = attempts_of(folder, "from medtune.cli import main; main()", "medtune", "study", "--config",
                           str(config), env=telemetry_on_env())
    run = folder / "run"
    return {"config": config, "run": run, "attempts": attempts,
            "results": json.loads((run / "results.json").read_text())}


def test_a_tracked_study_makes_no_network_connection(study, tmp_path):
    # positive control: in this environment mlflow's telemetry does reach out when nothing turns it off
    probe = ("import os, tempfile, time\nfrom pathlib import Path\nos.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'\n"
             "import mlflow\nmlflow.MlflowClient(Path(tempfile.mkdtemp()).as_uri()).create_experiment('probe')\n"
             "for _ in range(100):\n    time.sleep(0.05)\n    if attempts: break")
    assert any("mlflow" in where for _, where in attempts_of(tmp_path, probe, env=telemetry_on_env()))
    assert study["attempts"] == []
    assert (study["run"] / "tracking" / "mlruns").is_dir()


# ------------------------------------------------------------------ TensorBoard

def events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator, tag: str) -> list[int]:
    return [e.step for e in accumulator.Scalars(tag)]


def text(accumulator, tag: str) -> str:
    return accumulator.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()


def test_tensorboard_has_the_curves_the_metrics_and_the_verdict(study):
    board = study["run"] / "tracking" / "tensorboard" / TASK
    sft, dpo, results = events(board / "sft"), events(board / "dpo"), events(board / "results")
    assert steps(sft, "train/loss") == list(range(1, SFT_STEPS + 1))
    assert steps(dpo, "train/loss") == list(range(1, DPO_STEPS + 1))
    assert "train/rewards/margins" in dpo.Tags()["scalars"]
    # the held-out pairs' preference metrics, evaluated at the last step
    for tag in ("eval/rewards/accuracies", "eval/rewards/margins", "eval/logps/chosen", "eval/loss"):
        assert steps(dpo, tag) == [DPO_STEPS], tag
    task = study["results"]["tasks"][TASK]
    scalars = results.Tags()["scalars"]
    for stage in ("base", "sft", "dpo"):
        for metric in task["primary_metrics"]:
            saved = task["stages"][stage]["metrics"][metric]
            for key, suffix in (("value", ""), ("ci_low", ".ci_low"), ("ci_high", ".ci_high")):
                assert results.Scalars(f"test/{stage}/{metric}{suffix}")[0].value == pytest.approx(saved[key])
            assert f"shifted/{stage}/{metric}" in scalars  # the shifted split's too
    for comparison in ("sft_vs_base", "dpo_vs_sft", "dpo_vs_base"):
        for metric in task["primary_metrics"]:
            saved = task["comparisons"][comparison][metric]
            for key in ("difference", "p_value", "p_holm"):
                assert results.Scalars(f"test/{comparison}/{metric}.{key}")[0].value == pytest.approx(saved[key])
    verdict = text(results, "verdict")
    assert verdict.startswith(task["verdict"]["verdict"]) and task["verdict"]["reason"] in verdict
    summary = text(results, "summary")
    assert "| test | sft |" in summary and "| shifted | dpo_vs_sft |" in summary


# ------------------------------------------------------------------ MLflow

@pytest.fixture()
def store(study, monkeypatch):
    """The study's MLflow file store, read with mlflow's own client."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when allowed
    from mlflow import MlflowClient

    client = MlflowClient((study["run"] / "tracking" / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("medtune")
    assert experiment is not None
    return client, experiment.experiment_id


def runs_named(client, experiment: str, name: str, view: str = "active_only") -> list:
    from mlflow.entities import ViewType

    found = client.search_runs([experiment], run_view_type=ViewType.from_string(view))
    return [run for run in found if run.info.run_name == name]


def history(client, run, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def test_mlflow_has_the_curves_the_metrics_the_verdict_and_results_json(study, store, tmp_path):
    client, experiment = store
    [sft] = runs_named(client, experiment, f"{TASK}/sft")
    [dpo] = runs_named(client, experiment, f"{TASK}/dpo")
    [result] = runs_named(client, experiment, f"{TASK}/results")
    assert all(r.info.status == "FINISHED" for r in (sft, dpo, result))
    assert [s for s, _ in history(client, sft, "loss")] == list(range(1, SFT_STEPS + 1))
    assert [s for s, _ in history(client, dpo, "loss")] == list(range(1, DPO_STEPS + 1))
    train_log = json.loads((study["run"] / TASK / "sft" / "train_log.json").read_text())
    assert history(client, sft, "loss")[-1][1] == pytest.approx(
        [h["loss"] for h in train_log["log_history"] if "loss" in h][-1])
    for key in ("eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen"):
        assert [s for s, _ in history(client, dpo, key)] == [DPO_STEPS], key
    assert sft.data.tags["medtune.stage"] == "sft" and dpo.data.tags["medtune.task"] == TASK
    assert sft.data.params["learning_rate"] == "0.001"  # transformers' own parameters on a fresh run

    task = study["results"]["tasks"][TASK]
    metric = task["primary_metrics"][0]
    for stage in ("base", "sft", "dpo"):
        saved = task["stages"][stage]["metrics"][metric]
        assert result.data.metrics[f"test/{stage}/{metric}"] == pytest.approx(saved["value"])
        assert result.data.metrics[f"test/{stage}/{metric}.ci_low"] == pytest.approx(saved["ci_low"])
        assert result.data.metrics[f"shifted/{stage}/{metric}"] == pytest.approx(
            task["shifted"]["stages"][stage]["metrics"][metric]["value"])
    assert result.data.metrics[f"test/dpo_vs_sft/{metric}.p_holm"] == pytest.approx(
        task["comparisons"]["dpo_vs_sft"][metric]["p_holm"])
    assert result.data.tags["verdict"] == task["verdict"]["verdict"]
    assert result.data.tags["verdict.reason"] == task["verdict"]["reason"]
    assert result.data.params["sft.max_steps"] == str(SFT_STEPS) and result.data.params["model"]
    assert {a.path for a in client.list_artifacts(result.info.run_id)} == {"results.json", "summary.md"}
    copy = client.download_artifacts(result.info.run_id, "results.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == study["results"]


def test_a_report_rebuild_replaces_the_results_run_and_leaves_no_state(study, store):
    import mlflow

    client, experiment = store
    before = runs_named(client, experiment, f"{TASK}/results")
    stages = {r.info.run_id for r in client.search_runs([experiment])} - {before[0].info.run_id}
    environ = tracking_env()
    result = CliRunner().invoke(app, ["report", str(study["run"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tracking_env() == environ and mlflow.active_run() is None
    [after] = runs_named(client, experiment, f"{TASK}/results")
    assert after.info.run_id != before[0].info.run_id
    deleted = runs_named(client, experiment, f"{TASK}/results", "deleted_only")
    assert before[0].info.run_id in {r.info.run_id for r in deleted}
    assert stages <= {r.info.run_id for r in client.search_runs([experiment])}  # the training runs stay
    assert len(list((study["run"] / "tracking" / "tensorboard" / TASK / "results").glob("events.out.*"))) == 1


def test_retraining_a_stage_replaces_its_curves(study, store):
    client, experiment = store
    [first] = runs_named(client, experiment, f"{TASK}/sft")
    result = CliRunner().invoke(app, ["sft", "--config", str(study["config"]), "--task", TASK, "--force"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [again] = runs_named(client, experiment, f"{TASK}/sft")
    assert again.info.run_id != first.info.run_id
    assert [s for s, _ in history(client, again, "loss")] == list(range(1, SFT_STEPS + 1))
    board = study["run"] / "tracking" / "tensorboard" / TASK / "sft"
    assert len(list(board.glob("events.out.*"))) == 1
    assert steps(events(board), "train/loss") == list(range(1, SFT_STEPS + 1))


# ------------------------------------------------------------------ the stage context, without training

def test_a_resumed_stage_continues_its_run_and_a_failed_one_is_marked(tmp_path, tiny_model, monkeypatch):
    import mlflow

    from medtune.tracking import for_stage, tracked

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://192.0.2.1:5000")  # a user's server: not used unless named
    monkeypatch.setenv("MLFLOW_RUN_ID", "someone-elses-run")
    cfg = load_config(tracked_config(tmp_path, tiny_model))
    target = for_stage(cfg, Path(cfg.run_dir) / TASK / "sft")
    assert target.run_name == f"{TASK}/sft" and target.mlflow_uri.startswith("file://")
    environ = tracking_env()
    with tracked(target, resuming=False):
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(target.tensorboard_dir)
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and "MLFLOW_RUN_ID" not in os.environ
        first = mlflow.active_run().info.run_id
        mlflow.log_metric("loss", 1.0, step=1)
        target.tensorboard_dir.mkdir(parents=True)
        (target.tensorboard_dir / "events.out.tfevents.1.old").write_text("")
    assert tracking_env() == environ and mlflow.active_run() is None
    with tracked(target, resuming=True):  # carries on where the checkpoint left it
        assert mlflow.active_run().info.run_id == first
        mlflow.log_metric("loss", 0.5, step=2)
    assert (target.tensorboard_dir / "events.out.tfevents.1.old").is_file()
    with pytest.raises(RuntimeError), tracked(target, resuming=False):  # a fresh start replaces it
        second = mlflow.active_run().info.run_id
        raise RuntimeError("training failed")
    assert tracking_env() == environ and mlflow.active_run() is None
    assert not list(target.tensorboard_dir.glob("events.out.*"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(target.mlflow_uri)
    assert [(m.step, m.value) for m in client.get_metric_history(first, "loss")] == [(1, 1.0), (2, 0.5)]
    assert client.get_run(first).info.lifecycle_stage == "deleted"
    assert client.get_run(second).info.status == "FAILED"


# ------------------------------------------------------------------ settings

@pytest.mark.parametrize("setting, expected", [
    ("{report_to: wandb}", "tracking.report_to: unknown tracker(s) ['wandb']"),
    ("{report_to: [tensorboard, tensorboard]}", "tracking.report_to: give each tracker once"),
    ("{report_to: []}", "tracking.report_to: give each tracker once"),
    ("{report_to: [none]}", "tracking.report_to: unknown tracker(s) ['none']"),
    ("{report_to: tensorboard, experiment: x}", "tracking: experiment set, but report_to does not name mlflow"),
    ("{mlflow_tracking_uri: 'http://x'}", "tracking: mlflow_tracking_uri set, but report_to does not name mlflow"),
    ("{report_to: mlflow, log_every: 2}", "tracking.log_every: unknown key"),
])
def test_bad_tracking_settings_are_named(tmp_path, setting, expected):
    path = tmp_path / "c.yaml"
    path.write_text(f"tracking: {setting}\n")
    with pytest.raises(MedtuneError) as caught:
        load_config(path)
    assert expected in str(caught.value)


def test_tracking_settings_parse():
    cfg = load_config(None, {"tracking": {"report_to": ["mlflow", "tensorboard"], "experiment": "e"}})
    assert cfg.tracking.trackers() == ["mlflow", "tensorboard"]
    assert load_config().tracking.trackers() == []
    assert load_config(None, {"tracking": {"report_to": False}}).tracking.trackers() == []  # YAML's off


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_a_tracker_that_is_not_installed_stops_the_study_before_it_starts(tiny_config, tracker, monkeypatch):
    from medtune.study import run_study

    cfg = load_config(tiny_config, {"tracking": {"report_to": tracker}})
    monkeypatch.setitem(sys.modules, tracker, None)  # as if the package were missing
    with pytest.raises(MedtuneError, match=f"tracking.report_to names {tracker}, but the {tracker} package is not "
                                           "installed"):
        run_study(cfg)
    assert not Path(cfg.run_dir).exists()


def test_turning_tracking_on_keeps_a_run_directory_usable(tiny_config):
    from medtune.study import check_run_dir

    cfg = load_config(tiny_config)
    Path(cfg.run_dir).mkdir()
    (Path(cfg.run_dir) / "config.yaml").write_text(dump_config(cfg))
    check_run_dir(load_config(tiny_config, {"tracking": {"report_to": "tensorboard"}}))
    with pytest.raises(MedtuneError, match="differs in: sft"):  # control: a setting that changes a stage
        check_run_dir(load_config(tiny_config, {"sft": {"learning_rate": 0.5}}))


def test_an_mlflow_server_that_cannot_be_reached_is_one_line(tmp_path, monkeypatch):
    from medtune.tracking import log_results

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would take minutes
    cfg = load_config(None, {"run_dir": str(tmp_path / "run"), "tracking": {
        "report_to": "mlflow", "mlflow_tracking_uri": "http://127.0.0.1:9"}})  # the discard port: refused
    with pytest.raises(MedtuneError, match=r"tracking: MLflow at http://127.0.0.1:9 failed \(.*Connection refused.*"
                                           r"`medtune report .*run` logs the results again"):
        log_results(cfg, {"tasks": {TASK: {}}}, tmp_path / "run" / "results.json")


def test_a_writer_opened_after_training_ended_is_closed(tmp_path):
    from types import SimpleNamespace

    from transformers.integrations import TensorBoardCallback

    from medtune.train.common import close_tensorboard

    callback = TensorBoardCallback()
    callback.logging_dir = str(tmp_path)
    state = SimpleNamespace(is_world_process_zero=True, global_step=2)
    callback.on_log(None, state, None, logs={"eval_loss": 0.5})  # an evaluation after on_train_end: a new writer
    assert callback.tb_writer is not None
    close_tensorboard(SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[callback]), args=None,
                                      state=state, control=None))
    assert callback.tb_writer is None
    assert steps(events(tmp_path), "eval/loss") == [2]
