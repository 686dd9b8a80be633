"""``medtune export``: the chosen stage's model, merged, converted and carded, into one folder made atomically."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import MedtuneError
from ..io import atomic_dir, read_json, write_json
from ..progress import console
from .card import write_card
from .choose import pick
from .merged import write_merged

FORMATS = ("hf", "gguf", "ollama")
QTYPES = ("f16", "q8_0", "bf16", "f32")
EXPORT_INFO = "medtune_export.json"  # the task and stage an export holds; serve and chat take defaults from it


def check_request(fmt: str, qtype: str, out: Path, force: bool) -> None:
    if fmt not in FORMATS:
        raise MedtuneError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if qtype not in QTYPES:
        raise MedtuneError(f"--quant must be one of {', '.join(QTYPES)}, got {qtype!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise MedtuneError(f"{out}: already exists and is not empty; choose another --out, or --force to replace it")


def export(run_dir: Path, task, fmt: str, out: Path, stage: str = "best", qtype: str = "f16", dtype: str = "auto",
           force: bool = False) -> dict:
    """The export of ``task``'s chosen stage into ``out``; returns what was written. ``task``: a Task."""
    out = Path(out)
    check_request(fmt, qtype, out, force)
    stage, ref, why, results = pick(Path(run_dir), task.name, stage)
    console.print(f"exporting {task.name} / {stage} ({why}) as {fmt} -> {out}", highlight=False)
    with atomic_dir(out) as folder:
        if fmt == "hf":
            with console.status("merging the adapters into the base weights"):
                facts = write_merged(ref, folder, dtype)
            facts["files"] = {"weights": "model.safetensors"}
        else:
            facts = write_gguf_export(ref, folder, f"{task.name}-{stage}-{qtype}.gguf", qtype,
                                      task if fmt == "ollama" else None)
        facts = {"format": fmt, "stage": stage, "chosen": why, **facts}
        write_card(folder, results, Path(run_dir), task.name, stage, why, fmt, facts)
        write_json(folder / EXPORT_INFO, {"task": task.name, "stage": stage, "format": fmt, "run": str(run_dir),
                                          "system_prompt": task.system_prompt, "max_new_tokens": task.max_new_tokens,
                                          **facts})
    return facts


def export_info(model_dir: Path) -> dict:
    """What ``medtune export`` recorded about the model in ``model_dir`` ({} for any other folder)."""
    path = Path(model_dir) / EXPORT_INFO
    return read_json(path) if path.is_file() else {}


def write_gguf_export(ref, folder: Path, name: str, qtype: str, ollama_task=None) -> dict:
    """The merged model converted to one GGUF file (and Ollama's Modelfile for ``ollama_task``); the merged
    folder is scratch beside the export."""
    from .gguf import write_gguf

    with tempfile.TemporaryDirectory(prefix=".merged.", dir=folder.parent) as scratch:
        with console.status("merging the adapters into the base weights"):
            merged = write_merged(ref, Path(scratch), "float32")
        with console.status(f"writing {name}"):
            facts = write_gguf(Path(scratch), folder / name, qtype)
        files = {"gguf": name}
        if ollama_task is not None:
            write_modelfile(folder, name, Path(scratch), ollama_task)
            files["modelfile"] = "Modelfile"
    return {"parameters": merged["parameters"], "kind": merged["kind"], **facts, "files": files}


def write_modelfile(folder: Path, gguf_name: str, merged: Path, task) -> None:
    from ..generate import stop_token_ids
    from ..io import write_text
    from ..models import load_tokenizer
    from .modelfile import modelfile

    tokenizer = load_tokenizer(str(merged))
    stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]
    write_text(folder / "Modelfile", modelfile(gguf_name, tokenizer.chat_template, task.system_prompt, stops))
