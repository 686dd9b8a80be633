"""medtune's performance benchmarks, each a ratio measured side by side in one run.

    make bench                                   # all of them, on the embedded model (~30 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --only p2,p5 [--model PATH] [--smoke]

Writes benchmarks/results.json and the results section of docs/performance.md.
Heavy steps run in child processes so their peak memory is their own.

p1  quick five-task study wall seconds (goal <= 600)
p2  medtune evaluation vs a plain per-example model.generate loop (goal >= 8x), with agreement
p3  DPO vs SFT: peak memory and time per pair / per example (goals <= 1.2 and <= 2.0)
p4  medtune SFT+DPO vs plain TRL with its defaults, same steps and data (goal >= 1.5x, metric not worse)
p5  SFT achieved FLOP rate / measured fp32 matmul peak (goal >= 0.5)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.json"
DOC = ROOT / "docs" / "performance.md"
GOALS = {"p1_quick_study_s": ("<=", 600), "p2_eval_speedup": (">=", 8), "p3_dpo_mem_ratio": ("<=", 1.2),
         "p3_dpo_time_ratio": ("<=", 2.0), "p4_vs_trl_speedup": (">=", 1.5), "p5_sft_mfu": (">=", 0.5)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def examples(task, n: int, split: str):
    from medtune.data import bundled_path
    from medtune.io import read_jsonl

    return read_jsonl(bundled_path(task, split))[:n]


def settings(section: str, **values):
    from medtune.config import load_config

    return getattr(load_config(overrides={section: values}), section)


# ---------------------------------------------------------------- p1

def p1(args) -> dict:
    if args.study_run:
        results = json.loads((Path(args.study_run) / "results.json").read_text())
        return {"p1_quick_study_s": results.get("elapsed_s"), "p1_run_dir": args.study_run}
    run_dir = HERE / "out" / "quick_study"
    cmd = [sys.executable, "-m", "medtune", "study", "--preset", "quick", "--run-dir", str(run_dir), "--restart",
           "--model", args.model]
    if args.smoke:
        cmd += ["--tasks", "triage"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return {"p1_quick_study_s": time.perf_counter() - start, "p1_run_dir": str(run_dir.relative_to(ROOT))}


# ---------------------------------------------------------------- p2

def plain_generate(model, tokenizer, task, example) -> str:
    """What a user would write first: one example at a time, model.generate, greedy."""
    import torch

    text = tokenizer.apply_chat_template(task.messages(example), tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=task.max_new_tokens, do_sample=False, eos_token_id=stop,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def parsed(row: dict) -> tuple:
    return tuple(row.get(k) for k in ("pred", "pred_personnel", "pred_urgency"))


def p2(args) -> dict:
    from medtune.evaluate.predict import predict
    from medtune.models import load_model
    from medtune.tasks import get_task

    n = 4 if args.smoke else 24
    model, tokenizer, _ = load_model(args.model, "cpu")
    fast_s = plain_s = 0.0
    same = total = 0
    for name in ("text_classification", "numeric_classification", "triage"):
        task = get_task(name)
        exs = examples(task, n, "test")
        start = time.perf_counter()
        fast = predict(model, tokenizer, task, exs, batch_size=16, desc=f"p2 {name} medtune")
        fast_s += time.perf_counter() - start
        start = time.perf_counter()
        plain = [task.score(ex, plain_generate(model, tokenizer, task, ex)) for ex in exs]
        plain_s += time.perf_counter() - start
        same += sum(parsed(a) == parsed(b) for a, b in zip(fast, plain))
        total += len(exs)
    return {"p2_eval_speedup": plain_s / fast_s, "p2_agreement": same / total, "p2_examples": total,
            "p2_medtune_s": fast_s, "p2_plain_s": plain_s}


# ---------------------------------------------------------------- p3 / p5 (child processes)

def child_train(kind: str, model_ref: str, steps: int, batch: int, out: Path) -> dict:
    """Train SFT or DPO on the same text_classification examples; report time, memory and FLOPs."""
    from medtune.models import load_model
    from medtune.tasks import get_task
    from medtune.train.pairs import pairs_from_label_swap
    import random

    task = get_task("text_classification")
    exs = examples(task, steps * batch, "train")
    model, tokenizer, _ = load_model(model_ref, "cpu")
    loaded_mb = rss_mb()
    if kind == "sft":
        from medtune.train.sft import train_sft

        summary = train_sft(model, tokenizer, model_ref, task, exs, settings("sft", max_steps=steps, batch_size=batch),
                            out, "cpu", 0)
        items = steps * batch
    else:
        from medtune.train.dpo import train_dpo

        rng = random.Random(0)
        pairs = [p for ex in exs for p in pairs_from_label_swap(task, ex, task.reference(ex), rng)]
        summary = train_dpo(model, tokenizer, model_ref, Path(model_ref), "lora", task, pairs,
                            # lora_layers None: the same adapter layout as SFT, whatever the preset says
                            settings("dpo", max_steps=steps, batch_size=batch, heldout_fraction=0.0, lora_layers=None),
                            out, "cpu", 0)
        items = steps * batch
    result = {"train_s": summary["train_runtime_s"], "items": items, "peak_rss_mb": rss_mb(), "loaded_rss_mb": loaded_mb}
    if kind == "sft":
        result["flops_per_step"] = sft_step_flops(model_ref, tokenizer, task, exs[:batch])
    return result


def sft_step_flops(model_ref, tokenizer, task, batch_examples) -> float:
    """FLOPs of one LoRA SFT step's forward + backward on a real batch (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    from medtune.config import load_config
    from medtune.models import load_model, lora_config
    from peft import get_peft_model

    cfg = load_config().sft
    model, _, _ = load_model(model_ref, "cpu")
    model = get_peft_model(model, lora_config(cfg.lora_r, cfg.lora_alpha, 0.0, cfg.lora_target_modules))
    texts = [tokenizer.apply_chat_template(task.messages(ex) + [{"role": "assistant", "content": task.reference(ex)}],
                                           tokenize=False) for ex in batch_examples]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with FlopCounterMode(display=False) as counter:
        model(**enc, labels=enc["input_ids"]).loss.backward()
    return float(counter.get_total_flops())


def run_child(kind: str, args, steps: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(Path(__file__)), "--child", kind, "--model", args.model,
               "--steps", str(steps), "--batch", str(batch), "--out", tmp]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(size: int = 2048, reps: int = 8) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * size ** 3 * reps / (time.perf_counter() - start) / 1e9


def p3_p5(args, which: set[str]) -> dict:
    steps, batch = (2, 2) if args.smoke else (6, 4)
    sft = run_child("sft", args, steps, batch)
    out = {"p3_sft": sft}
    if "p3" in which:
        dpo = run_child("dpo", args, steps, batch)
        out.update(p3_dpo=dpo, p3_dpo_mem_ratio=dpo["peak_rss_mb"] / sft["peak_rss_mb"],
                   p3_dpo_time_ratio=(dpo["train_s"] / dpo["items"]) / (sft["train_s"] / sft["items"]))
    if "p5" in which:
        peak = matmul_peak_gflops(1024 if args.smoke else 2048)
        achieved = sft["flops_per_step"] / (sft["train_s"] / steps) / 1e9
        out.update(p5_sft_mfu=achieved / peak, p5_sft_gflops=achieved, p5_matmul_peak_gflops=peak)
    return out


# ---------------------------------------------------------------- p4

def p4(args) -> dict:
    from medtune.evaluate.predict import predict
    from medtune.models import load_model
    from medtune.tasks import get_task

    task = get_task("numeric_classification")
    sft_steps, dpo_steps, batch = (1, 1, 2) if args.smoke else (6, 2, 4)
    n_test = 4 if args.smoke else 40
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for who, script in (("medtune", [str(HERE / "p4_medtune.py")]), ("trl", [str(HERE / "trl_plain.py")])):
            model_dir = Path(tmp) / who
            cmd = [sys.executable, *script, "--model", args.model, "--out", str(model_dir), "--sft-steps",
                   str(sft_steps), "--dpo-steps", str(dpo_steps), "--batch", str(batch)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            timing = json.loads(proc.stdout.strip().splitlines()[-1])
            model, tokenizer, _ = load_model(timing["model_dir"], "cpu")
            rows = predict(model, tokenizer, task, examples(task, n_test, "test"), 16, f"p4 eval {who}")
            out[f"p4_{who}_train_s"] = timing["train_s"]
            out[f"p4_metric_{who}"] = task.metric("macro_f1").compute(rows)
    out["p4_vs_trl_speedup"] = out["p4_trl_train_s"] / out["p4_medtune_train_s"]
    return out


# ---------------------------------------------------------------- report

def met(key: str, value) -> str:
    if key not in GOALS or value is None:
        return ""
    op, goal = GOALS[key]
    return "yes" if (value <= goal if op == "<=" else value >= goal) else "no"


def write_doc(results: dict) -> None:
    rows = ["| figure | value | goal | met |", "|---|---|---|---|"]
    for key, (op, goal) in GOALS.items():
        value = results.get(key)
        rows.append(f"| `{key}` | {value:.3g} | {op} {goal} | {met(key, value)} |" if value is not None
                    else f"| `{key}` | not measured | {op} {goal} | |")
    extra = [f"- `{k}`: {v:.4g}" if isinstance(v, float) else f"- `{k}`: {v}"
             for k, v in results.items() if k not in GOALS and not isinstance(v, dict)]
    section = "\n".join(["<!-- results: written by benchmarks/run_all.py -->",
                         f"Measured {results['measured']} on {results['machine']}.", "", *rows, "", *extra,
                         "<!-- end results -->"])
    text = DOC.read_text() if DOC.is_file() else "# Performance\n\n<!-- results: -->\n<!-- end results -->\n"
    start, end = text.index("<!-- results:"), text.index("<!-- end results -->") + len("<!-- end results -->")
    DOC.write_text(text[:start] + section + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="p1,p2,p3,p4,p5")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the harness in a minute")
    parser.add_argument("--study-run", help="reuse a finished quick study's elapsed time for p1")
    parser.add_argument("--child", choices=["sft", "dpo"], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from medtune.progress import quiet_libraries

    quiet_libraries()
    if args.child:
        print(json.dumps(child_train(args.child, args.model, args.steps, args.batch, args.out)))
        return
    which = set(args.only.split(","))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not args.smoke else {}
    import platform

    import torch

    results.update(measured=time.strftime("%Y-%m-%d"), model=args.model, smoke=args.smoke,
                   machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                           f"{torch.get_num_threads()} threads")
    steps = [("p1", lambda: p1(args)), ("p2", lambda: p2(args)), ("p3p5", lambda: p3_p5(args, which)),
             ("p4", lambda: p4(args))]
    for name, run in steps:
        if name in which or (name == "p3p5" and which & {"p3", "p5"}):
            results.update(run())
            if not args.smoke:  # saved after each benchmark, so an interrupted run keeps what it measured
                RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
                write_doc(results)
    if args.smoke:
        print(json.dumps(results, indent=2, default=str))
        return
    for key in GOALS:
        value = results.get(key)
        print(f"{key:22s} {value if value is None else f'{value:.3g}':>10}  goal {GOALS[key][0]} {GOALS[key][1]:<5} "
              f"{'met' if met(key, value) == 'yes' else 'NOT met' if value is not None else ''}")


if __name__ == "__main__":
    main()
