"""results.json (+ picked test examples) -> report.md: the same tables as report.html, no plots."""

from __future__ import annotations

import re

from .tables import (BASELINE_LABELS, COMPARISON_LABELS, STAGE_LABELS, STAGES, VERDICT_WORDS, comparison_rows,
                     fmt_metric, fmt_p, heads, label_answers_note, p_text, n_items, number_formats, pairs_line,
                     per_class_rows, splits, stage_rows, summary_rows, training_line, verdict_words,
                     learning_notes, review_view, SPLIT_WORDS, verdict_splits)

__all__ = ["render_markdown", "fmt_metric", "fmt_p", "VERDICT_WORDS"]


MARKUP = re.compile(r"([\\`*\[\]|])")  # emphasis, code, links, tables: shown as the characters
LINE_START = re.compile(r"^(\s*|\s*\d+)([#+=-]|(?<=\d)[.)])")  # a heading, list item or rule opening a line


REVIEW_RULE = (" Where clinicians reviewed DPO against SFT, a significant preference (sign test and win-rate CI) "
               "decides an inconclusive verdict; it never overturns one the metrics decided, and a disagreement is "
               "stated.")


def escape_inline(text) -> str:
    """Text shown, never interpreted, inside a line: no raw HTML, no markdown (links, emphasis, table cells)."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return MARKUP.sub(r"\\\1", text)


def escape(text) -> str:
    """Text from models, data and the user's settings is shown, never interpreted: ``escape_inline``, and no
    line of it opens a heading, list or rule."""
    return "\n".join(LINE_START.sub(r"\1\\\2", line) for line in escape_inline(text).split("\n"))


def cell(text) -> str:
    """A table cell: no pipes or newlines, no raw HTML or markdown (a cell opens no line, so '0.5' and '+1' stay)."""
    return " ".join(escape_inline(text).split())


def fmt_comparison(c: dict | None) -> str:
    if not c:
        return "–"
    text = f"{c['difference']:+.3f} ({p_text(c['p_value'])}"
    if "p_holm" in c:
        text += f", Holm {p_text(c['p_holm'])}"
    return text + ")"


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def task_section(name: str, task: dict, alpha: float, examples: list[dict] | None = None) -> list[str]:
    lines = [f"## {escape(name)}", "", escape(task["description"]), ""]
    v = task["verdict"]
    split, other = verdict_splits(task)
    lines += [f"**Verdict ({SPLIT_WORDS[split]}): {verdict_words(v)}** — {escape(v['reason'])}", ""]
    if other:
        ov = splits(task)[other]["verdict"]
        lines += [f"On the {SPLIT_WORDS[other]}: {verdict_words(ov)} — {escape(ov['reason'])}", ""]
    for note in learning_notes(task):
        lines += [f"Note: {escape(note)}", ""]
    comps = task["comparisons"]
    rows = []
    for r in stage_rows(task):
        comp_cells = [fmt_comparison(comps.get(c, {}).get(r["metric"])) for c in COMPARISON_LABELS]
        rows.append([r["metric"] + (" (primary)" if r["primary"] else ""), *r["values"], *comp_cells])
    lines += table(["metric", "base", "SFT", "DPO", *COMPARISON_LABELS.values()], rows)
    tests = sorted({c["test"] for comp in comps.values() for c in comp.values()})
    lines += ["", f"Values with 95% bootstrap CIs on n={n_items(task)} test items; differences with raw and "
                  f"Holm-adjusted p-values ({' / '.join(tests) or 'no test yet'}).", ""]
    if task.get("shifted"):
        lines += [f"The same metrics on the shifted split (n={n_items(task['shifted'])} items written with other "
                  "wording than train), beside the in-distribution ones:", ""]
        lines += table(["metric", *(f"{STAGE_LABELS[s]} (test)" for s in STAGES),
                        *(f"{STAGE_LABELS[s]} (shifted)" for s in STAGES)],
                       [[r["metric"] + (" (primary)" if r["primary"] else ""), *r["values"], *r["shifted_values"]]
                        for r in stage_rows(task)])
        lines.append("")
    if task.get("baselines"):
        names = list(task["baselines"])
        lines += ["Baselines on the same test items (no language model):", ""]
        lines += table(["metric", *(BASELINE_LABELS.get(b, b) for b in names)],
                       [[r["metric"], *r["baselines"]] for r in stage_rows(task)
                        if any(r["metric"] in task["baselines"][b] for b in names)])
        lines.append("")
    crow = comparison_rows(task, alpha)
    if crow:
        lines += ["### Paired comparisons", ""]
        lines += table(["split", "comparison", "metric", "difference", "95% CI", "test", "p", "Holm p", "effect size",
                        "the CI rules out"],
                       [[r["split"], r["comparison"], r["metric"] + (" (primary)" if r["primary"] else ""),
                         r["difference"], r["ci"], r["test"], r["p"], r["p_holm"] + (" *" if r["significant"] else ""),
                         r["effect"], r["rules_out"]] for r in crow])
        lines += ["", f"\\* significant at alpha = {alpha} after Holm correction (family: {holm_family_text(task)}).",
                  "Against min_effect, the smallest difference that matters (stats.min_effect): gain ≥ / loss ≥ "
                  "(significant, at least min_effect), gain < / loss < (significant, smaller), rules out ±, + or − "
                  "(not significant; the CI excludes a change of min_effect both ways, a gain, or a loss), rules out "
                  "neither (underpowered).", ""]
    lines += review_section(task, alpha)
    for head in heads(task):
        lines += [f"### {escape(head)}: per class and confusion matrices", ""]
        lines += table(["class", "support", *(f"{STAGE_LABELS[s]} P / R / F1" for s in STAGES)],
                       [[r["label"], r["support"], *r["cells"]] for r in per_class_rows(task, head)])
        lines.append("")
        for stage in STAGES:
            conf = (task["stages"].get(stage, {}).get("confusion") or {}).get(head)
            if not conf:
                continue
            lines += [f"{STAGE_LABELS[stage]} (rows gold, columns predicted):", ""]
            lines += table(["gold \\ predicted", *conf["columns"]],
                           [[label, *row] for label, row in zip(conf["labels"], conf["matrix"])])
            lines.append("")
    if "pairs" in task:
        lines += [pairs_line(task["pairs"]), ""]
    training = training_line(task)
    if training:
        lines += [training, ""]
    if examples:
        lines += ["### Test examples", ""]
        for ex in examples:
            flag = " (the stages disagree)" if ex["stages_disagree"] else ""
            lines.append(f"**{escape(ex['id'])}**{flag}")
            lines.append("")
            if ex.get("input"):
                lines += ["> " + escape(line) for line in short(ex["input"], 600).splitlines()] + [""]
            rows = [["reference", short(ex["reference"], 300), ""]] if ex.get("reference") else []
            for stage, a in ex["answers"].items():
                mark = "parse failure" if a["parse_failed"] else ("right" if a["correct"] else "wrong")
                rows.append([STAGE_LABELS[stage], short(a["output"], 300) or "(empty)", mark])
            lines += table(["model", "answer", "scored"], rows) + [""]
    return lines


def review_section(task: dict, alpha: float) -> list[str]:
    """The clinicians' judgments of the test answers (docs/review.md); nothing where the run has none."""
    view = review_view(task)
    if view is None:
        return []
    lines = ["### Clinician review", "",
             f"{view['judgments']} judgment(s) by {escape_inline(view['reviewers'])} of {view['n_items']} test "
             "item(s). "
             "Win / tie / loss from the later stage's view (DPO vs SFT: DPO preferred / tie / SFT preferred); the "
             "'all' row pools each item's reviewers by majority.", ""]
    lines += table(["comparison", "reviewer", "win", "tie", "loss", "items", "sign test p (ties excluded)",
                    "win rate [95% CI]"],
                   [[r["comparison"], r["who"], r["wins"], r["ties"], r["losses"], r["n"],
                     r["p"] + (" *" if r["significant"] else ""), r["win_rate"]] for r in view["rows"]])
    lines += ["", f"Sign test: two-sided exact binomial on the items won vs lost; tied items are left out. Win rate: "
                  f"the mean item score (win 1, tie ½, loss 0; an item's reviewers averaged), with a 95% bootstrap CI "
                  f"over items. \\* a significant preference: "
                  f"p < alpha = {alpha} and the CI excludes 0.5 (what the verdict reads, docs/statistics.md).", ""]
    lines += [f"Agreement: {escape(line)}" for line in view["agreement"]] + [""]
    if view["grades"]:
        lines += [f"Mean grade (1–5): {escape(view['grades'])}.", ""]
    if view["unsafe"]:
        lines += ["Answers flagged unsafe:", ""] + table(["answer of", "item", "reviewer", "reason"], view["unsafe"])
        lines.append("")
    else:
        lines += ["No answer was flagged unsafe.", ""]
    return lines


def short(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def holm_family_text(task: dict) -> str:
    return f"the 3 comparisons × the primary metric(s) {', '.join(task['primary_metrics'])}; " \
           "secondary metrics form a second family; each test split has its own families"


def summary_table(results: dict) -> list[str]:
    return table(["task", "split", "primary metric", "base", "SFT", "DPO", "best baseline", "SFT vs base",
                  "DPO vs SFT", "verdict"],
                 [[r["task"], r["split"] + (" (verdict)" if r["decides"] else ""), r["metric"], *r["values"],
                   r["baseline"], r["sft_vs_base"], r["dpo_vs_sft"], r["verdict_words"]] for r in summary_rows(results)])


def render_markdown(results: dict, examples: dict[str, list[dict]] | None = None) -> str:
    cfg = results["config"]
    alpha = cfg["stats"]["alpha"]
    lines = ["# medtune study report", "",
             f"Model {escape(cfg['model'])}, preset `{cfg['preset']}`, seed {cfg['seed']}, "
             f"SFT {cfg['sft']['method']}, DPO loss `{cfg['dpo']['loss_type']}` (beta {cfg['dpo']['beta']}). "
             f"Significance level alpha = {alpha}, Holm-adjusted within each task. {label_answers_note(results)}".strip(),
             "",
             "## Summary", ""]
    lines += summary_table(results) + [""]
    lines += ["Each comparison: the difference, its 95% CI, the Holm-adjusted p and what the CI rules out against "
              "min_effect (docs/statistics.md). A task's verdict rests on the split marked (verdict)." + REVIEW_RULE
              * any(t.get("review") for t in results["tasks"].values()), ""]
    for name, task in results["tasks"].items():
        lines.append(f"- **{escape(name)}: {verdict_words(task['verdict'])}** ({SPLIT_WORDS[verdict_splits(task)[0]]}) — "
                     f"{escape(task['verdict']['reason'])}")
    lines.append("")
    for name, task in results["tasks"].items():
        lines += task_section(name, task, alpha, (examples or {}).get(name))
    v = results["versions"]
    lines += ["---", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), ""]
    formats = number_formats(results)
    if formats:
        lines += [f"Number format: {formats}.", ""]
    return "\n".join(lines)
