"""The command line: one sub-command per stage, and `study` for the whole comparison."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .errors import MedtuneError, RankStopped
from .progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune a language model on a clinical task with SFT and DPO, and learn which one it needs.")

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (see configs/example.yaml)")
PresetOpt = typer.Option(None, "--preset", help="quick (the demo), standard (a CPU afternoon) or full "
                         "(whole datasets, a GPU); --dry-run shows the time each takes")
ModelOpt = typer.Option(None, "--model", "-m", help="'embedded' (default), a local HF model folder, or a hub id")
RunDirOpt = typer.Option(None, "--run-dir", "-o", help="run directory (default runs/demo)")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu or cuda")
TaskOpt = typer.Option(..., "--task", "-t", help="a bundled task id (see `medtune tasks`) or a task spec file")
ForceOpt = typer.Option(False, "--force", help="recompute even if this stage is already done")
RoundsOpt = typer.Option(None, "--rounds", help="iterative on-policy DPO: generate -> mine errors -> DPO, N times")
LossOpt = typer.Option(None, "--loss", help="DPO loss: sigmoid, ipo, robust, hinge, sigmoid+sft, apo_zero")
MapOpt = typer.Option(None, "--map", help="CANONICAL=COLUMN, e.g. --map input=note_text (repeatable)")
StrategyOpt = typer.Option(None, "--strategy", help="pair strategy: model_errors, label_swap, judge_ranked, human")


# a file-system refusal is the machine's answer, not medtune's bug: one line naming the path
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                      errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE}


def user_errors(fn):
    """A user's mistake becomes a clear message and exit code 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedtuneError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            if console.quiet and not isinstance(exc, RankStopped):  # a rank but 0, with an error of its own
                print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno not in FILE_SYSTEM_ERRORS:
                raise
            where = exc.filename or "a file medtune was writing"
            console.print(f"[bold red]error:[/] {where}: {exc.strerror}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted.[/] Run the same command again to resume where it stopped.")
            raise typer.Exit(130) from None
    return wrapper


def begin(model: str | None) -> None:
    """Once per command, before any Hugging Face library is imported: offline unless ``model`` is a hub id
    (the libraries read the switches when imported), and their own bars and logs quiet."""
    from .network import offline_unless_hub
    from .progress import quiet_libraries

    if not offline_unless_hub(model):
        console.print(f"model {model} is a hub id: the Hugging Face libraries may contact the hub", highlight=False)
    quiet_libraries()


def make_config(config: Optional[Path], preset=None, model=None, run_dir=None, device=None, tasks=None,
                rounds=None, loss=None, strategy=None):
    from .config import load_config

    overrides = {"preset": preset, "model": model, "run_dir": str(run_dir) if run_dir else None,
                 "device": device, "tasks": tasks}
    dpo = {k: v for k, v in {"rounds": rounds, "loss_type": loss}.items() if v is not None}
    if dpo:
        overrides["dpo"] = dpo
    if strategy is not None:
        overrides["pairs"] = {"strategy": strategy}
    cfg = load_config(config, overrides, source=str(config) if config else "command line")
    begin(cfg.model)
    return cfg


@contextlib.contextmanager
def stage_run(config, preset, model, run_dir, device, task_name, training: bool = True, **extra):
    """A stage command's run (its config, device, number format and speed pieces) and task, with its run
    directory held by this process."""
    task = get_task_or_exit(task_name)
    cfg = make_config(config, preset, model, run_dir, device, **extra)  # before the libraries are imported
    from .distributed import on_main
    from .models import resolve_compute
    from .rundir import open_run
    from .study import Run, check_run_dir, preflight

    compute = resolve_compute(cfg.device, cfg.precision, cfg.accel)
    preflight(cfg, compute, [task], training)
    with open_run(Path(cfg.run_dir)):
        on_main(check_run_dir, cfg)  # rank 0 writes the run (distributed.py)
        run = Run(cfg, compute)
        try:
            yield run, task
        finally:
            run.release()  # the command's models go with it


@app.command()
@user_errors
def study(config: Optional[Path] = ConfigOpt, preset: Optional[str] = PresetOpt, model: Optional[str] = ModelOpt,
          run_dir: Optional[Path] = RunDirOpt, device: Optional[str] = DeviceOpt,
          tasks: Optional[str] = typer.Option(None, "--tasks", help="comma-separated task ids (default: all five)"),
          restart: bool = typer.Option(False, "--restart", help="empty the run directory (only one medtune made) and start over"),
          rounds: Optional[int] = RoundsOpt, loss: Optional[str] = LossOpt, strategy: Optional[str] = StrategyOpt,
          dry_run: bool = typer.Option(False, "--dry-run", help="check the data and print the plan and its "
                                       "estimated time; train and write nothing")):
    """Run the whole study: base -> SFT -> DPO, evaluated, compared, reported. Resumes if interrupted."""
    task_list = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    if task_list == []:
        raise MedtuneError(f"--tasks {tasks!r} names no task; give comma-separated task ids (see `medtune tasks`)")
    cfg = make_config(config, preset, model, run_dir, device, task_list, rounds=rounds, loss=loss, strategy=strategy)
    if dry_run:
        print_plan(cfg)
        return
    from .study import run_study  # after make_config: the libraries read the offline switches when imported

    results = run_study(cfg, restart=restart)
    print_summary(results, Path(cfg.run_dir))


def print_plan(cfg) -> None:
    """The study's plan per task and stage, with the estimated time (plan.py); nothing is trained or written."""
    from .data import task_data
    from .distributed import world_size
    from .models import load_tokenizer, resolve_base, resolve_compute
    from .plan import plan_study
    from .study import preflight
    from .tasks import get_task

    compute = resolve_compute(cfg.device, cfg.precision, cfg.accel)
    tasks = [get_task(name) for name in cfg.tasks]
    preflight(cfg, compute, tasks)
    tokenizer = load_tokenizer(resolve_base(cfg.model))
    data = {}
    for task in tasks:
        task_cfg = cfg.for_task(task.name)
        data[task.name] = task_data(task_cfg, task, tokenizer, task_cfg.sft.max_length)
    steps, basis = plan_study(cfg, compute, tasks, data, tokenizer)
    table = Table(title=f"medtune study --dry-run: preset {cfg.preset}, {compute.device} ({compute.precision})")
    for col in ("task", "stage", "work", "estimate"):
        table.add_column(col)
    for step in steps:
        table.add_row(step.task, step.stage, step.work, f"{step.seconds / 60:.1f} min")
    console.print(table)
    total = sum(step.seconds for step in steps) / 60
    if basis["calibrated"]:
        console.print(f"Estimated time: about {total:.0f} min (this machine multiplies at {basis['gflops']:.0f} "
                      f"GFLOP/s; the costs were measured on a 2-core CPU; expect +-30%, more if the machine is "
                      "busy).", highlight=False)
    else:
        console.print(f"Estimated time: under {total:.0f} min (the costs were measured on a CPU; a GPU is faster).",
                      highlight=False)
    if world_size() > 1:
        console.print(f"{world_size()} processes share each step's batch and the prompts (the same steps, the same "
                      "answers); the estimate is for one process (docs/scale.md)", highlight=False)
    print_memory(cfg, compute.device, longest_example(tasks, data, tokenizer))


def longest_example(tasks, data: dict, tokenizer) -> int:
    """Tokens of a long training example (mean prompt plus a 95th-percentile answer) of the longest task."""
    from .plan import token_counts

    return max(round(prompt + long_answer) for task in tasks
               for prompt, _, long_answer in [token_counts(tokenizer, task, data[task.name]["train"])])


def print_memory(cfg, device: str, tokens: int) -> None:
    """Memory per device for each method and layout (resources.py states the accounting; docs/scale.md)."""
    from .distributed import world_size
    from .resources import GB, model_shape, plan_table

    shape = model_shape(cfg.model)
    if shape is None:
        console.print("Memory plan: the model's config is not Llama-like; see docs/scale.md", highlight=False)
        return
    devices = world_size() if world_size() > 1 else 8
    table = Table(title=f"memory per device, GB: {shape.parameters() / 1e6:,.0f}M parameters, LoRA r={cfg.sft.lora_r} "
                        f"adapters {shape.lora_parameters(cfg.sft.lora_r) / 1e6:,.1f}M (all-linear)")
    layouts = {"single": "1 device", "ddp": f"DDP x{devices}", "zero2": f"ZeRO-2 x{devices}",
               "zero3": f"ZeRO-3/FSDP x{devices}"}
    for col in ("method", "stage", *layouts.values()):
        table.add_column(col)
    for method, stage, by_layout in plan_table(shape, cfg, device, devices, tokens):
        table.add_row(method, stage, *[f"{by_layout[k]['total'] / GB:.1f}" for k in layouts])
    console.print(table)
    console.print(f"Per device: weights, trained parameters with their gradients and optimizer state, activations "
                  f"and logits at the configured batch, {tokens} tokens a sequence (a long example of the longest task), "
                  f"{'fp32 weights on a CPU' if device == 'cpu' else '16-bit weights'}. An estimate; leave 10-20% of a "
                  "card free (docs/scale.md). QLoRA needs CUDA.", highlight=False)


@app.command("tasks")
@user_errors
def list_tasks(specs: Optional[list[Path]] = typer.Argument(None, help="task spec files to list too"),
               config: Optional[Path] = ConfigOpt):
    """List the bundled tasks, the spec tasks a config names, and the spec files given."""
    from .tasks import TASKS, get_task

    begin(None)
    tasks = dict(TASKS)
    names = [*(make_config(config).tasks if config else []), *(str(p) for p in specs or [])]
    for name in names:
        task = get_task(name)
        tasks[task.name] = task
    table = Table(title="medtune tasks")
    table.add_column("task", no_wrap=True)  # the id users type must stay whole
    for col in ("what", "kind", "labels", "metrics (primary*)", "train", "test", "shifted"):
        table.add_column(col)
    for name, task in tasks.items():
        labels = "; ".join(f"{h}: {'/'.join(v)}" for h, v in task.labels.items()) if task.labels else "open answer"
        metrics = ", ".join(m.name + ("*" if m.name in task.primary_metrics else "") for m in task.metrics)
        table.add_row(name, task.description, kind_of(task), labels, metrics, *data_sizes(task))
    console.print(table)


def kind_of(task) -> str:
    return "label" if task.labels else ("free text" if task.graded else "short answer")


def data_sizes(task) -> list[str]:
    """Rows in the task's train, test and shifted test files (its spec's, else the bundled ones); – where there
    is none."""
    from .data import bundled_path

    files = [task.data.train, task.data.test, task.data.test_shifted] if task.data is not None else \
        [bundled_path(task, split) for split in ("train", "test", "test_shifted")]
    sizes = []
    for path in files:
        if path is None or not Path(path).is_file() or Path(path).suffix.lower() not in (".jsonl", ".csv", ".tsv"):
            sizes.append("–")
            continue
        rows = sum(1 for line in open(path, encoding="utf-8", errors="replace") if line.strip())
        sizes.append(str(rows - (Path(path).suffix.lower() != ".jsonl")))  # a CSV's header is no row
    return sizes


task_app = typer.Typer(no_args_is_help=True, help="Write and check your own task spec (docs/tasks.md).")
app.add_typer(task_app, name="task")


@task_app.command("new")
@user_errors
def task_new(kind: str = typer.Argument(..., help="label, short_answer or free_text"),
             out: Path = typer.Option(..., "--out", "-o", help="the spec file to write (.yaml)"),
             task_id: Optional[str] = typer.Option(None, "--id", help="the task's id (default: the file's name)"),
             force: bool = typer.Option(False, "--force", help="overwrite an existing file")):
    """Write a commented task spec for KIND, ready to edit."""
    import re

    from .io import write_text
    from .tasks.skeletons import KINDS, skeleton

    if kind not in KINDS:
        raise MedtuneError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise MedtuneError(f"{out}: a task spec is a .yaml file")
    if out.exists() and not force:
        raise MedtuneError(f"{out} exists; choose another --out, or --force to overwrite it")
    task_id = task_id or re.sub(r"[^a-z0-9_]+", "_", out.stem.lower()).strip("_") or "my_task"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", task_id):
        raise MedtuneError(f"--id {task_id!r}: lower case letters, digits and underscores, starting with a letter")
    write_text(out, skeleton(kind, task_id, str(out)))
    console.print(f"wrote {out}: edit it, then run  medtune task check {out}", highlight=False)


@task_app.command("check")
@user_errors
def task_check(spec: Path = typer.Argument(..., help="the task spec file"),
               data: Optional[Path] = typer.Option(None, "--data", help="check this data file (default: the "
                                                   "spec's train file)"),
               mapping: Optional[list[str]] = MapOpt,
               examples: int = typer.Option(2, "--examples", help="example prompts to show")):
    """Validate a task spec, check its data with the doctor, and show what the model will read."""
    from .data.doctor import check_task_file
    from .data.importer import parse_mapping
    from .tasks import get_task

    begin(None)
    task = get_task(str(spec))
    console.print(f"{spec}: task {task.name} ({kind_of(task)}), fields {', '.join(task.required_fields)}; "
                  f"metrics {', '.join(m.name for m in task.metrics)} (primary: {', '.join(task.primary_metrics)})",
                  highlight=False)
    path = data or (task.data.train if task.data is not None else None)
    if path is None:
        raise MedtuneError(f"{spec}: no data to check: give --data FILE or the spec's data.train")
    diag = check_task_file(path, task, parse_mapping(mapping) or (task.data.map if task.data else {}))
    for line in diag.lines():
        console.print(line, style="red" if line.startswith("error") else "yellow", highlight=False, markup=False)
    if diag.errors:
        raise typer.Exit(2)
    for example in diag.records[:examples]:
        console.rule(f"example {example['id']}")
        for message in task.messages(example) + [{"role": "assistant", "content": task.reference(example)}]:
            console.print(f"[bold]{message['role']}[/]", highlight=False)
            console.print(message["content"], highlight=False, markup=False)
    console.print(f"{path}: {diag.rows} rows, {len(diag.warnings)} warning(s): [green]usable[/]", highlight=False)


@app.command("eval")
@user_errors
def eval_cmd(task: str = TaskOpt, stage: str = typer.Option("base", "--stage", help="base, sft or dpo"),
             checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="evaluate this saved model folder instead"),
             endpoint: Optional[str] = typer.Option(None, "--endpoint", help="evaluate the model an OpenAI-compatible "
                                                    "server serves at this URL instead (e.g. http://127.0.0.1:8000/v1)"),
             served_model: Optional[str] = typer.Option(None, "--served-model", help="with --endpoint: the model id to "
                                                        "ask (default: the one the server lists)"),
             api_key_env: str = typer.Option("MEDTUNE_API_KEY", "--api-key-env", help="with --endpoint: the "
                                             "environment variable holding its API key"),
             workers: int = typer.Option(4, "--workers", min=1, help="with --endpoint: requests in flight at once"),
             retries: int = typer.Option(4, "--retries", min=0, help="with --endpoint: retries of a failed request "
                                         "(connection errors, 429, 5xx), with exponential back-off"),
             config: Optional[Path] = ConfigOpt, preset: Optional[str] = PresetOpt, model: Optional[str] = ModelOpt,
             run_dir: Optional[Path] = RunDirOpt, device: Optional[str] = DeviceOpt, force: bool = ForceOpt):
    """Evaluate the base model, a stage's model, any checkpoint, or a served model on a task's test set."""
    from .rundir import STAGES

    if stage not in STAGES:
        raise MedtuneError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if checkpoint is not None and not checkpoint.exists():
        raise MedtuneError(f"{checkpoint}: no such model folder")
    if endpoint is not None and checkpoint is not None:
        raise MedtuneError("--endpoint and --checkpoint name two models; give one")
    with stage_run(config, preset, model, run_dir, device, task, training=False) as (run, t):
        if endpoint is not None:
            from .distributed import on_main
            from .evaluate.client import ChatClient
            from .evaluate.endpoint import evaluate_endpoint

            client = ChatClient(endpoint, api_key_env, max_retries=retries, who="endpoint", setting="--endpoint")
            folder, saved = on_main(evaluate_endpoint, run, t, client, served_model, workers)  # one sends
            label = f"{saved['model']} at {endpoint}"
            console.print(f"predictions and metrics: {folder}", highlight=False)
        else:
            from .study import evaluate_stage

            saved = evaluate_stage(run, t, stage, force=force or checkpoint is not None, model_path=checkpoint)
            label = stage
    print_metrics(t.name, label, saved["metrics"])
    if "shifted" in saved:
        print_metrics(t.name, f"{label}, shifted test split", saved["shifted"]["metrics"])


def run_model(run: Path) -> str | None:
    """The model a run directory's config names (offline unless it is a hub id)."""
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    return saved.get("model") if isinstance(saved, dict) else None


@app.command()
@user_errors
def export(run: Path = typer.Argument(..., help="run directory of a finished study"), task: str = TaskOpt,
           stage: str = typer.Option("best", "--stage", help="best (the stage the verdict picks), base, sft or dpo"),
           fmt: str = typer.Option("hf", "--format", help="hf (merged safetensors folder), gguf, or ollama "
                                   "(GGUF + Modelfile)"),
           out: Path = typer.Option(..., "--out", help="the folder to write (made whole or not at all)"),
           quant: str = typer.Option("f16", "--quant", help="gguf/ollama: f16, q8_0, bf16 or f32"),
           dtype: str = typer.Option("auto", "--dtype", help="hf: auto (the base model's), float32, bfloat16 or float16"),
           force: bool = typer.Option(False, "--force", help="replace --out if it exists")):
    """Export a stage's model as one merged folder, a GGUF file or an Ollama model, with a model card."""
    if not (run / "config.yaml").is_file():
        raise MedtuneError(f"{run}: not a medtune run directory (no config.yaml)")
    begin(run_model(run))
    t = get_task_or_exit(task)
    from .export.ship import export as ship

    facts = ship(run, t, fmt, out, stage, quant, dtype, force)
    console.print(f"[green]exported[/] {t.name} / {facts['stage']} ({facts['chosen']}) as {fmt} to {out}; "
                  f"model card: {out / 'README.md'}", highlight=False)


SystemOpt = typer.Option(None, "--system", help="the system prompt (default: the task's)")
ServeTaskOpt = typer.Option(None, "--task", "-t", help="the task whose system prompt to use (default: the one the "
                            "exported or stage folder belongs to)")


def model_defaults(model_dir: str, task: str | None, system: str | None) -> tuple[str | None, str | None, int | None]:
    """(system prompt, model name, max new tokens) for serving or chatting with ``model_dir``: what the flags
    say, else what ``medtune export`` recorded in the folder, else the task of a stage's ``RUN/<task>/<stage>/model``."""
    from .export.ship import export_info

    folder = Path(model_dir)
    info = export_info(folder) if folder.is_dir() else {}
    name = f"{info['task']}-{info['stage']}" if info else None
    if task is None and not info and folder.is_dir() and folder.name == "model":
        task = stage_task(folder)
    if task is not None:
        t = get_task_or_exit(task)
        return system or t.system_prompt, name, t.max_new_tokens
    return system or info.get("system_prompt"), name, info.get("max_new_tokens")


def stage_task(folder: Path) -> str | None:
    """The task of a stage's ``RUN/<task>/<stage>/model`` folder, where the name is a task medtune knows."""
    from .tasks import get_task

    name = folder.resolve().parent.parent.name
    try:
        get_task(name)
    except MedtuneError:
        return None
    return name


@app.command()
@user_errors
def serve(model_dir: str = typer.Argument(..., help="an exported folder (medtune export), a stage's model/ folder, "
                                          "or 'embedded'"),
          host: str = typer.Option("127.0.0.1", "--host", help="the address to bind; other than loopback needs a key"),
          port: int = typer.Option(8000, "--port"),
          api_key: Optional[str] = typer.Option(None, "--api-key", help="required from clients as a Bearer token "
                                                "(default: $MEDTUNE_API_KEY; none on 127.0.0.1)"),
          task: Optional[str] = ServeTaskOpt, system: Optional[str] = SystemOpt,
          name: Optional[str] = typer.Option(None, "--name", help="the model id clients ask for"),
          max_request_bytes: int = typer.Option(1_000_000, "--max-request-bytes", min=1),
          max_tokens_limit: int = typer.Option(2048, "--max-tokens-limit", min=1),
          device: Optional[str] = DeviceOpt):
    """Serve a model over the OpenAI chat-completions protocol (/v1/models, /v1/chat/completions)."""
    begin(model_dir)
    system_prompt, default, _ = model_defaults(model_dir, task, system)
    from .serve import serve as run_server

    console.print(f"serving {model_dir} at http://{host}:{port}/v1 (Ctrl-C stops)", highlight=False)
    run_server(model_dir, host, port, api_key, name or default, device or "auto",
               max_request_bytes=max_request_bytes, max_tokens_limit=max_tokens_limit, system_prompt=system_prompt)


@app.command()
@user_errors
def chat(model_dir: str = typer.Argument(..., help="an exported folder, a stage's model/ folder, or 'embedded'"),
         task: Optional[str] = ServeTaskOpt, system: Optional[str] = SystemOpt,
         max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1,
                                                      help="the longest answer (default: the task's, else 256)"),
         device: Optional[str] = DeviceOpt):
    """Chat with a model in the terminal, answers streamed as they are generated."""
    begin(model_dir)
    system_prompt, _, task_tokens = model_defaults(model_dir, task, system)
    from .models import load_model, resolve_compute
    from .serve import chat as chat_loop

    compute = resolve_compute(device or "auto", "auto", "off")
    with console.status(f"loading {model_dir}"):
        model, tokenizer, _ = load_model(model_dir, compute.device, compute.weights)
    chat_loop(model, tokenizer, compute, system_prompt, max_new_tokens or task_tokens or 256)


@app.command()
@user_errors
def sft(task: str = TaskOpt, config: Optional[Path] = ConfigOpt, preset: Optional[str] = PresetOpt,
        model: Optional[str] = ModelOpt, run_dir: Optional[Path] = RunDirOpt, device: Optional[str] = DeviceOpt,
        force: bool = ForceOpt):
    """Supervised fine-tuning (LoRA by default; sft.method: full in the config)."""
    with stage_run(config, preset, model, run_dir, device, task) as (run, t):
        from .study import sft_stage, stage_dir

        summary = sft_stage(run, t, force=force)
    console.print(f"SFT done: {summary['steps']} steps, final loss {summary['final_loss']:.4f} -> "
                  f"{stage_dir(run.cfg, t, 'sft') / 'model'}")


@app.command()
@user_errors
def pairs(task: str = TaskOpt, config: Optional[Path] = ConfigOpt, preset: Optional[str] = PresetOpt,
          model: Optional[str] = ModelOpt, run_dir: Optional[Path] = RunDirOpt, device: Optional[str] = DeviceOpt,
          force: bool = ForceOpt, strategy: Optional[str] = StrategyOpt,
          from_review: Optional[Path] = typer.Option(None, "--from-review", help="with --strategy human: pairs "
                                                     "from the clinicians' judgments of this run's test answers "
                                                     "(docs/review.md); without --config, into that run")):
    """Build preference pairs (default: from the SFT model's own errors on training prompts)."""
    if from_review is not None:
        pairs_from_review(task, from_review, config, preset, model, run_dir, device, strategy)
        return
    with stage_run(config, preset, model, run_dir, device, task, strategy=strategy) as (run, t):
        from .study import pairs_stage, stage_dir

        stats = pairs_stage(run, t, force=force)
    rate = stats["sft_error_rate_on_train"]
    console.print(f"SFT error rate on sampled training outputs: {'n/a' if rate is None else f'{rate:.1%}'} -> "
                  f"{stage_dir(run.cfg, t, 'pairs') / 'pairs.jsonl'}")


def pairs_from_review(task, review_dir: Path, config, preset, model, run_dir, device, strategy) -> None:
    """Round 1's pairs from the clinicians' judgments in ``review_dir``, written into the run the config names
    (without --config: ``review_dir`` itself, with its config.yaml). The strategy stays out of the config: the
    run's saved one still describes its other rounds, and stats.json records these pairs' source."""
    if strategy not in (None, "human"):
        raise MedtuneError(f"--from-review makes pairs from the clinicians' judgments: use it with --strategy human, "
                           f"not {strategy}")
    if config is None:
        config, run_dir = review_dir / "config.yaml", run_dir or review_dir
        if not config.is_file():
            raise MedtuneError(f"{review_dir}: not a medtune run directory (no config.yaml)")
    with stage_run(config, preset, model, run_dir, device, task) as (run, t):
        from .study import review_pairs_stage, stage_dir

        stats = review_pairs_stage(run, t, review_dir)
    skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats["skipped"].items() if v) or "none"
    console.print(f"{stats['pairs']} pair(s) from {stats['judgments']} judgment(s) of {stats['items']} test item(s) "
                  f"in {review_dir}; items skipped: {skipped}; {stats['judgments_left_out_unsafe']} judgment(s) left "
                  f"out (the preferred answer flagged unsafe) -> {stage_dir(run.cfg, t, 'pairs') / 'pairs.jsonl'}",
                  highlight=False)
    console.print("[yellow]These pairs come from TEST items: a DPO model trained on them must be evaluated on other "
                  "items (its metrics on this test set are no fair estimate; docs/review.md).[/]", highlight=False)
    console.print(f"Next: medtune dpo --task {t.name} --force (it replaces this run's DPO model)", highlight=False)


@app.command()
@user_errors
def dpo(task: str = TaskOpt, config: Optional[Path] = ConfigOpt, preset: Optional[str] = PresetOpt,
        model: Optional[str] = ModelOpt, run_dir: Optional[Path] = RunDirOpt, device: Optional[str] = DeviceOpt,
        force: bool = ForceOpt, rounds: Optional[int] = RoundsOpt, loss: Optional[str] = LossOpt):
    """Direct Preference Optimization starting from the SFT model (and N on-policy rounds with --rounds)."""
    with stage_run(config, preset, model, run_dir, device, task, rounds=rounds, loss=loss) as (run, t):
        from .study import dpo_stage, stage_dir

        summary = dpo_stage(run, t, force=force)
    held = summary["heldout"][-1] if summary.get("heldout") else {}
    fired = (summary.get("collapse") or {}).get("fired")  # absent in runs made before the guard existed
    console.print(f"DPO done: {summary['steps']} steps on {summary.get('pairs')} pairs; held-out reward accuracy "
                  f"{held.get('rewards/accuracies', float('nan')):.2f}, margin {held.get('rewards/margins', float('nan')):.3f}"
                  f"{'; COLLAPSE GUARD FIRED' if fired else ''} -> {stage_dir(run.cfg, t, 'dpo') / 'model'}")


@app.command()
@user_errors
def report(run: Path = typer.Argument(..., help="run directory of a study")):
    """Rebuild results.json, report.md and report.html from a run directory's saved predictions (no model needed)."""
    from .config import load_config
    from .rundir import disk_errors_named, exclusive

    config_file = run / "config.yaml"
    if not config_file.is_file():
        raise MedtuneError(f"{run}: not a medtune run directory (no config.yaml)")
    cfg = load_config(config_file, {"run_dir": str(run)})
    begin(None)
    from .study import write_results

    with exclusive(run), disk_errors_named(run):  # the run's stages are only read: no orphans to clear
        results = write_results(cfg)
    print_summary(results, run)


@app.command()
@user_errors
def review(run: Path = typer.Argument(..., help="run directory of a finished study"),
           task: Optional[str] = typer.Option(None, "--task", "-t", help="comma-separated task ids to review "
                                              "(default: all the run's tasks)"),
           stages: str = typer.Option("sft,dpo", "--stages", help="the two stages whose answers are compared: "
                                      "two of base, sft, dpo"),
           reviewers: Optional[str] = typer.Option(None, "--reviewers", help="N (reviewer-1..reviewer-N) or names "
                                                   "(alice,bob); new ones get a link; default: those the run has, "
                                                   "else one"),
           new_links: bool = typer.Option(False, "--new-links", help="issue new links to --reviewers (default: all "
                                          "the run's reviewers); their old links stop working"),
           host: str = typer.Option("127.0.0.1", "--host", help="the address to bind (default loopback only)"),
           port: int = typer.Option(8001, "--port", min=1, max=65535),
           export: Optional[Path] = typer.Option(None, "--export", help="write every judgment to FILE.csv or "
                                                 "FILE.jsonl and exit (no server)")):
    """Blind, paired review by clinicians: a local web app showing two stages' answers to each test item as A and B."""
    from .review import store

    if not (run / "config.yaml").is_file():
        raise MedtuneError(f"{run}: not a medtune run directory (no config.yaml)")
    begin(None)
    if export is not None:
        n = store.export_judgments(run, export)
        console.print(f"{n} judgment(s) -> {export}", highlight=False)
        return
    from .network import is_loopback
    from .review.app import build_app, link, serve as serve_review
    from .review.queue import load_items, parse_stages

    pair = parse_stages(stages)
    items = load_items(run, [t.strip() for t in task.split(",") if t.strip()] if task else None, pair)
    db = store.init_db(run)
    with store.opened(db) as conn:
        existing = [r["name"] for r in store.all_reviewers(conn)]
    names = store.reviewer_names(reviewers) if reviewers else existing or ["reviewer-1"]
    tokens = store.ensure_reviewers(db, names, new_links)
    review_app = build_app(db, items, pair)  # each reviewer's queue made now
    console.print(f"reviewing {len(items)} item(s) of {len({i.task for i in items})} task(s), answers of two stages "
                  f"shown blind as A and B; judgments in {db}", highlight=False)
    for name in sorted(set(existing) | set(tokens), key=lambda n: (n not in tokens, n)):
        token = tokens.get(name)
        console.print(f"  {name}: {link(host, port, token)}" if token else
                      f"  {name}: the link given before still works (lost? --new-links --reviewers {name})",
                      highlight=False, markup=False, soft_wrap=True)
    if any(tokens.values()):
        console.print("Each link is shown only now: give each reviewer theirs, privately.", highlight=False)
    if not is_loopback(host):
        anywhere = host in ("0.0.0.0", "::", "[::]")
        console.print(f"[yellow]warning:[/] binding to {host}: anyone on the network who has a link can judge "
                      "with it, and the links travel as plain http" +
                      ("; in the links, put this machine's address in place of " + host if anywhere else ""),
                      highlight=False)
    console.print(f"serving at http://{host}:{port} (Ctrl-C stops)", highlight=False)
    serve_review(review_app, host, port)


data_app = typer.Typer(no_args_is_help=True, help="Check and import your own data.")
app.add_typer(data_app, name="data")


@data_app.command("check")
@user_errors
def data_check(file: Path = typer.Argument(..., help="CSV, JSONL, Parquet or a save_to_disk folder"),
               task: str = TaskOpt,
               kind: str = typer.Option("task", "--kind", help="task (examples) or pairs (preference pairs)"),
               model: Optional[str] = typer.Option(None, "--model", "-m", help="check lengths with this model's tokenizer"),
               max_length: int = typer.Option(512, "--max-length", help="the training max_length to check against"),
               mapping: Optional[list[str]] = MapOpt,
               as_json: bool = typer.Option(False, "--json", help="print the findings as JSON"),
               strict: bool = typer.Option(False, "--strict", help="exit non-zero on warnings too")):
    """The data doctor: errors (exit 2) and warnings, each naming the file and row."""
    import json

    from .data.doctor import check_pairs_file, check_task_file
    from .data.importer import parse_mapping

    t = get_task_or_exit(task)
    if kind not in ("task", "pairs"):
        raise MedtuneError(f"--kind must be task or pairs, got {kind!r}")
    begin(model)
    from .models import load_tokenizer, resolve_base

    tokenizer = load_tokenizer(resolve_base(model)) if model else None
    if kind == "task":
        diag = check_task_file(file, t, parse_mapping(mapping), tokenizer, max_length)
    else:
        diag = check_pairs_file(file, parse_mapping(mapping), tokenizer, max_length, t.system_prompt)
    if as_json:
        print(json.dumps(diag.to_dict(), indent=2))
    else:
        for line in diag.lines():
            console.print(line, style="red" if line.startswith("error") else "yellow", highlight=False, markup=False)
        verdict = "[red]not usable[/]" if diag.errors else "[green]usable[/]"
        console.print(f"{file}: {diag.rows} rows, {len(diag.errors)} error(s), {len(diag.warnings)} warning(s): {verdict}")
    if diag.errors or (strict and diag.warnings):
        raise typer.Exit(2)


@data_app.command("import")
@user_errors
def data_import(file: Path = typer.Argument(..., help="training data (CSV, JSONL, Parquet, save_to_disk folder)"),
                task: str = TaskOpt,
                test: Optional[Path] = typer.Option(None, "--test", help="a separate test file; else a stratified split"),
                mapping: Optional[list[str]] = MapOpt,
                out: Optional[Path] = typer.Option(None, "--out", help="output folder (default data/<task>)"),
                test_fraction: float = typer.Option(0.2, "--test-fraction"),
                seed: int = typer.Option(0, "--seed")):
    """Check a file, convert it to the task's canonical JSONL (train/test) and print the config to use it."""
    from pydantic import ValidationError

    from .config import Config, DataSettings, TaskData, format_validation_error
    from .data import task_data
    from .data.importer import parse_mapping
    from .io import json_text, jsonl_text, write_files

    t = get_task_or_exit(task)
    if not 0 < test_fraction < 1:
        raise MedtuneError(f"--test-fraction must be between 0 and 1 (the share of rows kept for testing), "
                           f"got {test_fraction}")
    out = out or Path("data") / t.name
    if out.exists() and not out.is_dir():
        raise MedtuneError(f"{out}: --out must be a folder, and this is a file")
    try:
        source = TaskData(train=file, test=test, map=parse_mapping(mapping), test_fraction=test_fraction)
        cfg = Config(seed=seed, tasks=[task], data=DataSettings(tasks={t.name: source}))
    except ValidationError as exc:
        raise MedtuneError(format_validation_error(exc, "data import")) from None
    begin(None)
    data = task_data(cfg, t)
    for line in data["info"]["warnings"]:
        console.print(line, style="yellow", highlight=False, markup=False)
    write_files(out, {"train.jsonl": jsonl_text(data["train"]), "test.jsonl": jsonl_text(data["test"]),
                      "import.json": json_text(data["info"])})
    console.print(f"{len(data['train'])} train and {len(data['test'])} test examples -> {out}/")
    tasks_line = f"tasks: [{task}]\n" if t.name != task else ""  # a spec task is named by its file
    console.print(f"Use them in a config:\n{tasks_line}data:\n  tasks:\n    {t.name}: {{train: {out / 'train.jsonl'}, "
                  f"test: {out / 'test.jsonl'}}}", highlight=False, markup=False)


grader_app = typer.Typer(no_args_is_help=True, help="The summary graders (built-in rubric, LLM judge).")
app.add_typer(grader_app, name="grader")


@grader_app.command("check")
@user_errors
def grader_check(file: Optional[Path] = typer.Option(None, "--file", help="hand-graded JSONL (default: bundled set)"),
                 show: bool = typer.Option(False, "--show", help="list every summary whose grades differ")):
    """Agreement of the built-in grader with the hand-graded summaries (quadratic-weighted kappa)."""
    from .evaluate.grader import HAND_GRADED, check_hand_graded

    begin(None)
    path = file or HAND_GRADED
    if not Path(path).is_file():
        raise MedtuneError(f"{path}: no such hand-graded file")
    try:
        result = check_hand_graded(path)
    except (KeyError, ValueError) as exc:
        raise MedtuneError(f"{path}: not a hand-graded summaries file ({exc!r})") from None
    if show:
        table = Table(title="hand grade vs built-in grade (differences)")
        for col in ("id", "kind", "hand", "grader", "coverage", "unsupported"):
            table.add_column(col)
        for r in result["rows"]:
            if r["hand"] != r["grader"]:
                table.add_row(r["id"], r["kind"], str(r["hand"]), str(r["grader"]), f"{r['coverage']:.2f}",
                              "; ".join(r["unsupported"]))
        console.print(table)
    console.print(f"built-in grader vs hand grades on {result['n']} summaries: quadratic-weighted kappa "
                  f"{result['kappa_quadratic']:.3f}, exact agreement {result['exact_agreement']:.1%}, "
                  f"within one point {result['within_one']:.1%}", highlight=False)


def get_task_or_exit(name: str):
    from .tasks import get_task

    return get_task(name)  # a MedtuneError names what is wrong


# ------------------------------------------------------------------ output

def print_metrics(task: str, stage: str, metrics: dict) -> None:
    table = Table(title=f"{task} / {stage}")
    for col in ("metric", "value", "95% CI", "n"):
        table.add_column(col)
    for name, m in metrics.items():
        ci = f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if "ci_low" in m else ""
        table.add_row(name, f"{m['value']:.3f}", ci, str(m["n"]))
    console.print(table)


def print_summary(results: dict, run_dir: Path) -> None:
    from .report.tables import verdict_words

    table = Table(title="medtune study: base -> SFT -> DPO")
    for col in ("task", "metric", "base", "SFT", "DPO", "Holm p SFT>base", "Holm p DPO>SFT", "verdict"):
        table.add_column(col)
    for name, task in results["tasks"].items():
        for metric in task["primary_metrics"]:
            vals = [task["stages"].get(s, {}).get("metrics", {}).get(metric) for s in ("base", "sft", "dpo")]
            ps = [task["comparisons"].get(c, {}).get(metric) for c in ("sft_vs_base", "dpo_vs_sft")]
            table.add_row(name, metric, *[f"{v['value']:.3f}" if v else "–" for v in vals],
                          *[f"{p.get('p_holm', p['p_value']):.3g}" if p else "–" for p in ps],
                          verdict_words(task["verdict"]))
    console.print(table)
    if "elapsed_s" in results:
        console.print(f"Study finished in {results['elapsed_s'] / 60:.1f} min.")
    console.print(f"Report: {run_dir / 'report.html'} and {run_dir / 'report.md'}   Results: {run_dir / 'results.json'}")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the tokenizers library
    app()


if __name__ == "__main__":
    main()
