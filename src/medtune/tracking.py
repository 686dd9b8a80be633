"""Experiment tracking (``tracking:`` in the config, docs/tracking.md): TensorBoard event files, an MLflow store.

Training curves: TRL's trainers log through transformers' own TensorBoardCallback and MLflowCallback
(``report_to``). They are configured by environment variables, so ``tracked`` sets those around one stage's
training and restores them after; it also holds that stage's MLflow run open for the whole block.
Results: ``log_results`` writes each task's stage metrics with their confidence intervals, the paired
comparisons and the verdict, after results.json is written.

One run per stage and one results run per task: a fresh training or a rebuild of the results replaces what
an earlier one logged (TensorBoard: its event files are removed; MLflow: its runs are deleted), and a
resumed training carries on in the run it started. A run is recognised by its task and stage tags, and in
a store shared with other run directories also by its run directory's.

MLflow collects usage telemetry unless told not to; it decides when ``mlflow`` is imported and again at each
call, so medtune imports it only inside an environment that switches telemetry off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .errors import MedtuneError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracker -> the module it needs
# read by mlflow.telemetry (MLFLOW_DISABLE_TELEMETRY, and the DO_NOT_TRACK convention), at import and per call
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
EVENT_FILES = "events.out.tfevents.*"
STAGE_TAG, TASK_TAG, RUN_DIR_TAG = "medtune.stage", "medtune.task", "medtune.run_dir"
RESULTS = "results"  # the results run's stage tag, and its TensorBoard folder
TAG_LIMIT = 8000  # characters in an MLflow tag's value
DEFAULT_EXPERIMENT = "medtune"  # runs of different run directories are told apart by their tags


# ------------------------------------------------------------------ settings

def check_installed(trackers: list[str]) -> None:
    """Each tracker's package is importable; else one clear error naming the setting."""
    for tracker in trackers:
        if importlib.util.find_spec(PACKAGES[tracker]) is None:
            raise MedtuneError(f"tracking.report_to names {tracker}, but the {PACKAGES[tracker]} package is not "
                               f"installed: pip install 'medtune[track]' (or pip install {PACKAGES[tracker]}), "
                               "or leave it out of tracking.report_to")


def tracking_dir(cfg) -> Path:
    return Path(cfg.tracking.dir).expanduser() if cfg.tracking.dir else Path(cfg.run_dir) / "tracking"


def mlflow_uri(cfg) -> str:
    """The configured MLflow store, else a file store inside the tracking folder (never a server by default:
    a user's MLFLOW_TRACKING_URI is not read)."""
    if cfg.tracking.mlflow_tracking_uri:
        return cfg.tracking.mlflow_tracking_uri
    return (tracking_dir(cfg) / "mlruns").expanduser().resolve().as_uri()


def own_store(cfg) -> bool:
    """Whether MLflow logs to the file store inside the run directory, which holds this run's runs only
    (also after the folder is moved or copied)."""
    return cfg.tracking.mlflow_tracking_uri is None and cfg.tracking.dir is None


def experiment_name(cfg) -> str:
    return cfg.tracking.experiment or DEFAULT_EXPERIMENT


def run_tags(cfg, task: str, stage: str) -> dict[str, str]:
    """What identifies a medtune run in an MLflow experiment that may hold other studies' runs."""
    return {RUN_DIR_TAG: str(Path(cfg.run_dir).expanduser().resolve()), TASK_TAG: task, STAGE_TAG: stage}


def mlflow_env(uri: str) -> dict[str, str | None]:
    """The environment every use of mlflow runs in: no telemetry, and the file store allowed where it is the
    store (MLflow 3 refuses it otherwise; a database store needs packages mlflow-skinny lacks)."""
    file_store = urlparse(uri).scheme in ("", "file")
    return {**NO_TELEMETRY, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true" if file_store else None}


@contextlib.contextmanager
def environment(values: dict[str, str | None]):
    """Set (or, for None, unset) these variables for the block; each is restored to what it was after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            set_variable(name, value)
        yield
    finally:
        for name, value in saved.items():
            set_variable(name, value)


def set_variable(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# ------------------------------------------------------------------ training

@dataclass(frozen=True)
class StageTracking:
    """Where one training stage's curves go: ``stage`` is sft, dpo, or dpo/round_K for an earlier round."""

    report_to: list[str]
    task: str
    stage: str
    tensorboard_dir: Path
    mlflow_uri: str
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)
    own_store: bool = True

    @property
    def run_name(self) -> str:
        return f"{self.task}/{self.stage}"


def for_stage(cfg, out_dir: Path) -> StageTracking | None:
    """The tracking of the stage trained into ``out_dir`` (RUN/<task>/<stage>), or None when it is off."""
    if not cfg.tracking.trackers():
        return None
    task, *stage = Path(out_dir).relative_to(Path(cfg.run_dir)).parts
    stage = "/".join(stage)
    return StageTracking(cfg.tracking.trackers(), task, stage, tracking_dir(cfg) / "tensorboard" / task / stage,
                         mlflow_uri(cfg), experiment_name(cfg), run_tags(cfg, task, stage), own_store(cfg))


@contextlib.contextmanager
def tracked(target: StageTracking | None, resuming: bool):
    """Around a stage's trainer, from before it is made (its callbacks read the environment then) to after its
    last log. ``resuming``: training carries on from a checkpoint, so its curves continue where they are;
    otherwise an earlier attempt's curves are removed."""
    if target is None:
        yield
        return
    check_installed(target.report_to)
    env: dict[str, str | None] = {}
    if "tensorboard" in target.report_to:
        if not resuming:
            remove_events(target.tensorboard_dir)
        env["TENSORBOARD_LOGGING_DIR"] = str(target.tensorboard_dir)
    if "mlflow" in target.report_to:
        env.update(mlflow_env(target.mlflow_uri))
        # the callback would start a run of its own, resume another, or copy every checkpoint into the store;
        # a resumed run keeps the parameters its first attempt logged (MLflow refuses to change one)
        env.update({"MLFLOW_RUN_ID": None, "MLFLOW_NESTED_RUN": None, "MLFLOW_TAGS": None,
                    "MLFLOW_EXPERIMENT_NAME": target.experiment, "HF_MLFLOW_LOG_ARTIFACTS": None,
                    "MLFLOW_MAX_LOG_PARAMS": "0" if resuming else None})
    with environment(env):
        if "mlflow" in target.report_to:
            with stage_run(target, resuming):
                yield
        else:
            yield


def remove_events(folder: Path) -> None:
    for path in Path(folder).glob(EVENT_FILES):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def stage_run(target: StageTracking, resuming: bool):
    """The stage's MLflow run, active for the block: MLflowCallback logs into an active run and leaves it
    open, so an evaluation after training has ended (train_dpo's, when a resumed run was already at its last
    step) is logged there too, and a failed training ends it as FAILED."""
    import mlflow

    with mlflow_errors(target.mlflow_uri, " before training started"):
        client = mlflow.MlflowClient(target.mlflow_uri)
        experiment = experiment_id(client, target.experiment)
        earlier = medtune_runs(client, experiment, target.tags, target.own_store)
        if resuming and earlier:
            run_id = earlier[0].info.run_id
        else:
            for run in earlier:  # an earlier attempt's curves describe weights that are being replaced
                client.delete_run(run.info.run_id)
            run_id = client.create_run(experiment, run_name=target.run_name, tags=target.tags).info.run_id
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None, log_system_metrics=False)
    try:
        yield
    except BaseException as exc:
        mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    mlflow.end_run()


def experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def medtune_runs(client, experiment: str, tags: dict[str, str], own: bool) -> list:
    """This run directory's runs of one task and stage, newest first (deleted ones are not searched). In a
    store shared with other run directories (``own`` False) the run directory's path tells them apart."""
    query = f"tags.`{TASK_TAG}` = '{tags[TASK_TAG]}' AND tags.`{STAGE_TAG}` = '{tags[STAGE_TAG]}'"
    found = client.search_runs([experiment], query, max_results=1000, order_by=["attributes.start_time DESC"])
    return [run for run in found if own or run.data.tags.get(RUN_DIR_TAG) == tags[RUN_DIR_TAG]]


# ------------------------------------------------------------------ results

def log_results(cfg, results: dict, results_path: Path) -> None:
    """Each task's results to the configured trackers, replacing what an earlier build logged."""
    trackers = cfg.tracking.trackers()
    if not trackers:
        return
    check_installed(trackers)
    if "tensorboard" in trackers:
        for task, result in results["tasks"].items():
            tensorboard_results(tracking_dir(cfg) / "tensorboard" / task / RESULTS, task, result)
    if "mlflow" in trackers:
        uri = mlflow_uri(cfg)
        with environment(mlflow_env(uri)), mlflow_errors(uri, f"; {results_path} is written, and `medtune report "
                                                               f"{cfg.run_dir}` logs the results again"):
            mlflow_results(cfg, uri, results, results_path)


@contextlib.contextmanager
def mlflow_errors(uri: str, after: str = ""):
    """A store that cannot be reached or written (a server down, a folder not writable) as one line naming
    the setting, instead of a traceback from inside mlflow."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        raise MedtuneError(f"tracking: MLflow at {uri} failed ({' '.join(str(exc).split())[:500]}){after} "
                           "(tracking.mlflow_tracking_uri names the store)") from None


def result_scalars(result: dict) -> dict[str, float]:
    """A task's numbers, named split/stage/metric (with .ci_low and .ci_high) and split/comparison/metric
    (.difference, its CI, .p_value and .p_holm), for the test split and the shifted one where present."""
    scalars = {}
    for split, part in splits(result):
        for stage, info in part.get("stages", {}).items():
            for metric, values in (info.get("metrics") or {}).items():
                for key, suffix in (("value", ""), ("ci_low", ".ci_low"), ("ci_high", ".ci_high")):
                    add_number(scalars, f"{split}/{stage}/{metric}{suffix}", values.get(key))
        for comparison, metrics in (part.get("comparisons") or {}).items():
            for metric, values in metrics.items():
                for key in ("difference", "ci_low", "ci_high", "p_value", "p_holm"):
                    add_number(scalars, f"{split}/{comparison}/{metric}.{key}", values.get(key))
    return scalars


def splits(result: dict) -> list[tuple[str, dict]]:
    return [("test", result)] + ([("shifted", result["shifted"])] if result.get("shifted") else [])


def add_number(scalars: dict, name: str, value) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        scalars[name] = float(value)


def verdict_line(result: dict) -> str:
    verdict = result.get("verdict") or {}
    return (f"{verdict.get('verdict', 'none')} (decided on the {verdict.get('split', 'test')} split): "
            f"{verdict.get('reason', '')}").strip()


def summary_text(task: str, result: dict) -> str:
    """The verdict, stage metrics and comparisons of one task as Markdown (TensorBoard's text tab, MLflow's
    run description)."""
    lines = [f"## {task}", "", f"**Verdict:** {verdict_line(result)}", "",
             "| split | stage | metric | value | CI |", "|---|---|---|---|---|"]
    for split, part in splits(result):
        for stage, info in part.get("stages", {}).items():
            for metric, v in (info.get("metrics") or {}).items():
                lines.append(f"| {split} | {stage} | {metric} | {number(v.get('value'))} | {interval(v)} |")
    lines += ["", "| split | comparison | metric | difference | CI | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for split, part in splits(result):
        for comparison, metrics in (part.get("comparisons") or {}).items():
            for metric, v in metrics.items():
                lines.append(f"| {split} | {comparison} | {metric} | {number(v.get('difference'))} | {interval(v)} "
                             f"| {number(v.get('p_value'))} | {number(v.get('p_holm'))} |")
    return "\n".join(lines)


def number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "–"


def interval(values: dict) -> str:
    if values.get("ci_low") is None:
        return "–"
    return f"[{number(values['ci_low'])}, {number(values.get('ci_high'))}]"


def tensorboard_results(folder: Path, task: str, result: dict) -> None:
    """Scalars at step 0 and the summary as text, in a folder of their own that a rebuild empties first."""
    from torch.utils.tensorboard import SummaryWriter

    remove_events(folder)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for name, value in result_scalars(result).items():
            writer.add_scalar(name, value, 0)
        writer.add_text("verdict", verdict_line(result), 0)
        writer.add_text("summary", summary_text(task, result), 0)
    finally:
        writer.close()


def result_params(cfg, task: str) -> dict[str, str]:
    """The task's settings, flattened (sft.learning_rate ...), as MLflow parameters."""
    settings = cfg.for_task(task).model_dump(mode="json", exclude={"per_task", "tasks", "run_dir", "tracking"})
    return {key: str(value) for key, value in flatten(settings).items()}


def flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, name + ".") if isinstance(value, dict) and value else {name: value})
    return flat


def mlflow_results(cfg, uri: str, results: dict, results_path: Path) -> None:
    """One finished run per task: metrics, the task's settings as parameters, the verdict as tags and as the
    run's description, summary.md and results.json as artifacts. An earlier build's run is deleted."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(uri)
    experiment = experiment_id(client, experiment_name(cfg))
    now = int(time.time() * 1000)
    for task, result in results["tasks"].items():
        tags = run_tags(cfg, task, RESULTS)
        for run in medtune_runs(client, experiment, tags, own_store(cfg)):
            client.delete_run(run.info.run_id)
        verdict, summary = result.get("verdict") or {}, summary_text(task, result)
        run_id = client.create_run(experiment, run_name=f"{task}/{RESULTS}", tags={
            **tags, "verdict": str(verdict.get("verdict")), "verdict.split": str(verdict.get("split", "test")),
            "verdict.reason": str(verdict.get("reason", ""))[:TAG_LIMIT],
            "mlflow.note.content": summary[:TAG_LIMIT]}).info.run_id
        metrics = [Metric(name, value, now, 0) for name, value in result_scalars(result).items()]
        params = [Param(name, value) for name, value in result_params(cfg, task).items()]
        for start in range(0, max(len(metrics), len(params)), 100):  # MLflow takes 100 parameters per call
            client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100])
        client.log_text(run_id, summary, "summary.md")
        client.log_artifact(run_id, str(results_path))
        client.set_terminated(run_id)
