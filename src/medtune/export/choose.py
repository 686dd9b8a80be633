"""Which stage to ship, and where its model is: ``best`` is the stage the task's verdict picks."""

from __future__ import annotations

from pathlib import Path

from ..errors import MedtuneError
from ..evaluate.stats import step_outcome
from ..io import read_json
from ..rundir import STAGES, TRAINED, is_done

CHOICES = ("best", *STAGES)


def read_results(run_dir: Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise MedtuneError(f"{run_dir}: no results.json; finish the study (medtune study) or rebuild it "
                           f"(medtune report {run_dir}) first")
    results = read_json(path)
    if results.get("schema_version", 0) < 3:
        raise MedtuneError(f"{path}: written by an older medtune (schema {results.get('schema_version')}); "
                           f"rebuild it with: medtune report {run_dir}")
    return results


def task_results(results: dict, task: str, path: Path) -> dict:
    if task not in results["tasks"]:
        raise MedtuneError(f"{path}: the study has no task {task!r} (it has {', '.join(results['tasks'])})")
    return results["tasks"][task]


def best_stage(task_results: dict) -> tuple[str, str]:
    """The stage the verdict picks, and why. A later stage is shipped only where it was shown to help: an
    inconclusive DPO step leaves SFT where SFT over base helps, and the base model where nothing did."""
    verdict = task_results["verdict"]
    kind = verdict["verdict"]
    if kind == "dpo_helps":
        return "dpo", "the verdict is dpo_helps: DPO improved on SFT"
    if kind == "sft_sufficient":
        return "sft", "the verdict is sft_sufficient: DPO did not improve on SFT"
    if kind == "no_gain":
        return "base", "the verdict is no_gain: neither SFT nor DPO improved on the base model"
    steps = task_results.get("comparisons", {}).get("sft_vs_base", {})
    findings = {m: steps[m] for m in task_results["primary_metrics"] if m in steps and "finding" in steps[m]}
    if findings and step_outcome(findings) == "helps":
        return "sft", "the verdict is inconclusive on DPO, and SFT improved on the base model"
    raise MedtuneError(f"the verdict is inconclusive ({verdict.get('kind', 'open')}) and SFT was not shown to "
                       "improve on the base model, so there is no best stage to pick; name one with "
                       "--stage base, sft or dpo")


def stage_model(run_dir: Path, task: str, stage: str, base_model: str) -> str | Path:
    """The model a stage evaluated: the base model's name or folder, or the stage's saved ``model/``."""
    if stage == "base":
        return base_model
    folder = Path(run_dir) / task / stage
    if not is_done(folder, TRAINED) or not (folder / "model").is_dir():
        raise MedtuneError(f"{folder}: the {stage} stage has no trained model; run it first "
                           f"(medtune {stage} --task {task} --run-dir {run_dir})")
    return folder / "model"


def pick(run_dir: Path, task: str, stage: str) -> tuple[str, str | Path, str, dict]:
    """(stage, its model, why it was chosen, the run's results)."""
    if stage not in CHOICES:
        raise MedtuneError(f"--stage must be one of {', '.join(CHOICES)}, got {stage!r}")
    results = read_results(run_dir)
    found = task_results(results, task, Path(run_dir) / "results.json")
    why = "named with --stage"
    if stage == "best":
        stage, why = best_stage(found)
    if stage not in found["stages"] or "metrics" not in found["stages"][stage]:
        raise MedtuneError(f"{run_dir}: the {stage} stage of {task} was not evaluated; the model card needs its "
                           "metrics (finish the study first)")
    return stage, stage_model(run_dir, task, stage, results["config"]["model"]), why, results
