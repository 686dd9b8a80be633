"""The model card (README.md, Hugging Face's model-card format) of an exported model, written from the study's
results.json: what the model is, what it was trained on and how, how each stage scored with CIs, the paired
comparisons and the verdict, what it is for and what it is not for, and the software that made it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..io import read_json
from ..report.markdown import escape, escape_inline, table
from ..report.tables import STAGE_LABELS, STAGES, comparison_rows, stage_rows, verdict_words

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded default model's origin (Apache-2.0)
EXPORT_PACKAGES = ("torch", "transformers", "peft", "trl", "gguf", "safetensors")


def base_model_id(model: str) -> tuple[str | None, str | None]:
    """(hub id for the card's ``base_model`` field, licence) where they are known; a local folder has neither."""
    from ..embedded import EMBEDDED_NAMES
    from ..network import is_hub_id

    if model in EMBEDDED_NAMES:
        return EMBEDDED_HUB_ID, "apache-2.0"
    return (model, None) if is_hub_id(model) else (None, None)


def package_versions() -> dict:
    out = {}
    for name in EXPORT_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def data_lines(run_dir: Path, task: str, found: dict) -> list[str]:
    info_path = Path(run_dir) / task / "data.json"
    info = read_json(info_path) if info_path.is_file() else {}
    n_test = next((m["n"] for m in found["stages"].get("base", found["stages"].get("sft", {})).get("metrics", {}).values()
                   if "n" in m), None)
    where = "the data bundled with medtune (synthetic clinical text)" if info.get("bundled") else "the team's own data"
    lines = [f"- Source: {where}."]
    if info:
        lines.append(f"- Training examples used: {info.get('train_used', '?')} of {info.get('train_rows', '?')}; "
                     f"test items: {info.get('test_used', n_test)} of {info.get('test_rows', '?')}.")
    if found.get("shifted"):
        shifted_n = next((m["n"] for s in found["shifted"]["stages"].values() for m in s["metrics"].values()
                          if "n" in m), None)
        lines.append(f"- A shifted test split (other layouts, vocabulary and voices): {shifted_n} items.")
    if found.get("pairs"):
        p = found["pairs"]
        lines.append(f"- Preference pairs for DPO: {p.get('pairs')} ({p.get('strategy')}; by source: "
                     f"{', '.join(f'{k} {v}' for k, v in (p.get('pairs_per_source') or {}).items())}).")
    return lines


def settings_lines(config: dict, task: str) -> list[str]:
    from ..config import Config

    cfg = Config.model_validate(config).for_task(task)
    sft, dpo, pairs = cfg.sft, cfg.dpo, cfg.pairs
    steps = lambda s: f"{s.max_steps} steps" if s.max_steps and s.max_steps > 0 else f"{s.epochs:g} epoch(s)"  # noqa: E731
    lora = f"LoRA r={sft.lora_r}, alpha={sft.lora_alpha}, targets {sft.lora_target_modules}" \
        if sft.method != "full" else "all weights"
    return [f"- Preset: {cfg.preset}; seed {cfg.seed}; precision {cfg.precision}.",
            f"- SFT: {sft.method} ({lora}), {steps(sft)}, batch {sft.batch_size}×{sft.grad_accum}, "
            f"learning rate {sft.learning_rate:g}, max length {sft.max_length}.",
            f"- Pairs: strategy {pairs.strategy}.",
            f"- DPO: loss {dpo.loss_type}, beta {dpo.beta:g}, {steps(dpo)}, batch {dpo.batch_size}×{dpo.grad_accum}, "
            f"learning rate {dpo.learning_rate:g}; trained on the SFT model, SFT's adapter merged first."]


def metrics_table(found: dict) -> list[str]:
    shifted = bool(found.get("shifted"))
    header = ["metric", *[STAGE_LABELS[s] for s in STAGES]] + [f"{STAGE_LABELS[s]} (shifted)" for s in STAGES if shifted]
    rows = [[r["metric"] + (" (primary)" if r["primary"] else ""), *r["values"], *r["shifted_values"]]
            for r in stage_rows(found)]
    return table(header, rows)


def comparisons_table(found: dict, alpha: float) -> list[str]:
    rows = [[r["split"], r["comparison"], r["metric"], r["difference"], r["ci"], r["test"], r["p_holm"], r["rules_out"]]
            for r in comparison_rows(found, alpha) if r["primary"]]
    return table(["split", "comparison", "metric", "difference", "95% CI", "test", "Holm p", "the CI rules out"], rows)


def usage_lines(fmt: str, files: dict) -> list[str]:
    if fmt == "hf":
        return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
                'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```",
                "", "Or serve it: `medtune serve path/to/this/folder` (an OpenAI-compatible server on 127.0.0.1)."]
    gguf = files.get("gguf", "model.gguf")
    lines = [f"`{gguf}` runs in llama.cpp (`llama-cli -m {gguf}`) and anything built on it."]
    if fmt == "ollama":
        lines += ["", "```", "ollama create my-model -f Modelfile", "ollama run my-model", "```",
                  "The Modelfile carries the chat template, the task's system prompt and greedy decoding."]
    return lines


def write_card(folder: Path, results: dict, run_dir: Path, task: str, stage: str, why: str, fmt: str,
               export_facts: dict) -> str:
    """README.md in ``folder``; returns its text."""
    found = results["tasks"][task]
    config = results["config"]
    hub_id, licence = base_model_id(config["model"])
    data = ModelCardData(license=licence, base_model=hub_id, library_name="transformers" if fmt == "hf" else None,
                         pipeline_tag="text-generation", model_name=f"{task} ({STAGE_LABELS[stage]})",
                         tags=["medtune", "clinical", task, stage] + (["gguf"] if fmt != "hf" else []))
    verdict = found["verdict"]
    alpha = config["stats"]["alpha"]
    base_text = hub_id or f"the local model {Path(config['model']).name}"
    lines = [
        f"# {escape_inline(task)}: the {STAGE_LABELS[stage]} model of a medtune study", "",
        escape(found["description"]), "",
        f"This is the **{STAGE_LABELS[stage]}** stage ({escape_inline(why)}) of a study that fine-tuned "
        f"{escape_inline(base_text)} with supervised fine-tuning (SFT) and then Direct Preference "
        "Optimization (DPO), and compared base, SFT and DPO on held-out test items with paired tests.", "",
        "## Verdict", "",
        f"**{verdict_words(verdict)}** (decided on the {verdict.get('split', 'test')} split) — "
        f"{escape(verdict['reason'])}", "",
        "## Intended use and limits", "",
        "- For research and for drafting under a clinician's review in the task above. **Not for unsupervised "
        "clinical decisions**: it makes mistakes, including confident ones, and was tested only on the items "
        "below.",
        "- The metrics hold for data like the test split; the shifted split (where present) shows how far they "
        "carry to other writing. Check it on your own data before use.",
        "- It inherits the base model's limits and licence.", "",
        "## Training data", "", *data_lines(run_dir, task, found), "",
        "## Training settings", "", *settings_lines(config, task), "",
        "## Evaluation", "",
        "Each cell: value [95% CI]. Primary metrics decide the verdict.", "",
        *metrics_table(found), "",
        "## Paired comparisons (primary metrics)", "",
        f"Holm-adjusted within each split's family, alpha {alpha:g}.", "",
        *comparisons_table(found, alpha), "",
        "## How to use", "", *usage_lines(fmt, export_facts.get("files", {})), "",
        "## Export", "",
        *[f"- {escape_inline(k)}: {escape_inline(v)}" for k, v in export_facts.items() if k != "files"], "",
        "## Software", "",
        "- Study: " + ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items() if v),
        "- Export: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()),
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    card.save(str(Path(folder) / "README.md"))
    return str(card)
