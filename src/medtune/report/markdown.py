"""results.json -> report.md: per task, the base/SFT/DPO table with p-values and the verdict."""

from __future__ import annotations

VERDICT_WORDS = {"sft_sufficient": "SFT is sufficient", "dpo_helps": "DPO helps", "inconclusive": "inconclusive"}


def fmt_metric(m: dict | None) -> str:
    if not m:
        return "–"
    if "ci_low" in m:
        return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
    return f"{m['value']:.3f}"


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_comparison(c: dict | None) -> str:
    if not c:
        return "–"
    return f"{c['difference']:+.3f} (p={fmt_p(c['p_value'])})"


def task_section(name: str, task: dict) -> list[str]:
    stages = task["stages"]
    lines = [f"## {name}", "", task["description"], ""]
    metric_names = []
    for stage in stages.values():
        for metric in stage.get("metrics", {}):
            if metric not in metric_names:
                metric_names.append(metric)
    lines += ["| metric | base | SFT | DPO | SFT vs base | DPO vs SFT | DPO vs base |",
              "|---|---|---|---|---|---|---|"]
    comps = task["comparisons"]
    for metric in metric_names:
        star = " (primary)" if metric in task["primary_metrics"] else ""
        cells = [fmt_metric(stages.get(s, {}).get("metrics", {}).get(metric)) for s in ("base", "sft", "dpo")]
        cells += [fmt_comparison(comps.get(c, {}).get(metric)) for c in ("sft_vs_base", "dpo_vs_sft", "dpo_vs_base")]
        lines.append(f"| {metric}{star} | " + " | ".join(cells) + " |")
    n = next((m["n"] for s in stages.values() for m in s.get("metrics", {}).values()), None)
    tests = sorted({c["test"] for comp in comps.values() for c in comp.values()})
    lines += ["", f"Values with 95% bootstrap CIs on n={n} test items; differences with p-values from "
                  f"{' / '.join(tests) or 'no test yet'} (accuracy: exact McNemar; F1 and grades: paired bootstrap).", ""]
    if task.get("baselines"):
        lines += ["Baselines on the same test items (no language model): " + "; ".join(
            f"{b}: " + ", ".join(f"{m} {val:.3f}" for m, val in vals.items()) for b, vals in task["baselines"].items()) + ".", ""]
    v = task["verdict"]
    lines += [f"**Verdict: {VERDICT_WORDS[v['verdict']]}** — {v['reason']}", ""]
    if "pairs" in task:
        p = task["pairs"]
        lines += [f"Preference pairs: {p['pairs']} from {p['prompts_tried']} training prompts "
                  f"({', '.join(f'{k}: {v}' for k, v in p['pairs_per_source'].items()) or 'none'}); "
                  f"SFT error rate on sampled training outputs {p['sft_error_rate_on_train']:.1%}.", ""]
    timing = []
    for stage in ("sft", "dpo"):
        t = stages.get(stage, {}).get("training")
        if t and t.get("train_runtime_s") is not None:
            timing.append(f"{stage.upper()} {t['steps']} steps in {t['train_runtime_s']:.0f} s")
    if timing:
        lines += ["Training: " + "; ".join(timing) + ".", ""]
    return lines


def summary_table(results: dict) -> list[str]:
    lines = ["| task | primary metric | base | SFT | DPO | verdict |", "|---|---|---|---|---|---|"]
    for name, task in results["tasks"].items():
        for metric in task["primary_metrics"]:
            vals = [task["stages"].get(s, {}).get("metrics", {}).get(metric) for s in ("base", "sft", "dpo")]
            cells = [f"{v['value']:.3f}" if v else "–" for v in vals]
            lines.append(f"| {name} | {metric} | " + " | ".join(cells) + f" | {VERDICT_WORDS[task['verdict']['verdict']]} |")
    return lines


def render_markdown(results: dict) -> str:
    cfg = results["config"]
    lines = ["# medtune study report", "",
             f"Model `{cfg['model']}`, preset `{cfg['preset']}`, seed {cfg['seed']}, "
             f"SFT {cfg['sft']['method']}, DPO loss `{cfg['dpo']['loss_type']}` (beta {cfg['dpo']['beta']}). "
             f"Significance level alpha = {cfg['stats']['alpha']}.", "",
             "## Summary", ""]
    lines += summary_table(results) + [""]
    for name, task in results["tasks"].items():
        lines += task_section(name, task)
    v = results["versions"]
    lines += ["---", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    return "\n".join(lines)
